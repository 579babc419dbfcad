// Package proxy runs imsproxy's routes: one listener per route, each
// serving the route's chain of stages (chain.go), and the admin listener
// (/healthz, /readyz, /metrics, /cache/purge). It keeps the routes' tokens
// fresh and reloads their credentials and the callers file when they
// change.
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/cache"
	"github.com/imsproxy/imsproxy/proxy/callers"
	"github.com/imsproxy/imsproxy/proxy/fleet"
	"github.com/imsproxy/imsproxy/proxy/inflight"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// Server runs every route on its own listener plus the admin listener, and
// keeps the routes' tokens fresh.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time

	routes     []*routeState
	rotator    *tokens.Rotator
	callers    *callers.File // nil without IMSPROXY_CALLERS_FILE
	audit      *audit.Log    // nil without IMSPROXY_AUDIT_LOG
	fleet      *fleet.Client // nil without IMSPROXY_REDIS_URL
	adminToken *adminToken   // nil without IMSPROXY_ADMIN_TOKEN[_FILE]
	// inflight bounds what all routes hold for answers being cached or
	// rewritten (IMSPROXY_MAX_INFLIGHT_BYTES).
	inflight *inflight.Limiter

	// stopping turns /readyz to 503 once shutdown has begun; hurry ends
	// the shutdown delay early (SkipShutdownDelay).
	stopping  atomic.Bool
	hurry     chan struct{}
	hurryOnce sync.Once

	listeners []net.Listener // routes in order, then admin

	readHeaderTimeout, idleTimeout time.Duration // of every listener's http.Server
}

// routeState is one route as the server runs it.
type routeState struct {
	cfg     *config.Route
	handler http.Handler
	mgr     *tokens.Manager // nil for AUTH=none
	cache   *cache.Cache    // nil unless a stock route with CACHE_SIZE > 0
	live    *tokens.LiveCredentials
}

// Options tunes a Server.
type Options struct {
	Logger *slog.Logger
	// Now is the clock of the token managers, the search cache and the
	// license day; nil = time.Now.
	Now func() time.Time
	// TokenOptions overrides the managers' retry behaviour (tests).
	TokenOptions tokens.Options
	// ReadHeaderTimeout and IdleTimeout bound a client that sends its
	// headers slowly and a keep-alive connection left idle; zero means
	// 10 s and 2 min (tests shorten them).
	ReadHeaderTimeout, IdleTimeout time.Duration
}

// New builds the routes of cfg, which config.Load has validated: it fails
// only when a file cannot be opened (the audit log), which the validation
// has checked already. Nothing listens or fetches until Listen and Run.
func New(cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{
		cfg:     cfg,
		log:     opts.Logger,
		metrics: metrics.New(),
		now:     opts.Now,
		hurry:   make(chan struct{}),

		readHeaderTimeout: cmp.Or(opts.ReadHeaderTimeout, 10*time.Second),
		idleTimeout:       cmp.Or(opts.IdleTimeout, 2*time.Minute),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = slog.New(route.LogHandler(s.log.Handler()))
	if s.now == nil {
		s.now = time.Now
	}
	s.rotator = tokens.NewRotator(s.log, s.now)
	if cfg.MaxInflightBytes > 0 {
		s.inflight = inflight.New(cfg.MaxInflightBytes)
	}
	s.adminToken = newAdminToken(cfg, s.log)
	if cfg.CallersFile != "" {
		s.callers = callers.NewFile(cfg.CallersFile, cfg.RouteNames(), cfg.Callers, s.log)
	}
	if cfg.AuditLog != "" {
		a, err := audit.Open(cfg.AuditLog, s.now(), s.log)
		if err != nil {
			return nil, fmt.Errorf("open the audit log (IMSPROXY_AUDIT_LOG): %w", err)
		}
		s.audit = a
	}
	if cfg.Redis != nil {
		var count func(op string)
		f, err := fleet.New(cfg.Redis, s.log, func(op string) { count(op) })
		if err != nil {
			_ = s.audit.Close()
			return nil, err
		}
		count = s.metrics.Redis(f.Up, f.CacheUp, fleet.Ops)
		s.fleet = f
	}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		rs, err := s.newRoute(rc, opts.TokenOptions)
		if err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("route %s: %w", rc.Name, err)
		}
		s.routes = append(s.routes, rs)
		s.warn(rc)
	}
	return s, nil
}

// warn logs what the configuration allows but an operator should know.
func (s *Server) warn(rc *config.Route) {
	if rc.Type == config.TypeStock && rc.Auth == config.AuthJWT {
		s.log.Warn("Adobe retired Service Account (JWT) credentials for Stock (end of life 2025-06-30); move this route to OAuth server-to-server credentials (AUTH=oauth)",
			"route", rc.Name)
	}
	if rc.Type == config.TypeStock && rc.AllowLicense && s.audit == nil && s.fleet == nil { // the fleet audits to Redis
		s.log.Warn("licensing is allowed but IMSPROXY_AUDIT_LOG is not set: licensing attempts are not audited", "route", rc.Name)
	}
	switch {
	case config.OnLoopback(rc.Listen):
	case s.callers != nil:
		s.log.Warn("route listens off loopback: whoever reaches the address and holds a caller key of IMSPROXY_CALLERS_FILE calls the upstream with the route's credentials",
			"route", rc.Name, "listen", rc.Listen)
	default:
		s.log.Warn("route listens off loopback with no IMSPROXY_CALLERS_FILE (IMSPROXY_ALLOW_REMOTE=true): whoever reaches the address calls the upstream with the route's credentials; "+
			"callers must address it by an IP address, a loopback name or a name in IMSPROXY_ALLOWED_HOSTS",
			"route", rc.Name, "listen", rc.Listen)
	}
}

// Manager returns the token manager of a route (nil for AUTH=none or an
// unknown route).
func (s *Server) Manager(name string) *tokens.Manager {
	if rs := s.route(name); rs != nil {
		return rs.mgr
	}
	return nil
}

func (s *Server) route(name string) *routeState {
	for _, rs := range s.routes {
		if rs.cfg.Name == name {
			return rs
		}
	}
	return nil
}

// Listen binds every listener, so that a port in use is reported before
// anything runs. Its error names the variable of each listener that could
// not be bound, all of them at once (errors.Join, a line each): fixing
// one port to be told of the next is a slow way to start.
func (s *Server) Listen() error {
	listeners, errs := bindAll(s.cfg)
	if len(errs) > 0 {
		closeAll(listeners)
		return errors.Join(errs...)
	}
	s.listeners = listeners
	return nil
}

// listenAddr is an address the proxy listens on and the variable that
// sets it.
type listenAddr struct{ v, addr string }

// listenAddrs lists cfg's listeners in the order Listen binds them: the
// routes', then the admin listener.
func listenAddrs(cfg *config.Config) []listenAddr {
	ls := make([]listenAddr, 0, len(cfg.Routes)+1)
	for i := range cfg.Routes {
		ls = append(ls, listenAddr{cfg.Routes[i].Var("LISTEN"), cfg.Routes[i].Listen})
	}
	return append(ls, listenAddr{config.AdminListenVariable, cfg.AdminListen})
}

// bindAll binds every address of cfg in listenAddrs' order, returning the
// listeners bound and why each other one could not be, naming its
// variable.
func bindAll(cfg *config.Config) ([]net.Listener, []error) {
	var listeners []net.Listener
	var errs []error
	for _, l := range listenAddrs(cfg) {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			errs = append(errs, newListenError(l.v, l.addr, err))
			continue
		}
		listeners = append(listeners, ln)
	}
	return listeners, errs
}

func closeAll(listeners []net.Listener) {
	for _, ln := range listeners {
		_ = ln.Close()
	}
}

// ProbeListeners binds each address cfg listens on and lets it go at once,
// returning, for each that cannot be bound now, why (a port in use,
// permission denied), naming its variable as Listen would. imsproxy check
// reports them without failing: the port may be held by the very proxy
// being checked.
func ProbeListeners(cfg *config.Config) []error {
	listeners, errs := bindAll(cfg)
	closeAll(listeners)
	return errs
}

// newListenError says which variable's address could not be listened on,
// and why, in the words of the usual cause.
func newListenError(v, addr string, err error) error {
	var msg string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		msg = fmt.Sprintf("%s %s is in use: another process listens there; stop it, or set %s to a free address", v, addr, v)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		msg = fmt.Sprintf("%s %s cannot be listened on: no interface of this machine has that address", v, addr)
	case errors.Is(err, syscall.EACCES):
		msg = fmt.Sprintf("%s %s cannot be listened on: permission denied (ports below 1024 need privileges; choose a port above 1023)", v, addr)
	default:
		cause := err
		var op *net.OpError
		if errors.As(err, &op) {
			cause = op.Err // without "listen tcp <addr>:", which msg says already
		}
		msg = fmt.Sprintf("%s %s cannot be listened on: %v", v, addr, cause)
	}
	return &listenError{msg: msg, err: err}
}

// listenError is a listener that could not be bound: a message naming its
// variable, over the cause.
type listenError struct {
	msg string
	err error
}

func (e *listenError) Error() string { return e.msg }
func (e *listenError) Unwrap() error { return e.err }

func (s *Server) listenerName(i int) string {
	if i < len(s.routes) {
		return "route " + s.routes[i].cfg.Name
	}
	return "admin"
}

// Close releases the listeners and the audit log of a Server that will not
// Run (Run releases them itself when it returns).
func (s *Server) Close() error {
	s.closeListeners()
	if s.fleet != nil {
		_ = s.fleet.Close()
	}
	return s.audit.Close()
}

func (s *Server) closeListeners() {
	closeAll(s.listeners)
	s.listeners = nil
}

// Addr is the bound address of a route's listener ("" before Listen).
func (s *Server) Addr(name string) string {
	for i, rs := range s.routes {
		if rs.cfg.Name == name && i < len(s.listeners) {
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

// Reload reads every route's credentials and the callers file again, as
// SIGHUP asks. New credentials replace the old once they have produced a
// token (Run's rotator does it: Reload returns at once); the callers file
// is read before Reload returns, and on error the previous callers stay.
func (s *Server) Reload() {
	s.rotator.Reload()
	if s.callers != nil {
		_, _ = s.callers.Reload() // logged there
	}
	s.adminToken.Reload()
}

// SkipShutdownDelay ends the shutdown delay at once, when Run is in it or
// gets to it (a second SIGINT or SIGTERM): the drain starts.
func (s *Server) SkipShutdownDelay() { s.hurryOnce.Do(func() { close(s.hurry) }) }

// Run serves until ctx is done. Then /readyz answers 503 at once, while
// new requests are still served for the shutdown delay (the time a load
// balancer or a sidecar's application needs to stop sending them); then
// it stops accepting, drains in-flight requests for up to the shutdown
// timeout and returns. Listen must have succeeded.
func (s *Server) Run(ctx context.Context) error {
	if len(s.listeners) != len(s.routes)+1 {
		return errors.New("proxy: Run before Listen")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// The token managers, the watchers and fleet mode outlive ctx: requests
	// served during the shutdown delay and the drain still need tokens.
	// They stop once the listeners are drained.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()

	for _, rs := range s.routes {
		if rs.mgr != nil {
			wg.Go(func() { rs.mgr.Run(runCtx) })
		}
	}
	wg.Go(func() { s.rotator.Run(runCtx) })
	if s.fleet != nil {
		wg.Go(func() { s.fleet.Run(runCtx) })
	}
	if s.callers != nil {
		wg.Go(func() { s.callers.Watch(runCtx, callers.PollInterval) })
	}
	if s.adminToken != nil && s.adminToken.path != "" {
		wg.Go(func() { s.adminToken.watch(runCtx, callers.PollInterval) })
	}
	handlers := make([]http.Handler, 0, len(s.listeners))
	for _, rs := range s.routes {
		handlers = append(handlers, rs.handler)
	}
	handlers = append(handlers, route.Recover(s.adminHandler(), s.log, "admin"))

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
		runErr = s.delayShutdown(errs)
	case runErr = <-errs:
	}
	s.stopping.Store(true)
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
	if s.fleet != nil {
		wg.Wait() // Run's goroutines, the fleet's among them, before its connections close
		_ = s.fleet.Close()
	}
	_ = s.audit.Close()
	s.listeners = nil
	return runErr
}

// delayShutdown turns /readyz to 503 and keeps serving for the shutdown
// delay, unless SkipShutdownDelay or a failing listener ends it first
// (whose error it returns).
func (s *Server) delayShutdown(errs <-chan error) error {
	s.stopping.Store(true)
	d := s.cfg.ShutdownDelay
	if d <= 0 {
		return nil
	}
	s.log.Info("stopping: /readyz answers 503, new requests are still served for the shutdown delay", "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.hurry:
		s.log.Info("shutdown delay cut short by a second signal")
		return nil
	case err := <-errs:
		return err
	}
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

// Ready reports whether every route that needs a token holds a valid one
// and the server is not shutting down.
func (s *Server) Ready() bool {
	if s.stopping.Load() {
		return false
	}
	for _, rs := range s.routes {
		if rs.mgr != nil && !rs.mgr.Status().Ready {
			return false
		}
	}
	return true
}
