package cache

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// cacheFixture is a stock route with a search cache in front of an
// upstream the test controls.
type cacheFixture struct {
	t        *testing.T
	up       *testutil.Upstream
	upstream *httptest.Server
	front    *httptest.Server
	rc       *config.Route
	cache    *Cache
	handler  http.Handler
	metrics  *metrics.Metrics
	clock    *testutil.Clock
	client   *http.Client
}

// numberedSearch answers every request 200 with a JSON body naming its
// sequence number, so a test tells a cached answer from a fresh one.
func numberedSearch() func(w http.ResponseWriter, r *http.Request, body []byte) {
	var n atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"answer":%d,"query":%q}`, n.Add(1), r.URL.RawQuery)
	}
}

func newCacheFixture(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, body []byte), mutate func(*config.Route)) *cacheFixture {
	t.Helper()
	if handler == nil {
		handler = numberedSearch()
	}
	f := &cacheFixture{t: t, up: &testutil.Upstream{Handler: handler}, metrics: metrics.New(),
		clock: testutil.NewClock(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))}
	f.upstream = httptest.NewServer(f.up)
	t.Cleanup(f.upstream.Close)
	rc := testroute.Stock(t, f.upstream.URL)
	rc.Cache = config.Cache{Size: 16, TTL: time.Minute, MaxBytes: 8 << 20, StaleIfError: time.Hour}
	if mutate != nil {
		mutate(rc)
	}
	f.rc = rc
	f.cache = New(rc, f.clock.Now, nil, f.metrics)
	// The stage in front of a plain reverse proxy, inside the route skeleton
	// that gives it its route's configuration.
	forward := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(rc.Upstream)
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
		},
		Transport:    &http.Transport{ResponseHeaderTimeout: rc.Timeout, DisableCompression: true},
		ErrorHandler: route.UpstreamError,
	}
	f.handler = route.New(rc, nil, f.metrics.Requests(rc.Name).Count, f.cache.Handler(forward))
	f.front = httptest.NewServer(f.handler)
	t.Cleanup(f.front.Close)
	// No transparent gzip: the tests say exactly what Accept-Encoding is sent.
	f.client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

// do sends a request and returns the answer with its body read.
func (f *cacheFixture) do(method, target string, header ...string) (*http.Response, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.front.URL+target, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, string(body)
}

func (f *cacheFixture) get(target string, header ...string) (*http.Response, string) {
	f.t.Helper()
	return f.do(http.MethodGet, target, header...)
}

// upstreamCalls is how many requests reached the upstream.
func (f *cacheFixture) upstreamCalls() int { return len(f.up.All()) }

func (f *cacheFixture) wantUpstreamCalls(want int) {
	f.t.Helper()
	if got := f.upstreamCalls(); got != want {
		f.t.Fatalf("upstream saw %d requests, want %d", got, want)
	}
}

// metric reads a per-route counter or gauge.
func (f *cacheFixture) metric(name string) float64 {
	f.t.Helper()
	return testutil.Samples(f.t, f.metrics.Handler(), name)[f.rc.Name]
}

const searchPath = "/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=3"

func TestCache_RepeatedSearchIsServedFromCache(t *testing.T) {
	f := newCacheFixture(t, nil, nil)
	first, body1 := f.get(searchPath)
	if first.StatusCode != 200 || first.Header.Get("X-Cache") != "MISS" || first.Header.Get("Age") != "" {
		t.Fatalf("first: %d X-Cache=%q Age=%q", first.StatusCode, first.Header.Get("X-Cache"), first.Header.Get("Age"))
	}
	f.clock.Advance(42 * time.Second)
	second, body2 := f.get(searchPath, "X-Request-Id", "second-call")
	if second.StatusCode != 200 || second.Header.Get("X-Cache") != "HIT" || second.Header.Get("Age") != "42" {
		t.Fatalf("second: %d X-Cache=%q Age=%q", second.StatusCode, second.Header.Get("X-Cache"), second.Header.Get("Age"))
	}
	if body2 != body1 || second.Header.Get("Content-Type") != "application/json" ||
		second.ContentLength != int64(len(body1)) {
		t.Fatalf("hit = %q (%s, length %d), want %q as first served", body2, second.Header.Get("Content-Type"), second.ContentLength, body1)
	}
	if got := second.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "second-call" {
		t.Errorf("hit X-Request-Id = %q, want the caller's own", got)
	}
	f.wantUpstreamCalls(1)
	if f.metric("imsproxy_cache_hits_total") != 1 || f.metric("imsproxy_cache_misses_total") != 1 {
		t.Errorf("hits %v misses %v, want 1 and 1", f.metric("imsproxy_cache_hits_total"), f.metric("imsproxy_cache_misses_total"))
	}
	if f.metric("imsproxy_cache_entries") != 1 || f.metric("imsproxy_cache_bytes") < float64(len(body1)) {
		t.Errorf("entries %v bytes %v", f.metric("imsproxy_cache_entries"), f.metric("imsproxy_cache_bytes"))
	}
}

func TestCache_ParameterOrderAndEscapingShareAnEntry(t *testing.T) {
	f := newCacheFixture(t, nil, nil)
	f.get("/Rest/Media/1/Search/Files?search_parameters[words]=cat&result_columns[]=id&result_columns[]=title")
	for _, q := range []string{
		"result_columns[]=id&search_parameters[words]=cat&result_columns[]=title",
		"result_columns%5B%5D=id&result_columns%5B%5D=title&search_parameters%5Bwords%5D=cat",
	} {
		if resp, _ := f.get("/Rest/Media/1/Search/Files?" + q); resp.Header.Get("X-Cache") != "HIT" {
			t.Errorf("%s: X-Cache = %q, want HIT", q, resp.Header.Get("X-Cache"))
		}
	}
	f.wantUpstreamCalls(1)
	// The order of a repeated parameter's values is the caller's meaning.
	if resp, _ := f.get("/Rest/Media/1/Search/Files?search_parameters[words]=cat&result_columns[]=title&result_columns[]=id"); resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("values in another order: X-Cache = %q, want MISS", resp.Header.Get("X-Cache"))
	}
}

func TestCache_KeyHoldsLanguageAndCallersProduct(t *testing.T) {
	f := newCacheFixture(t, nil, nil)
	f.get(searchPath, "Accept-Language", "fr-FR")
	steps := []struct {
		header []string
		want   string
	}{
		{[]string{"Accept-Language", "fr-FR"}, "HIT"},
		{[]string{"Accept-Language", "de-DE"}, "MISS"},
		{nil, "MISS"},
		{[]string{"Accept-Language", "fr-FR", "X-Product", "LegacyApp/2"}, "MISS"},
		{[]string{"Accept-Language", "fr-FR", "X-Product", "LegacyApp/2"}, "HIT"},
	}
	for i, s := range steps {
		if resp, _ := f.get(searchPath, s.header...); resp.Header.Get("X-Cache") != s.want {
			t.Errorf("step %d %v: X-Cache = %q, want %s", i, s.header, resp.Header.Get("X-Cache"), s.want)
		}
	}
}

func TestCache_StoresOnlyWholeCacheableAnswers(t *testing.T) {
	big := strings.Repeat("x", maxCachedBody+1)
	cases := []struct {
		name   string
		answer func(w http.ResponseWriter)
		status int
	}{
		{"404", func(w http.ResponseWriter) { http.Error(w, "no such thing", 404) }, 404},
		{"400 from Stock", func(w http.ResponseWriter) { w.WriteHeader(400); io.WriteString(w, `{"code":"10"}`) }, 400},
		{"no-store", func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "private, no-store")
			io.WriteString(w, "{}")
		}, 200},
		{"over 1 MiB, length known", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		}, 200},
		{"over 1 MiB, chunked", func(w http.ResponseWriter) {
			for i := 0; i < len(big); i += 64 << 10 {
				io.WriteString(w, big[i:min(i+64<<10, len(big))])
				w.(http.Flusher).Flush()
			}
		}, 200},
		{"brotli", func(w http.ResponseWriter) {
			w.Header().Set("Content-Encoding", "br")
			io.WriteString(w, "\x0b\x02\x80{}\x03")
		}, 200},
		{"corrupt gzip", func(w http.ResponseWriter) { w.Header().Set("Content-Encoding", "gzip"); io.WriteString(w, "not gzip") }, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var sent atomic.Pointer[string]
			f := newCacheFixture(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				rec := httptest.NewRecorder()
				c.answer(rec)
				s := rec.Body.String()
				sent.Store(&s)
				c.answer(w)
			}, nil)
			for range 2 {
				resp, body := f.get(searchPath, "Accept-Encoding", "gzip, br")
				if resp.StatusCode != c.status || body != *sent.Load() || resp.Header.Get("X-Cache") != "MISS" {
					t.Fatalf("answer %d X-Cache=%q body of %d bytes, want %d MISS and the upstream's %d bytes unchanged",
						resp.StatusCode, resp.Header.Get("X-Cache"), len(body), c.status, len(*sent.Load()))
				}
			}
			f.wantUpstreamCalls(2)
			if n := f.cache.Len(); n != 0 {
				t.Errorf("%d entries stored", n)
			}
		})
	}
}

func TestCache_ExpiresAfterTTL(t *testing.T) {
	f := newCacheFixture(t, nil, nil)
	_, first := f.get(searchPath)
	f.clock.Advance(time.Minute - time.Second)
	if resp, body := f.get(searchPath); resp.Header.Get("X-Cache") != "HIT" || body != first {
		t.Fatalf("within TTL: X-Cache=%q", resp.Header.Get("X-Cache"))
	}
	f.clock.Advance(time.Second)
	resp, body := f.get(searchPath)
	if resp.Header.Get("X-Cache") != "MISS" || body == first {
		t.Fatalf("at TTL: X-Cache=%q body %q, want a fresh answer", resp.Header.Get("X-Cache"), body)
	}
	if resp, again := f.get(searchPath); resp.Header.Get("X-Cache") != "HIT" || again != body {
		t.Fatalf("after the refresh: X-Cache=%q, want HIT with the new answer", resp.Header.Get("X-Cache"))
	}
	f.wantUpstreamCalls(2)
}

func TestCache_CallersNoCacheRefreshesTheEntry(t *testing.T) {
	for _, header := range [][]string{{"Cache-Control", "no-cache"}, {"Cache-Control", "max-age=0, no-cache"}, {"Pragma", "no-cache"}} {
		t.Run(strings.Join(header, ": "), func(t *testing.T) {
			f := newCacheFixture(t, nil, nil)
			_, first := f.get(searchPath)
			resp, refreshed := f.get(searchPath, header...)
			if resp.Header.Get("X-Cache") != "MISS" || refreshed == first {
				t.Fatalf("no-cache: X-Cache=%q body %q, want a fresh answer", resp.Header.Get("X-Cache"), refreshed)
			}
			if resp, body := f.get(searchPath); resp.Header.Get("X-Cache") != "HIT" || body != refreshed {
				t.Fatalf("next: X-Cache=%q body %q, want HIT with the refreshed answer %q", resp.Header.Get("X-Cache"), body, refreshed)
			}
			f.wantUpstreamCalls(2)
		})
	}
}

func TestCache_BoundedByEntries(t *testing.T) {
	f := newCacheFixture(t, nil, func(rc *config.Route) { rc.Cache.Size = 3 })
	for i := range 5 {
		f.get(fmt.Sprintf("/Rest/Media/1/Search/Files?q=%d", i))
	}
	if n := f.cache.Len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	if ev := f.metric("imsproxy_cache_evictions_total"); ev != 2 {
		t.Errorf("evictions = %v, want 2", ev)
	}
	if resp, _ := f.get("/Rest/Media/1/Search/Files?q=0"); resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("least recently used: X-Cache = %q, want MISS (evicted)", resp.Header.Get("X-Cache"))
	}
	if resp, _ := f.get("/Rest/Media/1/Search/Files?q=4"); resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("most recent: X-Cache = %q, want HIT", resp.Header.Get("X-Cache"))
	}
}

func TestCache_BoundedByBytes(t *testing.T) {
	body := strings.Repeat("b", 10_000)
	const maxBytes = 35_000 // three entries of 10 KB and their overhead, not four
	f := newCacheFixture(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { io.WriteString(w, body) },
		func(rc *config.Route) { rc.Cache.MaxBytes = maxBytes })
	for i := range 6 {
		f.get(fmt.Sprintf("/Rest/Media/1/Search/Files?q=%d", i))
		if b := f.cache.Bytes(); b > maxBytes {
			t.Fatalf("after %d searches the cache holds %d bytes, over its %d", i+1, b, maxBytes)
		}
	}
	if n := f.cache.Len(); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
	if f.metric("imsproxy_cache_bytes") != float64(f.cache.Bytes()) || f.metric("imsproxy_cache_entries") != 3 {
		t.Errorf("gauges: %v bytes, %v entries", f.metric("imsproxy_cache_bytes"), f.metric("imsproxy_cache_entries"))
	}
	// An answer bigger than the whole budget is passed on, never stored.
	f2 := newCacheFixture(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { io.WriteString(w, body) },
		func(rc *config.Route) { rc.Cache.MaxBytes = 5_000 })
	f2.get(searchPath)
	if resp, got := f2.get(searchPath); resp.Header.Get("X-Cache") != "MISS" || got != body {
		t.Errorf("too big for the budget: X-Cache=%q", resp.Header.Get("X-Cache"))
	}
}

func gzipped(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = io.WriteString(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCache_GzipBodyOnlyToCallersThatAcceptIt(t *testing.T) {
	const plain = `{"nb_results":2,"files":[{"id":1},{"id":2}]}`
	zipped := gzipped(t, plain)
	// Like Stock's gateway: gzip for callers that accept it.
	f := newCacheFixture(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Vary", "Accept-Encoding")
		if route.AcceptsGzip(r.Header["Accept-Encoding"]) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Etag", `"gz-1"`)
			w.Write(zipped)
			return
		}
		io.WriteString(w, plain)
	}, nil)
	if resp, body := f.get(searchPath, "Accept-Encoding", "gzip, deflate"); resp.Header.Get("X-Cache") != "MISS" || body != string(zipped) {
		t.Fatalf("warming: X-Cache=%q", resp.Header.Get("X-Cache"))
	}
	cases := []struct {
		acceptEncoding string
		wantGzip       bool
	}{
		{"gzip", true},
		{"br, gzip;q=0.5", true},
		{"*", true},
		{"", false},
		{"identity", false},
		{"gzip;q=0, deflate", false},
		{"br", false},
	}
	for _, c := range cases {
		var header []string
		if c.acceptEncoding != "" {
			header = []string{"Accept-Encoding", c.acceptEncoding}
		}
		resp, body := f.get(searchPath, header...)
		if resp.Header.Get("X-Cache") != "HIT" {
			t.Errorf("%q: X-Cache = %q, want HIT", c.acceptEncoding, resp.Header.Get("X-Cache"))
		}
		switch {
		case c.wantGzip && (body != string(zipped) || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Etag") != `"gz-1"`):
			t.Errorf("%q: want the gzip body as stored, got Content-Encoding %q, %d bytes", c.acceptEncoding, resp.Header.Get("Content-Encoding"), len(body))
		case !c.wantGzip && (body != plain || resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != int64(len(plain)) || resp.Header.Get("Etag") != ""):
			t.Errorf("%q: want the decoded body, got Content-Encoding %q, length %d, Etag %q, body %q",
				c.acceptEncoding, resp.Header.Get("Content-Encoding"), resp.ContentLength, resp.Header.Get("Etag"), body)
		}
	}
	f.wantUpstreamCalls(1)
}
