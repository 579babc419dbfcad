package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Redis exports the fleet's Redis: imsproxy_redis_up (read from up at
// scrape time), imsproxy_redis_cache_up when the search cache has a Redis
// of its own (cacheUp's ok), and imsproxy_redis_errors_total by
// operation, each of ops shown at 0 from the start. It returns what counts
// one failed operation.
func (m *Metrics) Redis(up func() bool, cacheUp func() (up, ok bool), ops []string) func(op string) {
	m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "imsproxy_redis_up",
		Help: "1 while the fleet's Redis (the shared state) answers, 0 after an operation failed until it answers again.",
	}, func() float64 { return bit(up()) }))
	m.registry.MustRegister(optionalGauge{
		desc: prometheus.NewDesc("imsproxy_redis_cache_up",
			"1 while the search cache's own Redis (IMSPROXY_REDIS_CACHE_URL) answers; absent without one.", nil, nil),
		value: func() (float64, bool) {
			u, ok := cacheUp()
			return bit(u), ok
		},
	})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imsproxy_redis_errors_total",
		Help: "Redis operations that failed or took longer than IMSPROXY_REDIS_TIMEOUT (50 ms for the search cache), by operation.",
	}, []string{"op"})
	m.registry.MustRegister(errs)
	for _, op := range ops {
		errs.WithLabelValues(op)
	}
	return func(op string) { errs.WithLabelValues(op).Inc() }
}

// LicenseBudget exports a route's LICENSE_DAILY_LIMIT and what is left of
// it today (remaining, read at scrape time; absent when it cannot be
// known, such as while Redis is unreachable).
func (m *Metrics) LicenseBudget(route string, limit int, remaining func() (float64, bool)) {
	m.gaugeFunc("imsproxy_license_daily_limit", "The route's LICENSE_DAILY_LIMIT: licenses a UTC day, across the fleet in fleet mode.", route,
		func() float64 { return float64(limit) })
	m.registry.MustRegister(optionalGauge{
		desc: prometheus.NewDesc("imsproxy_license_daily_remaining",
			"Licenses the route may still make today (UTC), counting those in flight; absent while unknown.",
			nil, prometheus.Labels{"route": route}),
		value: remaining,
	})
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
