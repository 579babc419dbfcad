// Package metrics holds imsproxy's Prometheus collectors. No label ever
// carries a path, a query, a key or a token: every label value comes from
// a fixed set (route names come from the configuration).
package metrics

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imsproxy/imsproxy/internal/version"
	"github.com/imsproxy/imsproxy/tokens"
)

// durationBuckets are the buckets of both duration histograms: 1 ms to
// 60 s (the default TIMEOUT), so that the two compare bucket for bucket.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics holds the collectors, registered on a registry of their own.
type Metrics struct {
	registry *prometheus.Registry

	requests       *prometheus.CounterVec   // route, method, code, cache
	durations      *prometheus.HistogramVec // route, code
	upstream       *prometheus.HistogramVec // route
	exchanges      *prometheus.CounterVec   // route, auth, outcome, error
	cacheHits      *prometheus.CounterVec   // route
	cacheMisses    *prometheus.CounterVec   // route
	cacheEvictions *prometheus.CounterVec   // route
	licenses       *prometheus.CounterVec   // route, outcome
	reloads        *prometheus.CounterVec   // route, outcome
}

// New returns the collectors registered on a registry of their own (plus
// the Go runtime and process collectors).
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsproxy_requests_total",
			Help: "Requests answered, by route, method, status class and cache result.",
		}, []string{"route", "method", "code", "cache"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imsproxy_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by route and status class.",
			Buckets: durationBuckets,
		}, []string{"route", "code"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imsproxy_upstream_duration_seconds",
			Help:    "Time from sending a request upstream to its response headers.",
			Buckets: durationBuckets,
		}, []string{"route"}),
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsproxy_token_exchanges_total",
			Help: "Token exchanges with IMS, by route, auth kind, outcome and IMS error code; outcome shared is a token another replica exchanged, read from Redis.",
		}, []string{"route", "auth", "outcome", "error"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsproxy_cache_hits_total",
			Help: "Search answers served from the cache (fresh or stale).",
		}, []string{"route"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsproxy_cache_misses_total",
			Help: "Cacheable searches that had to go upstream.",
		}, []string{"route"}),
		cacheEvictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsproxy_cache_evictions_total",
			Help: "Entries removed from the search cache to make room or because they expired.",
		}, []string{"route"}),
		licenses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsproxy_licenses_total",
			Help: "Licensing attempts, by route and outcome.",
		}, []string{"route", "outcome"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imsproxy_credential_reloads_total",
			Help: "Credential reloads (file change or SIGHUP), by route and outcome; on failure the old credentials stay in use.",
		}, []string{"route", "outcome"}),
	}
	v := version.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "imsproxy_build_info",
		Help:        "Always 1; the labels say which imsproxy runs (the revision is empty when the build did not record it).",
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion},
	})
	buildInfo.Set(1)
	m.registry.MustRegister(m.requests, m.durations, m.upstream, m.exchanges, m.cacheHits, m.cacheMisses, m.cacheEvictions,
		m.licenses, m.reloads, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// RequestCounter counts one route's answered requests and their
// durations. Its children of imsproxy_requests_total and
// imsproxy_request_duration_seconds are indexed by method, status class
// and cache result and resolved on first use, so that counting a request
// takes no lock, no label hashing and no allocation.
type RequestCounter struct {
	vec       *prometheus.CounterVec
	durations *prometheus.HistogramVec
	route     string
	cells     [len(methodLabels)][len(statusClasses)][len(cacheLabels)]atomic.Pointer[prometheus.Counter]
	timers    [len(statusClasses)]atomic.Pointer[prometheus.Observer]
}

// Requests returns the counter of route's answered requests.
func (m *Metrics) Requests(route string) *RequestCounter {
	return &RequestCounter{vec: m.requests, durations: m.durations, route: route}
}

// Count records one answered request: xcache is X-Cache's value, elapsed
// the time from its arrival to the end of its answer.
func (rc *RequestCounter) Count(method string, status int, xcache string, elapsed time.Duration) {
	mi, si, ci := methodIndex(method), statusIndex(status), cacheIndex(xcache)
	cell := &rc.cells[mi][si][ci]
	c := cell.Load()
	if c == nil {
		counter := rc.vec.WithLabelValues(rc.route, methodLabels[mi], statusClasses[si], cacheLabels[ci])
		cell.CompareAndSwap(nil, &counter) // a racing request stored the same child
		c = cell.Load()
	}
	(*c).Inc()
	timer := &rc.timers[si]
	o := timer.Load()
	if o == nil {
		observer := rc.durations.WithLabelValues(rc.route, statusClasses[si])
		timer.CompareAndSwap(nil, &observer)
		o = timer.Load()
	}
	(*o).Observe(elapsed.Seconds())
}

// UpstreamObserver returns what records the time to response headers of
// one of route's round trips to its upstream.
func (m *Metrics) UpstreamObserver(route string) func(time.Duration) {
	h := m.upstream.WithLabelValues(route)
	return func(d time.Duration) { h.Observe(d.Seconds()) }
}

// ObserveExchange records one token exchange (tokens.Options.OnExchange).
// A token read from the fleet's store is outcome "shared": another
// replica's exchange, which summing "success" over the fleet must not
// count twice.
func (m *Metrics) ObserveExchange(e tokens.Exchange) {
	outcome, code := "success", ""
	switch {
	case e.Err != nil:
		outcome, code = "failure", tokens.ErrorCode(e.Err)
	case e.Token.FromFleet:
		outcome = "shared"
	}
	m.exchanges.WithLabelValues(e.Route, e.Kind, outcome, code).Inc()
}

// Cache is what a route's search cache counts.
type Cache struct {
	Hits, Misses, Evictions prometheus.Counter
}

// Cache returns route's search-cache counters, and exports entries and
// bytes, read at scrape time. The counters show at 0 from the start: a
// rate or an alert over a series that does not exist yet sees nothing.
func (m *Metrics) Cache(route string, entries, bytes func() float64) *Cache {
	m.gaugeFunc("imsproxy_cache_entries", "Entries in the search cache (fresh or kept for stale-if-error).", route, entries)
	m.gaugeFunc("imsproxy_cache_bytes", "Bytes the search cache accounts for: bodies, keys, headers and per-entry overhead.", route, bytes)
	return &Cache{
		Hits:      m.cacheHits.WithLabelValues(route),
		Misses:    m.cacheMisses.WithLabelValues(route),
		Evictions: m.cacheEvictions.WithLabelValues(route),
	}
}

// License counts a licensing attempt; outcome is one of a fixed set
// ("licensed", "failed", a refusal's code...).
func (m *Metrics) License(route, outcome string) { m.licenses.WithLabelValues(route, outcome).Inc() }

// Reloads shows a route's credential-reload counters at 0 and returns
// what counts one reload by outcome ("success" or "failure").
func (m *Metrics) Reloads(route string) func(outcome string) {
	for _, outcome := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(route, outcome)
	}
	return func(outcome string) { m.reloads.WithLabelValues(route, outcome).Inc() }
}

// gaugeFunc registers a per-route gauge computed at scrape time.
func (m *Metrics) gaugeFunc(name, help, route string, f func() float64) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: name, Help: help, ConstLabels: prometheus.Labels{"route": route},
	}, f))
}

// WatchTokens exports the seconds until the route's token expires: 0
// without a valid token, and no sample at all for a valid token whose
// expiry is unknown (a fixed token that is not a JWT), since a 0 would
// read as "no token" and an alert on it would never clear.
func (m *Metrics) WatchTokens(route string, status func() tokens.Status, now func() time.Time) {
	m.registry.MustRegister(optionalGauge{
		desc: prometheus.NewDesc("imsproxy_token_expiry_seconds",
			"Seconds until the current token expires (0 without a valid token; absent when a valid token's expiry is unknown).",
			nil, prometheus.Labels{"route": route}),
		value: func() (float64, bool) {
			st := status()
			switch {
			case !st.Ready:
				return 0, true
			case st.Expiry.IsZero():
				return 0, false
			}
			return st.Expiry.Sub(now()).Seconds(), true
		},
	})
}

// WatchCertificate exports the expiry time of the route's certificate. A
// route without a known certificate (OAuth, a fixed token) exports no
// sample at all: a 0 would be a false date, and an "expires soon" alert on
// it would fire for every such route.
func (m *Metrics) WatchCertificate(route string, expiry func() time.Time) {
	m.registry.MustRegister(optionalGauge{
		desc: prometheus.NewDesc("imsproxy_certificate_expiry_timestamp_seconds",
			"When the route's certificate expires (Unix time); absent when the route has no known certificate.",
			nil, prometheus.Labels{"route": route}),
		value: func() (float64, bool) {
			t := expiry()
			return float64(t.Unix()), !t.IsZero()
		},
	})
}

// optionalGauge is a gauge computed at scrape time that exports nothing
// while its value is unknown.
type optionalGauge struct {
	desc  *prometheus.Desc
	value func() (float64, bool)
}

func (g optionalGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g optionalGauge) Collect(ch chan<- prometheus.Metric) {
	if v, ok := g.value(); ok {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
	}
}

// The label values of imsproxy_requests_total: fixed sets, whatever the
// callers send.
var (
	methodLabels = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, "COPY", "MOVE", "OTHER"}
	statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
	cacheLabels   = [...]string{"none", "hit", "miss", "bypass", "stale"}
)

func methodIndex(method string) int {
	for i, m := range methodLabels[:len(methodLabels)-1] {
		if m == method {
			return i
		}
	}
	return len(methodLabels) - 1
}

func statusIndex(status int) int {
	if status >= 100 && status < 600 {
		return status/100 - 1
	}
	return len(statusClasses) - 1
}

// cacheIndex maps X-Cache to its label; "none" when the cache had no say.
func cacheIndex(xcache string) int {
	switch xcache {
	case "HIT":
		return 1
	case "MISS":
		return 2
	case "BYPASS":
		return 3
	case "STALE":
		return 4
	}
	return 0
}
