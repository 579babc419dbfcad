package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/proxy"
)

// sandboxReadyTimeout bounds the wait for the first tokens: the emulator
// answers on loopback in milliseconds, so anything longer is a fault.
const sandboxReadyTimeout = 30 * time.Second

// sandboxOptions are the listeners of `imsproxy sandbox`.
type sandboxOptions struct {
	stockListen string // the stock route (OAuth server-to-server)
	aemListen   string // the aem route (AEM service credentials, JWT)
	adminListen string // /healthz, /readyz, /metrics
	adobeListen string // the Adobe emulator: IMS, Stock, downloads, AEM
	tls         bool   // the emulator speaks HTTPS (its own CA)
}

// sandbox runs `imsproxy sandbox [flags]` until SIGINT or SIGTERM.
func sandbox(args []string, stdout, stderr io.Writer) int {
	opts, code, ok := parseSandboxFlags(args, stdout, stderr)
	if !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runSandbox(ctx, opts, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "imsproxy sandbox: %v\n", err)
		return 1
	}
	return 0
}

func parseSandboxFlags(args []string, stdout, stderr io.Writer) (o sandboxOptions, code int, ok bool) {
	fs := newFlags("sandbox", "usage: imsproxy sandbox [flags]\n\n"+
		"Runs the built-in Adobe emulator with generated credentials and the proxy's stock and\n"+
		"aem routes in front of it, and prints what to try. Everything listens on loopback.\n", stdout, stderr)
	fs.StringVar(&o.stockListen, "stock-listen", "127.0.0.1:8080", "listener of the stock route")
	fs.StringVar(&o.aemListen, "aem-listen", "127.0.0.1:8081", "listener of the aem route")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9090", "listener of /healthz, /readyz and /metrics")
	fs.StringVar(&o.adobeListen, "adobe-listen", "127.0.0.1:8900", "listener of the Adobe emulator")
	fs.BoolVar(&o.tls, "tls", false, "the emulator speaks HTTPS with a CA generated for it, which the proxy trusts (CA_FILE)")
	if code, ok := fs.parse(args, 0); !ok {
		return o, code, false
	}
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "tls" {
			return
		}
		if err := checkLoopbackAddr(f.Value.String()); err != nil {
			fmt.Fprintf(stderr, "imsproxy sandbox: -%s %s: %v\n", f.Name, f.Value, err)
			bad = err
		}
	})
	return o, 2, bad == nil
}

// checkLoopbackAddr accepts host:port on loopback only: the sandbox's
// emulator hands out tokens to anyone who asks, and its routes have no
// callers file.
func checkLoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, e.g. 127.0.0.1:8080")
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("the sandbox listens on loopback only (127.0.0.1, ::1 or localhost)")
	}
	return nil
}

// runSandbox starts the emulator and the proxy, prints what to try once
// every route holds a token, and runs until ctx is done. The generated
// credentials live in a temporary directory removed on return.
func runSandbox(ctx context.Context, opts sandboxOptions, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "imsproxy-sandbox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	adobe := fakeadobe.New(fakeadobe.Options{TLS: opts.tls})
	base, err := adobe.Start(opts.adobeListen)
	if err != nil {
		return fmt.Errorf("start the Adobe emulator: %w (choose another address with -adobe-listen)", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = adobe.Shutdown(sctx)
	}()
	creds, err := adobe.NewCredentials(fakeadobe.CredentialOptions{Name: "imsproxy sandbox"})
	if err != nil {
		return err
	}
	files, err := creds.WriteFiles(dir, fakeadobe.Endpoints{IMS: base, Stock: base, CA: adobe.CACertificatePEM()})
	if err != nil {
		return err
	}
	// The proxy runs with the very file the emulator wrote for operators,
	// plus the listeners; nothing comes from the caller's environment.
	environ, err := readEnvFile(files.Env)
	if err != nil {
		return err
	}
	environ = append(environ,
		"IMSPROXY_STOCK_LISTEN="+opts.stockListen,
		"IMSPROXY_AEM_LISTEN="+opts.aemListen,
		"IMSPROXY_ADMIN_LISTEN="+opts.adminListen)
	cfg, err := loadConfig(environ, stderr)
	if err != nil {
		return errors.New("the generated configuration does not load (a bug: please report it)")
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: newLogger(cfg, stderr)})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("%w (choose other addresses with -stock-listen, -aem-listen, -admin-listen)", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(sandboxReadyTimeout)
	defer deadline.Stop()
	for !srv.Ready() {
		select {
		case err := <-done: // interrupted, or a listener failed
			return err
		case <-deadline.C:
			cancel()
			<-done
			return fmt.Errorf("the routes have no token after %v: %s", sandboxReadyTimeout, lastErrors(srv, cfg))
		case <-tick.C:
		}
	}
	stockURL := "http://" + srv.Addr("stock")
	assetID, err := sampleAssetID(ctx, stockURL)
	if err != nil {
		cancel()
		<-done
		return err
	}
	addrs := sandboxAddrs{
		AssetID: assetID,
		Stock:   stockURL,
		AEM:     "http://" + srv.Addr("aem"),
		Admin:   "http://" + srv.AdminAddr(),
		Adobe:   base,
		Env:     files.Env,
	}
	if files.CA != "" {
		addrs.CA, addrs.CACert = files.CA, " --cacert "+files.CA
	}
	err = sandboxHelp.Execute(stdout, addrs)
	if err != nil {
		cancel()
		<-done
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	fmt.Fprintln(stdout, "imsproxy sandbox: stopped; generated credentials removed")
	return nil
}

// lastErrors describes why routes are not ready.
func lastErrors(srv *proxy.Server, cfg *config.Config) string {
	var parts []string
	for _, name := range cfg.RouteNames() {
		if m := srv.Manager(name); m != nil {
			if st := m.Status(); !st.Ready {
				parts = append(parts, name+": "+st.LastError)
			}
		}
	}
	return strings.Join(parts, "; ")
}

// readEnvFile reads NAME=value lines, skipping blank lines and # comments.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "=") {
			return nil, fmt.Errorf("%s: not NAME=value: %q", path, line)
		}
		env = append(env, line)
	}
	return env, sc.Err()
}

// sandboxAddrs are the base URLs the help text points at.
type sandboxAddrs struct {
	Stock, AEM, Admin, Adobe string
	Env                      string // the generated configuration
	AssetID                  int    // a real asset of the emulated catalogue
	CA                       string // the CA file of the HTTPS emulator, or ""
	CACert                   string // " --cacert <CA file>" for curl to the HTTPS emulator, or ""
}

// sampleAssetID searches through the proxy's own stock route — proof that
// it works before the help is printed — for an asset to show licensing on.
func sampleAssetID(ctx context.Context, stockURL string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		stockURL+"/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat&search_parameters%5Blimit%5D=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("first search through the stock route: %w", err)
	}
	defer resp.Body.Close()
	var search struct {
		Files []struct{ ID int } `json:"files"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&search); err != nil || resp.StatusCode != http.StatusOK || len(search.Files) == 0 {
		return 0, fmt.Errorf("first search through the stock route answered %d", resp.StatusCode)
	}
	return search.Files[0].ID, nil
}

// sandboxHelp is printed once every route holds a token. Every curl line,
// and the upload's shell lines, is one a test performs
// (cmd/imsproxy/sandbox_test.go). The upload takes AEM as a Cloud Service's
// only way to upload a binary, direct binary upload: its three steps are
// chained with the shell, reading the upload URI and token from the first
// answer with sed.
var sandboxHelp = template.Must(template.New("sandbox").Parse(`
imsproxy sandbox is ready: an Adobe emulator with generated credentials, and the proxy in front of it.

  route stock  {{.Stock}}  -> Adobe Stock (emulated), OAuth server-to-server
  route aem    {{.AEM}}  -> AEM as a Cloud Service (emulated), service credentials (JWT)
  admin        {{.Admin}}
  emulator     {{.Adobe}}
  configuration: {{.Env}} (removed at exit)
{{- if .CA}}
  the emulator's CA: {{.CA}} (curl --cacert, NODE_EXTRA_CA_CERTS for Node.js clients){{end}}

Try (no credentials needed: the proxy adds them):

  # search Adobe Stock
  curl -g '{{.Stock}}/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=2'
  # licensing spends the organisation's credits: refused (403 licensing_disabled)
  # unless the operator sets IMSPROXY_STOCK_ALLOW_LICENSE=true
  curl -g '{{.Stock}}/Rest/Libraries/1/Content/License?content_id={{.AssetID}}&license=Standard'
  # list the AEM Assets root folder
  curl {{.AEM}}/api/assets.json
  # upload a file into AEM by direct binary upload: initiate through the proxy, PUT the bytes
  # to the signed blob-storage URI it answers (another origin: no token, not through the
  # proxy), complete through the proxy; then the new asset is listed
  r=$(curl -s -d fileName=hello.txt -d fileSize=6 {{.AEM}}/content/dam/projects.initiateUpload.json)
  printf 'hello\n' | curl -s{{.CACert}} -X PUT --data-binary @- "$(printf %s "$r" | sed 's/.*"uploadURIs":\["\([^"]*\)".*/\1/')"
  curl -s -d fileName=hello.txt -d mimeType=text/plain -d "uploadToken=$(printf %s "$r" | sed 's/.*"uploadToken":"\([^"]*\)".*/\1/')" {{.AEM}}/content/dam/projects.completeUpload.json
  curl {{.AEM}}/api/assets/projects/hello.txt.json
  # a GraphQL persisted query of AEM headless, with its variable (;activity=camping, encoded)
  curl '{{.AEM}}/graphql/execute.json/wknd-shared/adventures-by-activity%3Bactivity%3Dcamping'
  # readiness: per route, the auth kind, token expiry and last error
  curl {{.Admin}}/readyz
  curl -s {{.Admin}}/metrics | grep '^imsproxy_'
  # the emulator's control API: what reached "Adobe", then revoke every token
  # (list the AEM folder again: the proxy gets a 401, fetches a new token and
  # retries, still 200; a repeated search is answered from the cache)
  curl{{.CACert}} '{{.Adobe}}/_fake/requests?n=2'
  curl{{.CACert}} -X POST -d '{}' {{.Adobe}}/_fake/revoke

Ctrl-C stops everything.
`))
