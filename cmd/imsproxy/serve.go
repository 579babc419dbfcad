package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/version"
	"github.com/imsproxy/imsproxy/proxy"
)

// serve runs the proxy until SIGINT or SIGTERM, then drains and exits 0.
// SIGHUP reloads the routes' credentials and the callers file.
func serve(environ []string, stderr io.Writer) int {
	// Caught from the start: SIGHUP's default action would kill the proxy.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := loadConfig(environ, stderr)
	if err != nil {
		return 2
	}
	log := newLogger(cfg, stderr)
	srv, err := proxy.New(cfg, proxy.Options{Logger: log})
	var problems config.Problems
	if errors.As(err, &problems) { // the callers file, the audit log
		fmt.Fprintf(stderr, "imsproxy: invalid configuration:\n%v\n", problems)
		return 2
	}
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	if err := srv.Listen(); err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	for _, rc := range cfg.Routes {
		log.Info("route", "name", rc.Name, "type", rc.Type, "listen", rc.Listen,
			"upstream", rc.Upstream.String(), "auth", rc.Auth, "ims", rc.IMSURL)
	}
	log.Info("imsproxy started", "version", version.String(), "admin", cfg.AdminListen)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading credentials and the callers file")
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
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
