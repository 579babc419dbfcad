package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/tokens"
)

// The search-cache benchmarks: the same search through a stock route,
// uncached (forwarded to a local upstream every time) and as a cache hit,
// end to end over loopback and at the handler alone.
//
//	go test -run '^$' -bench 'BenchmarkSearch' -benchmem ./proxy/

// searchAnswer is a Stock-like search answer of about size bytes.
func searchAnswer(size int) string {
	var b strings.Builder
	b.WriteString(`{"nb_results":120345,"files":[`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"title":"Cat sitting on a windowsill in the sun %d","width":6000,"height":4000,"thumbnail_url":"https://t4.ftcdn.net/jpg/00/%02d/%02d/24/500_F_%d.jpg","is_licensed":""}`,
			100000+i, i, i%100, (i*7)%100, 100000+i)
	}
	b.WriteString(`]}`)
	return b.String()
}

var benchSizes = []int{1 << 10, 32 << 10}

// benchSearchRoute serves a stock route in front of an upstream answering
// body, with or without a cache.
func benchSearchRoute(b testing.TB, body string, cached bool) *testRoute {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(up.Close)
	rc := testroute.Stock(b, up.URL)
	if cached {
		rc.Cache = config.Cache{Size: 1024, TTL: time.Hour, MaxBytes: 64 << 20, StaleIfError: time.Hour}
	}
	mgr := tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{})
	return NewRoute(rc, mgr, RouteOptions{Metrics: metrics.New()})
}

// eachSearchCase runs bench for every answer size, uncached and as hits.
func eachSearchCase(b *testing.B, bench func(b *testing.B, rt *testRoute)) {
	for _, size := range benchSizes {
		body := searchAnswer(size)
		for _, cached := range []bool{false, true} {
			name := fmt.Sprintf("uncached/%dKB", size>>10)
			if cached {
				name = fmt.Sprintf("hit/%dKB", size>>10)
			}
			b.Run(name, func(b *testing.B) { bench(b, benchSearchRoute(b, body, cached)) })
		}
	}
}

func BenchmarkSearch(b *testing.B) {
	eachSearchCase(b, func(b *testing.B, rt *testRoute) {
		front := httptest.NewServer(rt)
		b.Cleanup(front.Close)
		benchGet(b, front.URL)
	})
}

// discardWriter is the cheapest ResponseWriter, so that the handler
// benchmarks measure the route and not a recorder copying bodies.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkSearchHandler(b *testing.B) {
	eachSearchCase(b, func(b *testing.B, rt *testRoute) {
		// One request and writer for all iterations: the benchmark
		// measures the route, not building requests.
		req := httptest.NewRequest(http.MethodGet,
			"/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat&search_parameters%5Blimit%5D=32", nil)
		req.Host = "127.0.0.1:8080" // the route's loopback listener takes only local names
		w := &discardWriter{h: make(http.Header)}
		serve := func() int {
			clear(w.h)
			w.status = 0
			rt.ServeHTTP(w, req)
			return w.status
		}
		serve() // warm the cache (and the connection)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if st := serve(); st != http.StatusOK {
				b.Fatalf("status %d", st)
			}
		}
	})
}

// writeRecorder keeps every slice a handler writes, without copying.
type writeRecorder struct {
	discardWriter
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return len(p), nil
}

// A hit writes the stored body itself: two hits hand the writer the same
// bytes (one array, not a copy each), and a hit allocates far less than
// the body's size.
func TestCacheHit_WritesTheStoredBodyWithoutACopy(t *testing.T) {
	body := searchAnswer(32 << 10)
	rt := benchSearchRoute(t, body, true)
	// A request each: the route adds X-Product to the request it serves,
	// which would make a reused one another search.
	newRequest := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat", nil)
		r.Host = "127.0.0.1:8080"
		return r
	}
	serveRequest := func(r *http.Request) *writeRecorder {
		w := &writeRecorder{discardWriter: discardWriter{h: make(http.Header)}}
		rt.ServeHTTP(w, r)
		if w.status != http.StatusOK || len(w.writes) == 0 {
			t.Fatalf("status %d after %d writes", w.status, len(w.writes))
		}
		return w
	}
	serve := func() *writeRecorder { return serveRequest(newRequest()) }
	serve() // the miss that stores the answer
	first, second := serve(), serve()
	if got := first.h.Get("X-Cache"); got != "HIT" {
		t.Fatalf("X-Cache = %q, want HIT", got)
	}
	a, b := first.writes[len(first.writes)-1], second.writes[len(second.writes)-1]
	if string(a) != body[len(body)-len(a):] || &a[0] != &b[0] {
		t.Errorf("the two hits wrote different arrays (or not the body's end): each hit copies the body")
	}

	const hits = 200
	reqs := make([]*http.Request, hits)
	for i := range reqs {
		reqs[i] = newRequest()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, r := range reqs {
		serveRequest(r)
	}
	runtime.ReadMemStats(&after)
	if perHit := (after.TotalAlloc - before.TotalAlloc) / hits; perHit > uint64(len(body)/8) {
		t.Errorf("a hit allocates %d B for a %d B body: the body is copied", perHit, len(body))
	}
}
