package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/version"
	"github.com/imsproxy/imsproxy/proxy"
)

// serve runs the proxy until SIGINT or SIGTERM, then (after
// IMSPROXY_SHUTDOWN_DELAY) drains and exits 0; a second signal cuts the
// delay short. SIGHUP reloads the routes' credentials, the callers file
// and the admin token file.
func serve(args, environ []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "usage: imsproxy [serve]\n\n"+
		"Runs the proxy, configured by IMSPROXY_* environment variables, until SIGINT or SIGTERM:\n"+
		"then /readyz answers 503, requests are still served for IMSPROXY_SHUTDOWN_DELAY (a second\n"+
		"signal ends it), and in-flight requests drain for up to IMSPROXY_SHUTDOWN_TIMEOUT.\n"+
		"SIGHUP reloads the credentials, the callers file and the admin token file.\n", stdout, stderr)
	if code, ok := fs.parse(args, 0); !ok {
		return code
	}
	// Caught from the start: SIGHUP's default action would kill the proxy,
	// and a SIGTERM while it starts must still let it stop in order.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(term)

	srv, cfg, log, code := start(environ, stderr)
	if srv == nil {
		return code
	}
	for _, rc := range cfg.Routes {
		log.Info("route", "name", rc.Name, "type", rc.Type, "listen", rc.Listen,
			"upstream", rc.Upstream.String(), "auth", rc.Auth, "ims", rc.IMSURL)
	}
	log.Info("imsproxy started", "version", version.String(), "admin", cfg.AdminListen)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	done := make(chan struct{})
	defer close(done) // before wg.Wait: defers run last first
	wg.Go(func() {
		for stopping := false; ; {
			select {
			case <-done:
				return
			case sig := <-term:
				if stopping {
					srv.SkipShutdownDelay()
					continue
				}
				stopping = true
				log.Info("signal received: stopping", "signal", sig.String())
				stop()
			case <-hup:
				log.Info("SIGHUP: reloading credentials, the callers file and the admin token file")
				srv.Reload()
			}
		}
	})
	if err := srv.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// start does what serve does before it serves: it loads and validates the
// configuration (exactly what `imsproxy check` validates), builds the
// server and binds its listeners. When it cannot, it has said why on
// stderr, as for an invalid configuration, and returns a nil server and
// the exit code: 2 for an invalid configuration, 1 for anything else (a
// port in use).
func start(environ []string, stderr io.Writer) (*proxy.Server, *config.Config, *slog.Logger, int) {
	cfg, err := loadConfig(environ, stderr)
	if err != nil {
		return nil, nil, nil, 2
	}
	log := newLogger(cfg, stderr)
	srv, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil { // a file config.Load checked could not be opened after all
		fmt.Fprintf(stderr, "imsproxy: cannot start: %v\n", err)
		return nil, nil, nil, 1
	}
	if err := srv.Listen(); err != nil { // names the variables: IMSPROXY_STOCK_LISTEN 127.0.0.1:8080 is in use...
		_ = srv.Close()
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintf(stderr, "imsproxy: %s\n", line)
		}
		return nil, nil, nil, 1
	}
	return srv, cfg, log, 0
}

// loadConfig loads the configuration, printing every problem on failure.
func loadConfig(environ []string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "imsproxy: invalid configuration:\n%v\n", err)
		return nil, err
	}
	return cfg, nil
}

// newLogger builds the slog logger of IMSPROXY_LOG_LEVEL and _FORMAT.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		// Durations in seconds, as log pipelines and Prometheus count
		// them, rather than slog's nanoseconds.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.Float64Value(a.Value.Duration().Seconds())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
