package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/aemlinks"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/cache"
	"github.com/imsproxy/imsproxy/proxy/callers"
	"github.com/imsproxy/imsproxy/proxy/fleet"
	"github.com/imsproxy/imsproxy/proxy/inflight"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/proxy/stock"
	"github.com/imsproxy/imsproxy/tokens"
)

// newRoute builds route rc: its token manager, its transports and its
// chain of stages (buildRoute).
func (s *Server) newRoute(rc *config.Route, topts tokens.Options) (*routeState, error) {
	rs := &routeState{cfg: rc}
	upstream := NewTransport(rc)
	imsClient := &http.Client{Transport: upstream, Timeout: tokens.DefaultFetchTimeout}
	src, err := tokens.NewSource(rc, imsClient)
	if err != nil {
		return nil, err
	}
	parts := s.parts()
	parts.upstream = upstream
	rotate := tokens.RotateOptions{}
	if s.fleet != nil {
		parts.fleet = s.fleet.Route(rc)
		if rc.ShareToken && src != nil {
			share := func(rc *config.Route, own tokens.Source) (tokens.Source, error) {
				return tokens.NewSharedSource(rc, own, parts.fleet.TokenStore(), s.now, s.log)
			}
			if src, err = share(rc, src); err != nil {
				return nil, err
			}
			rotate.Wrap = share
		}
	}
	if src != nil {
		rs.mgr = s.newManager(rc, src, topts)
		parts.tokens = rs.mgr
	}
	rs.handler, rs.cache = buildRoute(rc, parts)

	if rs.mgr != nil {
		rotate.Count = s.metrics.Reloads(rc.Name)
	}
	if rs.cache != nil {
		// Search answers carry is_licensed, which belongs to the
		// credentials' organisation.
		rotate.OnReplaced = func() { rs.cache.Purge(context.Background(), "credentials") }
	}
	rs.live = s.rotator.Add(rc, rs.mgr, imsClient, rotate)
	s.metrics.WatchCertificate(rc.Name, rs.live.CertificateExpiry)
	return rs, nil
}

// The packages the chain is built from meet through these interfaces.
var (
	_ stock.Auditor       = (*audit.Log)(nil)
	_ tokens.TokenSource  = (*tokens.Manager)(nil)
	_ http.RoundTripper   = observed{}
	_ callers.RefusedFunc = (*stock.Policy)(nil).Refused
)

// routeParts is what a route's chain is built from.
type routeParts struct {
	tokens   tokens.TokenSource // nil (a nil interface) for AUTH=none
	upstream http.RoundTripper  // to the upstream, IMS and the download host
	callers  *callers.File      // nil: anyone may call
	browsers callers.Browsers   // the allowed origins and hosts; CheckHost is the route's
	audit    *audit.Log         // nil: no audit log
	inflight *inflight.Limiter  // nil: no bound across requests
	fleet    *fleet.Route       // nil: not in fleet mode
	metrics  *metrics.Metrics
	log      *slog.Logger
	now      func() time.Time
	// tokenWait is IMSPROXY_TOKEN_WAIT: how long a request may wait for
	// a token, which a license's reservation must outlast.
	tokenWait time.Duration
}

func (s *Server) parts() routeParts {
	return routeParts{callers: s.callers, audit: s.audit, inflight: s.inflight, metrics: s.metrics, log: s.log, now: s.now,
		browsers:  callers.Browsers{Origins: s.cfg.AllowedOrigins, Hosts: s.cfg.AllowedHosts},
		tokenWait: s.cfg.TokenWait}
}

// buildRoute returns the handler of route rc and its search cache (nil
// unless a stock route with CACHE_SIZE > 0). A request goes through the
// chain top to bottom:
//
//	route.New        the skeleton: request id, log fields, panics, metrics
//	callers.Check    no forward proxying, TRACE or cross-site browser
//	                 requests; who may call; the body limit
//	policy.Handler   stock: licensing guards and audit, downloads
//	searchCache      stock: searches answered from the cache, and in
//	                 fleet mode from its shared level in Redis
//	aemlinks         aem: AEM's links to itself rewritten to the route
//	reverseProxy     forwards; the tokens.Transport under it adds the
//	                 credentials after hop-by-hop headers are removed
//
// Fleet mode is no stage: its parts plug in behind the stages' seams (the
// cache's Shared level, the policy's Budget and Trail). The memory of
// answers held by the cache and the policy is bounded by one inflight
// Limiter for every route.
//
// A new stage is a package under proxy/ with a func(next http.Handler)
// http.Handler, placed here.
func buildRoute(rc *config.Route, p routeParts) (http.Handler, *cache.Cache) {
	timed := observed{base: p.upstream, observe: p.metrics.UpstreamObserver(rc.Name)}
	credentials := tokens.NewTransport(timed, p.tokens, rc.Credentials.ClientID)
	count := p.metrics.Requests(rc.Name).Count
	admit := callers.Options{File: p.callers, Browsers: p.browsers}
	// Without a callers file nothing tells a caller from a web page that
	// reached the listener through DNS rebinding but the Host.
	admit.Browsers.CheckHost = p.callers == nil
	admit.Browsers.Addresses = !config.LoopbackAddress(rc.Listen)
	admit.Browsers.Hosts = withListenerName(admit.Browsers.Hosts, rc.Listen)

	switch rc.Type {
	case config.TypeAEM:
		var links aemlinks.Options
		if p.inflight != nil {
			links.Limiter = p.inflight
		}
		return route.New(rc, p.log, count,
			callers.Check(admit,
				aemlinks.Rewrite(rc.Upstream, links)(
					reverseProxy(rc.Upstream, "UPSTREAM", credentials, "")))), nil
	case config.TypeGeneric:
		return route.New(rc, p.log, count,
			callers.Check(admit,
				reverseProxy(rc.Upstream, "UPSTREAM", credentials, ""))), nil
	}
	var c *cache.Cache
	if rc.Cache.Size > 0 {
		c = cache.New(rc, p.now, p.log, p.metrics)
		if p.inflight != nil {
			c.SetLimiter(p.inflight)
		}
		if p.fleet != nil {
			c.Share(p.fleet.Level2(func(reason string) { c.PurgeLocal(reason) }))
		}
	}
	policy := stock.New(rc, stockOptions(rc, p, credentials, timed, c))
	admit.Refused = policy.Refused
	return route.New(rc, p.log, count,
		callers.Check(admit,
			policy.Handler(
				searchCache(c,
					reverseProxy(rc.Upstream, "UPSTREAM", credentials, rc.Product))))), c
}

// newManager returns the token manager of route rc.
func (s *Server) newManager(rc *config.Route, src tokens.Source, topts tokens.Options) *tokens.Manager {
	also := topts.OnExchange
	topts.Kind = string(rc.Auth)
	if topts.Wait == 0 {
		topts.Wait = s.cfg.TokenWait
	}
	topts.Now = s.now
	topts.Logger = s.log
	topts.OnExchange = func(e tokens.Exchange) {
		s.metrics.ObserveExchange(e)
		if also != nil {
			also(e)
		}
	}
	mgr := tokens.NewManager(rc.Name, src, topts)
	s.metrics.WatchTokens(rc.Name, mgr.Status, s.now)
	return mgr
}

// stockOptions is what the Stock policy of route rc works with.
func stockOptions(rc *config.Route, p routeParts, credentials, timed http.RoundTripper, c *cache.Cache) stock.Options {
	opts := stock.Options{
		Lookup: credentials,
		Count:  func(outcome string) { p.metrics.License(rc.Name, outcome) },
		Now:    p.now,
	}
	if p.audit != nil {
		opts.Audit = p.audit
	}
	if p.inflight != nil {
		opts.Limiter = p.inflight
	}
	limit := 0
	if rc.AllowLicense {
		limit = rc.LicenseDailyLimit
	}
	var remaining func(context.Context) (int, bool)
	switch {
	case p.fleet != nil:
		// Every attempt goes to the fleet's audit trail, limit or not.
		b := p.fleet.Budget(limit, fleet.Lease(rc.Timeout, p.tokenWait))
		opts.Budget, opts.Trail, remaining = b, p.fleet.Trail(), b.Remaining
	case limit > 0:
		b := stock.NewDailyLimit(limit, p.now, p.audit.LicensesOn(audit.UTCDay(p.now()), rc.Name))
		opts.Budget, remaining = b, b.Remaining
	}
	if limit > 0 {
		p.metrics.LicenseBudget(rc.Name, limit, func() (float64, bool) {
			n, ok := remaining(context.Background())
			return float64(n), ok
		})
	}
	if rc.DownloadUpstream != nil {
		opts.Download = reverseProxy(rc.DownloadUpstream, "DOWNLOAD_UPSTREAM", &tokens.QueryTransport{Base: timed, Tokens: p.tokens}, "")
	}
	if c != nil {
		opts.OnLicensed = func(ctx context.Context) { c.Purge(ctx, "license") }
	}
	return opts
}

// searchCache puts the search cache c in front of next; without a cache,
// next alone.
func searchCache(c *cache.Cache, next http.Handler) http.Handler {
	if c == nil {
		return next
	}
	return c.Handler(next)
}

// withListenerName adds the host name of listen, when it is a name, to the
// Host names a listener accepts: the operator wrote it there, and callers
// (imsproxy health among them) address the listener by it.
func withListenerName(hosts []string, listen string) []string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" || net.ParseIP(host) != nil {
		return hosts
	}
	return append(slices.Clip(hosts), strings.ToLower(host))
}
