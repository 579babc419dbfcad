package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/tokens"
)

// cacheFixture is a stock route with a search cache in front of an
// upstream the test controls.
type cacheFixture struct {
	t        *testing.T
	up       *testutil.Upstream
	upstream *httptest.Server
	front    *httptest.Server
	rc       *config.Route
	route    *testRoute
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
	mgr := tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{Kind: "oauth"})
	f.route = NewRoute(rc, mgr, RouteOptions{Metrics: f.metrics, Now: f.clock.Now})
	f.front = httptest.NewServer(f.route)
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

// state is the route as the server holds it.
func (f *cacheFixture) state() *routeState {
	return &routeState{cfg: f.rc, handler: f.route, cache: f.route.cache}
}

const searchPath = "/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=3"

func TestCache_OnlySearchGETsAreCached(t *testing.T) {
	// Licensing is allowed, and the editorial check answered, so that the
	// license reaches Stock: it is the cache that must let it through.
	allowLicense := func(rc *config.Route) { rc.AllowLicense = true }
	downloadHere := func(rc *config.Route) { rc.DownloadUpstream = rc.Upstream }
	search := numberedSearch()
	handler := func(w http.ResponseWriter, r *http.Request, b []byte) {
		if r.URL.Query().Get("search_parameters[media_id]") != "" {
			io.WriteString(w, `{"nb_results":1,"files":[{"id":1,"is_editorial":false}]}`)
			return
		}
		search(w, r, b)
	}
	cases := []struct {
		name, method, target string
		header               []string
		xcache               string // on both answers
		mutate               func(*config.Route)
		calls                int // upstream requests for the two
	}{
		// One editorial lookup (then remembered), two licenses.
		{"license", "GET", "/Rest/Libraries/1/Content/License?content_id=1&license=Standard", nil, "", allowLicense, 3},
		{"content info", "GET", "/Rest/Libraries/1/Content/Info?content_id=1", nil, "", nil, 0},
		{"profile", "GET", "/Rest/Libraries/1/Member/Profile", nil, "", nil, 0},
		{"license history", "GET", "/Rest/Libraries/1/Member/LicenseHistory", nil, "", nil, 0},
		{"download", "GET", "/Rest/Libraries/Download/1/1", nil, "", downloadHere, 2},
		{"search with a trailing slash", "GET", "/Rest/Media/1/Search/Files/?a=1", nil, "", nil, 0},
		{"POST search", "POST", "/Rest/Media/1/Search/Files?a=1", nil, "BYPASS", nil, 0},
		{"HEAD search", "HEAD", "/Rest/Media/1/Search/Files?a=1", nil, "BYPASS", nil, 0},
		{"caller's no-store", "GET", "/Rest/Media/1/Search/Files?a=1", []string{"Cache-Control", "no-store"}, "BYPASS", nil, 0},
		{"conditional", "GET", "/Rest/Media/1/Search/Files?a=1", []string{"If-None-Match", `"v1"`}, "BYPASS", nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newCacheFixture(t, handler, c.mutate)
			for range 2 {
				resp, _ := f.do(c.method, c.target, c.header...)
				if got := resp.Header.Get("X-Cache"); got != c.xcache {
					t.Errorf("X-Cache = %q, want %q", got, c.xcache)
				}
			}
			f.wantUpstreamCalls(max(c.calls, 2))
		})
	}
}

func TestCache_OnlyStockRoutesWithASizeHaveOne(t *testing.T) {
	for name, mutate := range map[string]func(*config.Route){
		"aem":          func(rc *config.Route) { rc.Name, rc.Type = "aem", config.TypeAEM },
		"generic":      func(rc *config.Route) { rc.Name, rc.Type = "brandportal", config.TypeGeneric },
		"stock size 0": func(rc *config.Route) { rc.Cache.Size = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			f := newCacheFixture(t, nil, mutate)
			for range 2 {
				if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != "" {
					t.Errorf("X-Cache = %q on a route without a cache", resp.Header.Get("X-Cache"))
				}
			}
			f.wantUpstreamCalls(2)
			if n := f.route.PurgeCache("test"); n != 0 {
				t.Errorf("PurgeCache = %d", n)
			}
		})
	}
}
