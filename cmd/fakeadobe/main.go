// Command fakeadobe runs the Adobe emulator (integration/fakeadobe) on a
// loopback address for imsproxy's integration tests, docker-compose and
// manual trials. It registers one generated client, prints it, optionally
// writes its credential files, and serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fakeadobe:", err)
		if errors.Is(err, errUnhealthy) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

// run starts the emulator and blocks until ctx is done.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fakeadobe", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8900", "loopback address for IMS, Stock, downloads and AEM")
	downloadListen := fs.String("download-listen", "", "optional separate loopback address for the download host")
	blobListen := fs.String("blob-listen", "", "loopback address of AEM's blob storage (direct binary upload; default a free port)")
	useTLS := fs.Bool("tls", false, "speak HTTPS on every listener, with a CA generated at start (written to -credentials-out as ca.crt)")
	lifetime := fs.Duration("token-lifetime", fakeadobe.DefaultTokenLifetime, "lifetime of issued access tokens")
	latency := fs.Duration("latency", 0, "delay added to every answer")
	errorRate := fs.Float64("error-rate", 0, "probability of an injected 5xx per request (seeded)")
	errorEvery := fs.Int("error-every", 0, "fail every Nth request of each service (0 = never)")
	seed := fs.Uint64("seed", 1, "seed of the fault-injection random numbers")
	catSize := fs.Int("catalogue-size", fakeadobe.DefaultCatalogueSize, "number of generated Stock assets")
	credsOut := fs.String("credentials-out", "", "directory to write the generated credentials to")
	clientID := fs.String("client-id", "", "client ID of the generated client (default random)")
	quota := fs.Int("quota", fakeadobe.DefaultQuota, "Stock license quota of the generated organisation")
	requireJTI := fs.Bool("require-jti", false, "the generated binding requires a unique integer jti")
	verbose := fs.Bool("v", false, "log every request")
	probe := fs.Bool("healthcheck", false, "only probe the emulator at -listen (and its -credentials-out files): exit 0 if healthy, 1 if not")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *probe {
		return healthcheck(ctx, *listen, *credsOut, *useTLS)
	}
	if *useTLS && *credsOut == "" {
		return errors.New("-tls needs -credentials-out: the generated CA is written there for clients to trust")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	srv := fakeadobe.New(fakeadobe.Options{
		TokenLifetime: *lifetime,
		Faults: fakeadobe.Faults{Latency: fakeadobe.Duration(*latency),
			ErrorRate: *errorRate, ErrorEvery: *errorEvery},
		Seed:          *seed,
		CatalogueSize: *catSize,
		TLS:           *useTLS,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	blob := ""
	if *blobListen != "" {
		var err error
		if blob, err = srv.StartBlob(*blobListen); err != nil {
			return err
		}
	}
	base, err := srv.Start(*listen)
	if err != nil {
		_ = srv.Close()
		return err
	}
	if blob == "" {
		blob = srv.BlobBaseURL()
	}
	download := base
	if *downloadListen != "" {
		if download, err = srv.StartDownload(*downloadListen); err != nil {
			_ = srv.Close()
			return err
		}
	}
	creds, err := srv.NewCredentials(fakeadobe.CredentialOptions{
		Name: "fakeadobe", ClientID: *clientID, Quota: *quota, RequireJTI: *requireJTI})
	if err != nil {
		_ = srv.Close()
		return err
	}
	fmt.Fprintf(out, "fakeadobe listening on %s (downloads: %s, blob storage: %s, control: %s%s)\n", base, download, blob, base, fakeadobe.ControlPrefix)
	fmt.Fprintf(out, "registered client %s\n  org %s\n  technical account %s\n  metascopes %s\n  scopes %s\n  certificate sha256 %s\n  quota %d\n",
		creds.ClientID, creds.OrgID, creds.TechnicalAccountID, strings.Join(creds.Metascopes, ","),
		strings.Join(creds.Scopes, ","), fakeadobe.Fingerprint(creds.Certificate), *quota)
	if *credsOut != "" {
		files, err := creds.WriteFiles(*credsOut, fakeadobe.Endpoints{IMS: base, Stock: base, Download: download, AEM: base,
			CA: srv.CACertificatePEM()})
		if err != nil {
			_ = srv.Close()
			return err
		}
		fmt.Fprintf(out, "wrote %s\n      %s\n      %s\n      %s (client secret, imsproxy variables)\n",
			files.ServiceCredentials, files.PrivateKey, files.Certificate, files.Env)
		if files.CA != "" {
			fmt.Fprintf(out, "      %s (the CA of the HTTPS certificate: CA_FILE, NODE_EXTRA_CA_CERTS, curl --cacert)\n", files.CA)
		}
	} else {
		// Throwaway credentials that work only against this process.
		fmt.Fprintf(out, "  client secret %s\n", creds.ClientSecret)
	}
	cacert := ""
	if *useTLS {
		cacert = " --cacert " + filepath.Join(*credsOut, "ca.crt")
	}
	fmt.Fprintf(out, "try: curl -s%s -d grant_type=client_credentials -d client_id=%s -d client_secret=... -d scope=openid %s/ims/token/v3\n",
		cacert, creds.ClientID, base)

	<-ctx.Done()
	fmt.Fprintln(out, "fakeadobe: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
