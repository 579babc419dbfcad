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
func benchSearchRoute(b testing.TB, body string, cached bool) *Route {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(up.Close)
	rc := testRouteConfig(b, up.URL)
	if cached {
		rc.Cache = config.Cache{Size: 1024, TTL: time.Hour, MaxBytes: 64 << 20, StaleIfError: time.Hour}
	}
	mgr := tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{})
	return NewRoute(rc, mgr, RouteOptions{Metrics: NewMetrics()})
}

// eachSearchCase runs bench for every answer size, uncached and as hits.
func eachSearchCase(b *testing.B, bench func(b *testing.B, rt *Route)) {
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
	eachSearchCase(b, func(b *testing.B, rt *Route) {
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
	eachSearchCase(b, func(b *testing.B, rt *Route) {
		// One request and writer for all iterations: the benchmark
		// measures the route, not building requests.
		req := httptest.NewRequest(http.MethodGet,
			"/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat&search_parameters%5Blimit%5D=32", nil)
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

// fillCache fills a cache of maxBytes with entries whose bodies are of
// bodySize bytes, each with a header set and key like a real search's,
// and returns the heap growth and what the entries hold (bodies, keys,
// header bytes).
func fillCache(t testing.TB, maxBytes int64, bodySize int, gzip bool) (c *Cache, heap, payload int64) {
	rc := &config.Route{Name: "stock", Cache: config.Cache{Size: 1 << 20, TTL: time.Hour, MaxBytes: maxBytes, StaleIfError: time.Hour}}
	body := []byte(searchAnswer(bodySize))
	if gzip {
		body = gzipped(t, string(body))
	}
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c = newCache(rc, func() time.Time { return now }, nil)
	for i := 0; ; i++ {
		key, _ := cacheKey("stock", pathSearchFiles,
			fmt.Sprintf("search_parameters[words]=cat+%d&search_parameters[limit]=32&search_parameters[offset]=%d&locale=en_US", i, i*32),
			[]string{"en-US,en;q=0.9"}, nil)
		// A header as the transport builds it: fresh strings and slices.
		h := make(http.Header)
		for k, v := range map[string]string{
			"Content-Type":                "application/json; charset=utf-8",
			"Date":                        now.Add(time.Duration(i) * time.Second).UTC().Format(http.TimeFormat),
			"Server":                      "nginx",
			"Vary":                        "Accept-Encoding, Accept-Language",
			"X-Request-Id":                fmt.Sprintf("req-%016d", i),
			"Access-Control-Allow-Origin": "*",
			"Strict-Transport-Security":   "max-age=31536000",
		} {
			h[k] = []string{strings.Clone(v)}
		}
		if gzip {
			h["Content-Encoding"] = []string{strings.Clone("gzip")}
		}
		e := c.newEntry(key, &fetched{status: 200, header: h, body: body}, now)
		if e == nil {
			t.Fatal("entry refused")
		}
		c.add(e, c.generation())
		if i > 0 && int64(i) > 2*maxBytes/int64(len(body)) {
			break // well past full: evictions have been running
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(body) // counted in before: keep it out of the difference
	heap = int64(after.HeapAlloc) - int64(before.HeapAlloc)
	c.mu.Lock()
	for _, e := range c.lru.Values() {
		payload += int64(len(e.body)+len(e.key)) + headerSize(e.header)
	}
	c.mu.Unlock()
	return c, heap, payload
}

// TestCache_MemoryStaysWithinBudget fills caches past their
// CACHE_MAX_BYTES and checks that the heap they hold stays within it.
func TestCache_MemoryStaysWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 16 MiB caches")
	}
	const maxBytes = 16 << 20
	for _, tc := range []struct {
		size int
		gzip bool
	}{{512, false}, {4 << 10, false}, {32 << 10, false}, {200 << 10, false}, {4 << 10, true}, {32 << 10, true}} {
		size := tc.size
		t.Run(fmt.Sprintf("%dB bodies gzip=%v", size, tc.gzip), func(t *testing.T) {
			c, heap, payload := fillCache(t, maxBytes, size, tc.gzip)
			n := int64(c.Len())
			t.Logf("%d entries, accounted %d bytes of %d; heap %d bytes (%.3f of the budget); payload %d; overhead %d bytes an entry",
				n, c.Bytes(), maxBytes, heap, float64(heap)/maxBytes, payload, (heap-payload)/n)
			if c.Bytes() > maxBytes {
				t.Errorf("accounted %d bytes, over the budget of %d", c.Bytes(), maxBytes)
			}
			// The small slack: the LRU's map grows by doubling, and the
			// runtime's size classes round some allocations up.
			if limit := int64(maxBytes) + maxBytes/50; heap > limit {
				t.Errorf("a full cache holds %d heap bytes, over the budget %d + 2%%", heap, maxBytes)
			}
			runtime.KeepAlive(c)
		})
	}
}

// BenchmarkCacheMemory reports the heap a full 16 MiB cache holds and
// its overhead per entry beyond bodies, keys and headers.
func BenchmarkCacheMemory(b *testing.B) {
	for _, size := range []int{512, 4 << 10, 32 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			for b.Loop() {
				c, heap, payload := fillCache(b, 16<<20, size, false)
				b.ReportMetric(float64(heap)/(16<<20), "heap/budget")
				b.ReportMetric(float64(heap-payload)/float64(c.Len()), "overhead-B/entry")
				b.ReportMetric(float64(c.Len()), "entries")
			}
		})
	}
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
		return httptest.NewRequest(http.MethodGet, "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat", nil)
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
