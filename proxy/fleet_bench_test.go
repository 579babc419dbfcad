package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/redistest"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/fleet"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/tokens"
)

// The fleet-mode benchmarks, side by side with what they are compared to:
//
//	go test -run '^$' -bench 'BenchmarkFleet' -benchtime 3000x ./proxy/
//
// BenchmarkFleetSearch serves a 1 KB search answer at the route handler
// three ways — a local hit, a level-2 hit (a local miss that Redis
// answers) and a miss forwarded to an upstream that answers in 20 ms —
// and reports the latency percentiles and the proxy's CPU time per
// request. BenchmarkFleetLicenseBudget times a license's two Redis round
// trips (reserve, settle). BenchmarkFleetSearchRedisDown compares the
// throughput of uncached searches without fleet mode and with a Redis that
// accepts connections but never answers (the breaker keeps searches off
// it).

// fleetClient runs a fleet Client on the Redis at url until the benchmark
// ends.
func fleetClient(b testing.TB, url string, timeout time.Duration) *fleet.Client {
	c, err := fleet.New(&config.Redis{URL: config.Secret(url), Prefix: "bench", Timeout: timeout}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.Run(ctx) })
	b.Cleanup(func() { cancel(); wg.Wait(); _ = c.Close() })
	return c
}

// slowUpstream answers body after delay.
func slowUpstream(b testing.TB, body string, delay time.Duration) string {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if delay > 0 {
			time.Sleep(delay)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(up.Close)
	return up.URL
}

func benchStockRoute(b testing.TB, upstream string, size int, f *fleet.Client) *testRoute {
	rc := testroute.Stock(b, upstream)
	rc.Cache = config.Cache{Size: size, TTL: time.Hour, MaxBytes: 64 << 20, StaleIfError: time.Hour}
	opts := RouteOptions{Metrics: metrics.New()}
	if f != nil {
		opts.Fleet = f.Route(rc)
	}
	return NewRoute(rc, tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{}), opts)
}

func searchRequest(i int) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat&search_parameters%5Boffset%5D="+strconv.Itoa(i), nil)
	r.Host = "127.0.0.1:8080" // the route's loopback listener takes only local names
	return r
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed serves one request of n per iteration and reports the latency
// percentiles and the CPU time per request.
func timed(b *testing.B, rt http.Handler, n int, want string) {
	lat := make([]time.Duration, 0, b.N)
	i := 0
	cpu := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		w := &discardWriter{h: make(http.Header)}
		start := time.Now()
		rt.ServeHTTP(w, searchRequest(i%n))
		lat = append(lat, time.Since(start))
		if w.status != http.StatusOK || w.h.Get("X-Cache") != want {
			b.Fatalf("status %d, X-Cache %q, want %s", w.status, w.h.Get("X-Cache"), want)
		}
		i++
	}
	b.StopTimer()
	perOp := (cpuTime() - cpu) / time.Duration(len(lat))
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)]) / 1e3 }
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(perOp)/1e3, "cpu-µs/op")
}

func BenchmarkFleetSearch(b *testing.B) {
	body := searchAnswer(1 << 10)
	const keys = 512
	b.Run("local-hit", func(b *testing.B) {
		rt := benchStockRoute(b, slowUpstream(b, body, 0), 1024, nil)
		for i := range keys {
			rt.ServeHTTP(&discardWriter{h: make(http.Header)}, searchRequest(i))
		}
		timed(b, rt, keys, "HIT")
	})
	b.Run("level2-hit", func(b *testing.B) {
		srv := redistest.Start(b, redistest.Options{})
		up := slowUpstream(b, body, 0)
		// Another replica fetched every search: they are all in Redis.
		other := benchStockRoute(b, up, 1024, fleetClient(b, srv.URL, 500*time.Millisecond))
		for i := range keys {
			other.ServeHTTP(&discardWriter{h: make(http.Header)}, searchRequest(i))
		}
		// This replica's own level holds one entry: every request misses
		// it and is answered by Redis.
		rt := benchStockRoute(b, up, 1, fleetClient(b, srv.URL, 500*time.Millisecond))
		waitStored(b, rt, keys)
		timed(b, rt, keys, "HIT")
	})
	b.Run("upstream-20ms", func(b *testing.B) {
		rt := benchStockRoute(b, slowUpstream(b, body, 20*time.Millisecond), 1024, nil)
		w := &discardWriter{h: make(http.Header)}
		rt.ServeHTTP(w, searchRequest(0)) // the connection
		noCache := func(i int) *http.Request {
			r := searchRequest(i)
			r.Header.Set("Cache-Control", "no-cache")
			return r
		}
		lat := make([]time.Duration, 0, b.N)
		cpu := cpuTime()
		b.ResetTimer()
		for b.Loop() {
			w := &discardWriter{h: make(http.Header)}
			start := time.Now()
			rt.ServeHTTP(w, noCache(0))
			lat = append(lat, time.Since(start))
			if w.status != http.StatusOK {
				b.Fatalf("status %d", w.status)
			}
		}
		b.StopTimer()
		perOp := (cpuTime() - cpu) / time.Duration(len(lat))
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
		b.ReportMetric(float64(lat[int(float64(len(lat)-1)*0.99)])/1e3, "p99-µs")
		b.ReportMetric(float64(perOp)/1e3, "cpu-µs/op")
	})
}

// waitStored waits until the background stores of the other replica are
// all in Redis: every search is then a level-2 hit.
func waitStored(b *testing.B, rt *testRoute, keys int) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < keys; {
		w := &discardWriter{h: make(http.Header)}
		rt.ServeHTTP(w, searchRequest(i))
		if w.h.Get("X-Cache") == "HIT" {
			i++
			continue
		}
		if time.Now().After(deadline) {
			b.Fatalf("search %d is not in Redis after 10 s", i)
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkFleetLicenseBudget(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	rc := testroute.Stock(b, "http://127.0.0.1:1")
	budget := fleetClient(b, srv.URL, 500*time.Millisecond).Route(rc).Budget(1<<30, time.Minute)
	ctx := context.Background()
	rec := audit.Record{Route: "stock", RequestID: "bench", Outcome: audit.OutcomeLicensed, ContentID: "123456789", License: "Standard"}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		slot, err := budget.Reserve(ctx, audit.Record{})
		if err != nil {
			b.Fatal(err)
		}
		if !slot.Settle(ctx, true, rec) {
			b.Fatal("not settled")
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(lat[int(float64(len(lat)-1)*0.99)])/1e3, "p99-µs")
}

// silentRedis accepts connections and never answers: a Redis that hangs,
// the worst case for a client (every operation runs into its timeout).
func silentRedis(b testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	b.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "redis://" + ln.Addr().String() + "/0"
}

func BenchmarkFleetSearchRedisDown(b *testing.B) {
	body := searchAnswer(1 << 10)
	up := slowUpstream(b, body, 0)
	plain := benchStockRoute(b, up, 1024, nil)
	down := benchStockRoute(b, up, 1024, fleetClient(b, silentRedis(b), 500*time.Millisecond))
	// The first lookup meets the silent Redis and opens the breaker, as
	// the first search after an outage would.
	down.ServeHTTP(&discardWriter{h: make(http.Header)}, searchRequest(-1))

	// The two routes take turns, in rounds of the same number of new
	// searches (each a miss) from two goroutines, so that whatever else
	// the machine does weighs on both alike.
	const round = 100
	var n atomic.Int64
	var plainCPU, downCPU time.Duration
	run := func(rt http.Handler) time.Duration {
		cpu := cpuTime()
		defer func() {
			if rt == down {
				downCPU += cpuTime() - cpu
			} else {
				plainCPU += cpuTime() - cpu
			}
		}()
		start := time.Now()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for range round / 2 {
					w := &discardWriter{h: make(http.Header)}
					rt.ServeHTTP(w, searchRequest(int(n.Add(1))))
					if w.status != http.StatusOK {
						b.Errorf("status %d", w.status)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	var plainTime, downTime time.Duration
	rounds := 0
	for b.Loop() {
		if rounds%2 == 0 {
			plainTime += run(plain)
			downTime += run(down)
		} else {
			downTime += run(down)
			plainTime += run(plain)
		}
		rounds++
	}
	searches := float64(rounds * round)
	b.ReportMetric(searches/plainTime.Seconds(), "no-fleet-searches/s")
	b.ReportMetric(searches/downTime.Seconds(), "redis-down-searches/s")
	b.ReportMetric(100*(1-plainTime.Seconds()/downTime.Seconds()), "%-throughput-lost")
	b.ReportMetric(float64(plainCPU)/searches/1e3, "no-fleet-cpu-µs/search")
	b.ReportMetric(float64(downCPU)/searches/1e3, "redis-down-cpu-µs/search")
}
