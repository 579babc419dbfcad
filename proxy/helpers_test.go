package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
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

// RouteOptions is what a test builds a route from, beside its
// configuration and token source.
type RouteOptions struct {
	Logger    *slog.Logger
	Transport http.RoundTripper // nil = NewTransport(cfg)
	Metrics   *metrics.Metrics  // nil = a registry of the route's own
	Callers   *callers.File     // nil = anyone may call
	Audit     *audit.Log        // nil = no audit log
	Now       func() time.Time  // nil = time.Now
	Fleet     *fleet.Route      // nil = not in fleet mode
	Origins   []string          // IMSPROXY_ALLOWED_ORIGINS
	Hosts     []string          // IMSPROXY_ALLOWED_HOSTS
	Inflight  *inflight.Limiter // nil = no bound across requests
	// Tokens replaces guardedRoute's static token.
	Tokens tokens.TokenSource
}

// testRoute is a route built exactly as the server builds one (buildRoute),
// from a test's parts.
type testRoute struct {
	http.Handler
	cache *cache.Cache
}

// NewRoute builds route cfg with tokens from src (nil: none).
func NewRoute(cfg *config.Route, src tokens.TokenSource, opts RouteOptions) *testRoute {
	p := routeParts{tokens: src, upstream: opts.Transport, callers: opts.Callers, audit: opts.Audit,
		metrics: opts.Metrics, log: opts.Logger, now: opts.Now, inflight: opts.Inflight, fleet: opts.Fleet,
		browsers: callers.Browsers{Origins: opts.Origins, Hosts: opts.Hosts}}
	if p.upstream == nil {
		p.upstream = NewTransport(cfg)
	}
	if p.metrics == nil {
		p.metrics = metrics.New()
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = slog.New(route.LogHandler(p.log.Handler())) // as New does
	if p.now == nil {
		p.now = time.Now
	}
	h, c := buildRoute(cfg, p)
	return &testRoute{Handler: h, cache: c}
}

// PurgeCache empties the route's search cache; 0 without one.
func (rt *testRoute) PurgeCache(reason string) int {
	if rt.cache == nil {
		return 0
	}
	return rt.cache.Purge(context.Background(), reason)
}

// loadTestCallers writes a callers file of content for routes stock and
// aem and serves it.
func loadTestCallers(t *testing.T, content string) (*callers.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callers.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	routes := []string{"stock", "aem"}
	loaded, err := config.ReadCallers(path, routes)
	if err != nil {
		t.Fatal(err)
	}
	return callers.NewFile(path, routes, loaded, nil), path
}

// errorBody is the JSON of a proxy-made error.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Route   string `json:"route"`
}

// allowEditorialHeader is how a caller accepts an editorial-use-only asset.
const allowEditorialHeader = "X-Imsproxy-Allow-Editorial"
