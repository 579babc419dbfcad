package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/tokens"
)

// Server runs every route on its own listener plus the admin listener, and
// keeps the routes' tokens fresh.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	routes   []*Route
	managers map[string]*tokens.Manager // by route name; absent for AUTH=none
	creds    *credentialWatcher         // reloads, certificate expiry (reload.go)
	sec      *security                  // callers file and audit log (security.go)

	listeners []net.Listener // routes in order, then admin

	readHeaderTimeout, idleTimeout time.Duration // of every listener's http.Server
}

// Options tunes a Server.
type Options struct {
	Logger *slog.Logger
	// Now is the clock of the token managers; nil = time.Now.
	Now func() time.Time
	// TokenOptions overrides the managers' retry behaviour (tests).
	TokenOptions tokens.Options
	// ReadHeaderTimeout and IdleTimeout bound a client that sends its
	// headers slowly and a keep-alive connection left idle; zero means
	// 10 s and 2 min (tests shorten them).
	ReadHeaderTimeout, IdleTimeout time.Duration
}

// New builds the routes of cfg. Nothing listens or fetches until Listen
// and Run.
func New(cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{
		cfg:      cfg,
		log:      opts.Logger,
		metrics:  NewMetrics(),
		now:      opts.Now,
		managers: make(map[string]*tokens.Manager),

		readHeaderTimeout: cmp.Or(opts.ReadHeaderTimeout, 10*time.Second),
		idleTimeout:       cmp.Or(opts.IdleTimeout, 2*time.Minute),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.creds = newCredentialWatcher(s.log, s.now, s.metrics)
	sec, err := newSecurity(cfg, s.log, s.now())
	if err != nil {
		return nil, err // config.Problems
	}
	s.sec = sec
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		transport := NewTransport(rc)
		imsClient := &http.Client{Transport: transport, Timeout: tokens.DefaultFetchTimeout}
		src, err := tokens.NewSource(rc, imsClient)
		if err != nil {
			sec.close()
			return nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		var ts TokenSource
		if src != nil {
			mopts := opts.TokenOptions
			mopts.Kind = string(rc.Auth)
			mopts.Now = s.now
			mopts.Logger = s.log
			mopts.OnExchange = s.metrics.ObserveExchange
			if also := opts.TokenOptions.OnExchange; also != nil {
				mopts.OnExchange = func(e tokens.Exchange) { s.metrics.ObserveExchange(e); also(e) }
			}
			mgr := tokens.NewManager(rc.Name, src, mopts)
			s.managers[rc.Name] = mgr
			s.metrics.watchTokens(rc.Name, mgr, s.now)
			ts = mgr
		}
		live := s.creds.add(rc, s.managers[rc.Name], imsClient)
		s.metrics.watchCertificate(rc.Name, live.certificateExpiry)
		route := NewRoute(rc, ts, RouteOptions{Logger: s.log, Transport: transport, Metrics: s.metrics,
			Callers: sec.callers, Audit: sec.audit, Now: s.now})
		live.onReplaced = func() { route.PurgeCache("credentials") }
		s.routes = append(s.routes, route)
		if rc.Auth == config.AuthOAuth && len(rc.Credentials.Scopes) == 0 {
			s.log.Warn("no IMSPROXY_"+envName(rc.Name)+"_SCOPES for OAuth: IMS will answer invalid_scope if the credential needs any; copy the scopes from the Adobe Developer Console",
				"route", rc.Name)
		}
		if rc.Type == config.TypeStock && rc.Auth == config.AuthJWT {
			s.log.Warn("Adobe retired Service Account (JWT) credentials for Stock (end of life 2025-06-30); move this route to OAuth server-to-server credentials (AUTH=oauth)",
				"route", rc.Name)
		}
	}
	return s, nil
}

// Routes returns the route handlers, in configuration order.
func (s *Server) Routes() []*Route { return s.routes }

// Manager returns the token manager of a route (nil for AUTH=none or an
// unknown route).
func (s *Server) Manager(route string) *tokens.Manager { return s.managers[route] }

// Listen binds every listener, so that a port in use is reported before
// anything runs.
func (s *Server) Listen() error {
	addrs := make([]string, 0, len(s.routes)+1)
	for _, rc := range s.cfg.Routes {
		addrs = append(addrs, rc.Listen)
	}
	addrs = append(addrs, s.cfg.AdminListen)
	for i, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s (%s): %w", addr, s.listenerName(i), err)
		}
		s.listeners = append(s.listeners, ln)
	}
	return nil
}

func (s *Server) listenerName(i int) string {
	if i < len(s.routes) {
		return "route " + s.routes[i].Name()
	}
	return "admin"
}

func (s *Server) closeListeners() {
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	s.listeners = nil
}

// Addr is the bound address of a route's listener ("" before Listen).
func (s *Server) Addr(route string) string {
	for i, rt := range s.routes {
		if rt.Name() == route && i < len(s.listeners) {
			return s.listeners[i].Addr().String()
		}
	}
	return ""
}

// AdminAddr is the bound address of the admin listener ("" before Listen).
func (s *Server) AdminAddr() string {
	if len(s.listeners) == len(s.routes)+1 {
		return s.listeners[len(s.routes)].Addr().String()
	}
	return ""
}

// Run serves until ctx is done, then stops accepting, drains in-flight
// requests for up to the shutdown timeout and returns. Listen must have
// succeeded.
func (s *Server) Run(ctx context.Context) error {
	if len(s.listeners) != len(s.routes)+1 {
		return errors.New("proxy: Run before Listen")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()

	for _, mgr := range s.managers {
		wg.Go(func() { mgr.Run(runCtx) })
	}
	wg.Go(func() { s.creds.run(runCtx) })
	wg.Go(func() { s.sec.run(runCtx) })
	handlers := make([]http.Handler, 0, len(s.listeners))
	for _, rt := range s.routes {
		handlers = append(handlers, rt)
	}
	handlers = append(handlers, recoverPanics(s.adminHandler(), s.log, "admin"))

	servers := make([]*http.Server, len(s.listeners))
	errs := make(chan error, len(s.listeners))
	for i, ln := range s.listeners {
		srv := s.httpServer(handlers[i])
		servers[i] = srv
		s.log.Info("listening", "listener", s.listenerName(i), "addr", ln.Addr().String())
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("%s: %w", s.listenerName(i), err)
			}
		})
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	s.log.Info("shutting down", "grace", s.cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	var sw sync.WaitGroup
	for _, srv := range servers {
		sw.Go(func() {
			if err := srv.Shutdown(shutdownCtx); err != nil {
				s.log.Warn("requests still in flight at the end of the grace period were cut off", "error", err)
				_ = srv.Close()
			}
		})
	}
	sw.Wait()
	stop()
	s.sec.close()
	s.listeners = nil
	return runErr
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.readHeaderTimeout,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// Ready reports whether every route that needs a token holds a valid one.
func (s *Server) Ready() bool {
	for _, mgr := range s.managers {
		if !mgr.Status().Ready {
			return false
		}
	}
	return true
}
