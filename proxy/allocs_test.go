package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// The allocations of a request through the route's handler, pinned so that
// a change that adds some to every request fails here rather than in a
// later load test. A cache hit is measured alone (5 today: the request's
// state and what the writer is handed); an uncached request against a bare
// httputil.ReverseProxy to the same upstream in the same run (its transport
// and the upstream's server allocate the same for both), so that a new Go
// release moves both.
func TestRoute_AllocationsPerRequest(t *testing.T) {
	const runs = 200
	answer := searchAnswer(1 << 10)
	requests := func() func() *http.Request {
		reqs := make([]*http.Request, runs+1) // AllocsPerRun runs once more to warm up
		for i := range reqs {
			reqs[i] = httptest.NewRequest(http.MethodGet, "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat", nil)
			reqs[i].Host = "127.0.0.1:8080"
		}
		i := 0
		return func() *http.Request { i++; return reqs[i-1] }
	}
	allocs := func(h http.Handler) float64 {
		w := &discardWriter{h: make(http.Header)}
		warm := httptest.NewRequest(http.MethodGet, "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat", nil)
		warm.Host = "127.0.0.1:8080"
		h.ServeHTTP(w, warm) // the cache filled, the connection open
		next := requests()
		return testing.AllocsPerRun(runs, func() {
			clear(w.h)
			w.status = 0
			h.ServeHTTP(w, next())
			if w.status != http.StatusOK {
				t.Fatalf("status %d", w.status)
			}
		})
	}

	if hit := allocs(benchSearchRoute(t, answer, true)); hit > 5 {
		t.Errorf("a cache hit allocates %v times, want at most 5", hit)
	}

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	bare := allocs(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("Authorization", "Bearer static-token")
			pr.Out.Header.Set("X-Api-Key", "client-id")
		},
		Transport: transport,
	})
	route := allocs(benchSearchRoute(t, answer, false))
	t.Logf("uncached: %v allocations, a bare ReverseProxy %v", route, bare)
	if route > bare+10 {
		t.Errorf("an uncached request allocates %v times, a bare ReverseProxy %v: want at most 10 more (7 today)", route, bare)
	}
}
