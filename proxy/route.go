// Package proxy serves the routes of imsproxy: for every request it checks
// the caller, removes the caller's credentials, adds the route's IMS token
// and API key, and forwards with httputil.ReverseProxy, answering from the
// Stock search cache where it can. It also runs the listeners and the admin
// endpoints (Server).
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/aemlinks"
	"github.com/imsproxy/imsproxy/tokens"
)

// copyBuffers is shared by all routes: at most 128 idle buffers (4 MiB).
var copyBuffers = newBufferPool(128)

// TokenSource is what a route needs from a tokens.Manager.
type TokenSource interface {
	Token(ctx context.Context) (tokens.Token, error)
	Invalidate(value string) bool
}

var _ TokenSource = (*tokens.Manager)(nil)

// Route is the http.Handler of one route.
type Route struct {
	cfg     *config.Route
	tokens  TokenSource // nil for AUTH=none
	log     *slog.Logger
	metrics *Metrics        // nil: none recorded
	counts  *requestCounter // imsproxy_requests_total of this route; nil without metrics
	rp      *httputil.ReverseProxy
	send    http.Handler // rp, behind the link rewriting on aem routes
	cache   *Cache       // stock routes with CACHE_SIZE > 0; nil otherwise

	// Header values are prepared once and shared by every request: the
	// reverse proxy copies headers into the outgoing request, so sharing
	// the slices is safe and saves an allocation per request and header.
	apiKey  []string
	product []string
	bearer  atomic.Pointer[bearerHeader]

	guards guards // who may call, licensing, downloads (stock.go)
}

// bearerHeader caches "Bearer <token>" for the current token, and the
// x-api-key of the client it was issued to (nil: the route's apiKey).
type bearerHeader struct {
	token  string
	value  []string
	apiKey []string
}

// RouteOptions carries what a Route shares with the rest of the server.
type RouteOptions struct {
	Logger    *slog.Logger
	Transport http.RoundTripper // nil = NewTransport(cfg)
	Metrics   *Metrics          // nil = no metrics
	Callers   *Callers          // nil = anyone who reaches the listener may call
	Audit     *AuditLog         // nil = no audit log of licensing
	Now       func() time.Time  // clock of the licence day and the search cache; nil = time.Now
}

// NewRoute returns the handler of route cfg, getting tokens from src (nil
// when the route adds no token).
func NewRoute(cfg *config.Route, src TokenSource, opts RouteOptions) *Route {
	rt := &Route{cfg: cfg, tokens: src, log: opts.Logger, metrics: opts.Metrics}
	if opts.Metrics != nil {
		rt.counts = opts.Metrics.requestCounter(cfg.Name)
	}
	if rt.log == nil {
		rt.log = slog.New(slog.DiscardHandler)
	}
	if id := cfg.Credentials.ClientID; id != "" {
		rt.apiKey = []string{id}
	}
	if cfg.Type == config.TypeStock && cfg.Product != "" {
		rt.product = []string{cfg.Product}
	}
	if cfg.Type == config.TypeStock && cfg.Cache.Size > 0 {
		now := opts.Now
		if now == nil {
			now = time.Now
		}
		rt.cache = newCache(cfg, now, opts.Metrics)
	}
	base := opts.Transport
	if base == nil {
		base = NewTransport(cfg)
	}
	transport := &retryingTransport{base: base, tokens: src}
	if opts.Metrics != nil {
		transport.observe = opts.Metrics.upstreamObserver(cfg.Name)
	}
	upstream := cfg.Upstream
	rt.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			// ReverseProxy drops the query parameters Go cannot parse
			// (a ";" in one) before Rewrite; the query is the caller's.
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
		},
		Transport:    transport,
		BufferPool:   copyBuffers,
		ErrorHandler: rt.proxyError,
		ErrorLog:     slog.NewLogLogger(rt.log.Handler(), slog.LevelWarn),

		// The answer already carries the request's id (setRequestID); an
		// upstream that echoes it, as Stock does, would make it appear twice.
		ModifyResponse: func(resp *http.Response) error { resp.Header.Del(requestIDHeader); return nil },
	}
	rt.send = rt.rp
	if cfg.Type == config.TypeAEM {
		rt.send = aemlinks.Rewrite(upstream, aemlinks.Options{Logger: rt.log.With("route", cfg.Name)})(rt.rp)
	}
	rt.guards = newGuards(rt, opts)
	return rt
}

// Name is the route's name.
func (rt *Route) Name() string { return rt.cfg.Name }

// ServeHTTP implements http.Handler.
func (rt *Route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := newRecorder(w)
	defer rec.release()
	id := setRequestID(rec, r)
	defer rt.recoverPanic(rec, r, id, start)
	rt.serve(rec, r)
	rt.record(rec, r, id, start)
}

// serve runs the request through the route's stages.
func (rt *Route) serve(w http.ResponseWriter, r *http.Request) {
	caller, ok := rt.admit(w, r) // no forward proxying, the caller, the body size (callers.go)
	if !ok {
		return
	}
	w, held, ok := rt.stock(w, r, caller) // licensing guards, downloads (stock.go)
	if !ok {
		return
	}
	defer held.abandon() // settles a licence cut short by a panic; nil-safe
	if rt.cache != nil {
		rt.serveStock(w, r) // the search cache (cache_serve.go)
	} else {
		rt.forward(w, r)
	}
	held.finish()
}

// record counts the answer, logs the error line of a proxy-made error
// (errors.go) and, at debug level, logs the request.
func (rt *Route) record(rec *recorder, r *http.Request, id string, start time.Time) {
	status := rec.Status()
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends an empty 200
	}
	xcache := rec.Header().Get("X-Cache")
	if rt.counts != nil {
		rt.counts.count(r.Method, status, xcache)
	}
	rt.errorLine(r.Context(), rec, r, id, status)
	if rt.log.Enabled(r.Context(), slog.LevelDebug) {
		// The path but never the query: callers may put anything there.
		rt.log.LogAttrs(r.Context(), slog.LevelDebug, "request", append(rt.requestAttrs(r, id),
			slog.Int("status", status), slog.String("cache", cacheLabels[cacheIndex(xcache)]),
			slog.Duration("duration", time.Since(start)))...)
	}
}

// forward adds the route's credentials and sends r upstream.
func (rt *Route) forward(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	// The caller's own credentials never travel upstream.
	delete(h, "Authorization")
	delete(h, "Proxy-Authorization")
	delete(h, "X-Api-Key")
	var tok tokens.Token
	if rt.tokens != nil {
		var err error
		if tok, err = rt.tokens.Token(r.Context()); err != nil {
			rt.tokenError(w, r, err)
			return
		}
	}
	rt.setCredentials(h, tok)
	if rt.product != nil && len(h["X-Product"]) == 0 {
		h["X-Product"] = rt.product
	}
	rt.send.ServeHTTP(w, r)
}

// setCredentials puts the route's credentials on h: the bearer token (when
// tok has one) and the API key of the client the token was issued to —
// after a reload that changed the client, the new token goes with the new
// client's key.
func (rt *Route) setCredentials(h http.Header, tok tokens.Token) {
	apiKey := rt.apiKey
	if tok.Value != "" {
		b := rt.bearerFor(tok)
		h["Authorization"] = b.value
		if b.apiKey != nil {
			apiKey = b.apiKey
		}
	}
	if apiKey != nil {
		h["X-Api-Key"] = apiKey
	}
}

func (rt *Route) bearerFor(tok tokens.Token) *bearerHeader {
	if b := rt.bearer.Load(); b != nil && b.token == tok.Value {
		return b
	}
	b := &bearerHeader{token: tok.Value, value: []string{"Bearer " + tok.Value}}
	if tok.ClientID != "" {
		b.apiKey = []string{tok.ClientID}
	}
	rt.bearer.Store(b)
	return b
}

func (rt *Route) tokenError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		w.WriteHeader(statusClientClosed)
		return
	}
	retryAfter := time.Second
	var unavailable *tokens.UnavailableError
	if errors.As(err, &unavailable) && unavailable.RetryAfter > 0 {
		retryAfter = unavailable.RetryAfter
	}
	code := tokens.ErrorCode(err)
	rt.noteError(w, r, slog.LevelWarn, "no token for request", slog.String("ims_error", code), slog.Any("error", err))
	w.Header().Set("Retry-After", retryAfterSeconds(retryAfter))
	writeError(w, http.StatusServiceUnavailable, CodeTokenUnavailable,
		"The proxy has no valid Adobe IMS token (IMS error: "+code+"); retry after the Retry-After delay, and if it persists ask the operator to run `imsproxy check`.",
		rt.cfg.Name)
}

// statusClientClosed is recorded (never really sent) when the caller went
// away before an answer, as nginx does.
const statusClientClosed = 499

// proxyError answers when the upstream round trip failed.
func (rt *Route) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		w.WriteHeader(statusClientClosed)
		return
	}
	name := rt.cfg.Name
	prefix := "IMSPROXY_" + envName(name) + "_"
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		rt.bodyTooLarge(w)
		return
	case isTimeout(err):
		writeError(w, http.StatusGatewayTimeout, CodeUpstreamTimeout,
			"The upstream did not answer within "+rt.cfg.Timeout.String()+" ("+prefix+"TIMEOUT); retry later.", name)
	default:
		writeError(w, http.StatusBadGateway, CodeUpstreamUnreachable,
			"The upstream could not be reached; retry later, and if it persists ask the operator to check "+prefix+"UPSTREAM and the network.", name)
	}
	rt.noteError(w, r, slog.LevelWarn, "upstream request failed", slog.Any("error", redactURLError(err)))
}

// isTimeout tells a response that did not come in time (504) from a
// connection that could not be made (502).
func isTimeout(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// redactURLError drops the URL from a *url.Error: on download routes it
// carries the access token in its query.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(ue.Op + ": " + ue.Err.Error())
	}
	return err
}

// bufferPool lends the reverse proxy its 32 KiB copy buffers. A bounded
// channel rather than a sync.Pool: the BufferPool interface passes bare
// slices, which a sync.Pool could only hold by allocating a pointer per Put.
type bufferPool struct{ free chan []byte }

func newBufferPool(size int) bufferPool { return bufferPool{free: make(chan []byte, size)} }

func (p bufferPool) Get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (p bufferPool) Put(b []byte) {
	select {
	case p.free <- b:
	default: // enough are idle already; let this one go
	}
}

// itoa is strconv.FormatInt for messages.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }
