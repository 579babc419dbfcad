package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// The Stock search cache, end to end: the real binary in front of
// the emulator, whose request records show what reached "Adobe".

const cacheSearch = "/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=3&result_columns[]=id&result_columns[]=title"

// searches is how many Search/Files requests reached the emulator.
func searches(a *adobe) int { return a.Stats().Requests["stock.search_files"] }

// metricValue reads one series of the proxy's /metrics (-1 when absent).
func (p *proxyProcess) metricValue(series string) float64 {
	p.t.Helper()
	resp, err := http.Get(p.AdminURL() + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return -1
}

// waitMetric polls /metrics until series reaches want, failing after 20 s.
func (p *proxyProcess) waitMetric(series string, want float64) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.metricValue(series) < want {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not reach %v within 20 s (is %v)", series, want, p.metricValue(series))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startCachedStock runs the emulator and the proxy with one stock route
// (OAuth), env added, and waits until it is ready.
func startCachedStock(t *testing.T, env map[string]string) (*adobe, *proxyProcess, string) {
	t.Helper()
	a := startAdobe(t, fakeadobe.Options{})
	full := a.stockOAuthEnv(a.newCredentials(t, fakeadobe.CredentialOptions{}))
	maps.Copy(full, env)
	p := startProxy(t, full)
	p.waitReady()
	return a, p, p.URL("stock")
}

func TestE2E_CacheAnswersRepeatedSearchesWithOneUpstreamRequest(t *testing.T) {
	a, p, base := startCachedStock(t, nil)

	status, h, warm := httpGet(t, base+cacheSearch)
	if status != 200 || h.Get("X-Cache") != "MISS" || !strings.Contains(string(warm), `"files"`) {
		t.Fatalf("first search: %d X-Cache=%q %s", status, h.Get("X-Cache"), warm)
	}
	same := []string{
		cacheSearch,
		// Another order, and the brackets escaped as the PHP SDK sends them.
		"/Rest/Media/1/Search/Files?result_columns[]=id&search_parameters[limit]=3&result_columns[]=title&search_parameters[words]=cat",
		"/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat&search_parameters%5Blimit%5D=3&result_columns%5B%5D=id&result_columns%5B%5D=title",
	}
	for _, target := range same {
		status, h, body := httpGet(t, base+target)
		if status != 200 || h.Get("X-Cache") != "HIT" || h.Get("Age") == "" || string(body) != string(warm) {
			t.Errorf("%s: %d X-Cache=%q Age=%q, want the first answer as a HIT", target, status, h.Get("X-Cache"), h.Get("Age"))
		}
	}
	if n := searches(a); n != 1 {
		t.Fatalf("the emulator saw %d searches, want 1", n)
	}

	// The order of a repeated parameter's values is the caller's meaning.
	if _, h, _ := httpGet(t, base+"/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=3&result_columns[]=title&result_columns[]=id"); h.Get("X-Cache") != "MISS" {
		t.Errorf("result_columns in another order: X-Cache = %q, want MISS", h.Get("X-Cache"))
	}
	// A caller's no-cache goes to Stock and refreshes the entry.
	if _, h, _ := httpGet(t, base+cacheSearch, "Cache-Control", "no-cache"); h.Get("X-Cache") != "MISS" {
		t.Errorf("no-cache: X-Cache = %q, want MISS", h.Get("X-Cache"))
	}
	if _, h, _ := httpGet(t, base+cacheSearch); h.Get("X-Cache") != "HIT" {
		t.Errorf("after the refresh: X-Cache = %q, want HIT", h.Get("X-Cache"))
	}
	if n := searches(a); n != 3 {
		t.Errorf("the emulator saw %d searches, want 3", n)
	}
	// Licensing and profile answers are never cached.
	for range 2 {
		if _, h, _ := httpGet(t, base+"/Rest/Libraries/1/Member/Profile"); h.Get("X-Cache") != "" {
			t.Errorf("Member/Profile: X-Cache = %q", h.Get("X-Cache"))
		}
	}
	if n := a.Stats().Requests["stock.member_profile"]; n != 2 {
		t.Errorf("the emulator saw %d profile requests, want 2", n)
	}

	for series, want := range map[string]float64{
		`imsproxy_cache_hits_total{route="stock"}`:   4,
		`imsproxy_cache_misses_total{route="stock"}`: 3,
		`imsproxy_cache_entries{route="stock"}`:      2,
	} {
		if got := p.metricValue(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if b := p.metricValue(`imsproxy_cache_bytes{route="stock"}`); b < float64(len(warm)) {
		t.Errorf("imsproxy_cache_bytes = %v, want at least the %d bytes of one answer", b, len(warm))
	}
}

func TestE2E_CacheKeepsSearchUpWhileStockIsDown(t *testing.T) {
	a, _, base := startCachedStock(t, map[string]string{"IMSPROXY_STOCK_CACHE_TTL": "1s"})

	_, _, warm := httpGet(t, base+cacheSearch)
	a.SetStockDown(true)
	// Fresh for a second (HIT), then past its TTL: Stock is asked, fails,
	// and the expired answer is served instead.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, h, body := httpGet(t, base+cacheSearch)
		if status != 200 || string(body) != string(warm) {
			t.Fatalf("during the outage: %d X-Cache=%q %s, want the cached answer", status, h.Get("X-Cache"), body)
		}
		if h.Get("X-Cache") == "STALE" {
			if age, _ := strconv.Atoi(h.Get("Age")); age < 1 {
				t.Errorf("stale answer Age = %q, want at least the TTL", h.Get("Age"))
			}
			break
		}
		if h.Get("X-Cache") != "HIT" || time.Now().After(deadline) {
			t.Fatalf("X-Cache = %q; want HIT, then STALE once the TTL has passed", h.Get("X-Cache"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := a.Stats().Statuses["stock.search_files 503"]; st == 0 {
		t.Error("the emulator answered no search with 503: the outage was not exercised")
	}
	// A search never cached fails as Stock fails.
	if status, h, _ := httpGet(t, base+"/Rest/Media/1/Search/Files?search_parameters[words]=dog"); status != 503 || h.Get("X-Cache") != "MISS" {
		t.Errorf("uncached search during the outage: %d X-Cache=%q, want Stock's 503", status, h.Get("X-Cache"))
	}

	a.SetStockDown(false)
	status, h, _ := httpGet(t, base+cacheSearch)
	if status != 200 || h.Get("X-Cache") != "MISS" {
		t.Errorf("after the outage: %d X-Cache=%q, want a fresh answer (MISS)", status, h.Get("X-Cache"))
	}
}

func TestE2E_CachePurgeOnTheAdminListener(t *testing.T) {
	a, p, base := startCachedStock(t, nil)
	httpGet(t, base+cacheSearch)

	status, _, body := httpDo(t, http.MethodPost, p.AdminURL()+"/cache/purge?route=stock", nil)
	var purged struct {
		Route  string `json:"route"`
		Purged int    `json:"purged"`
	}
	if err := json.Unmarshal(body, &purged); err != nil || status != 200 || purged.Route != "stock" || purged.Purged != 1 {
		t.Fatalf("purge: %d %s", status, body)
	}
	if _, h, _ := httpGet(t, base+cacheSearch); h.Get("X-Cache") != "MISS" {
		t.Errorf("after the purge: X-Cache = %q, want MISS", h.Get("X-Cache"))
	}
	if n := searches(a); n != 2 {
		t.Errorf("the emulator saw %d searches, want 2", n)
	}
	p.waitLog(`"msg":"search cache purged"`)

	for _, c := range []struct {
		method, query string
		status        int
		code          string
	}{
		{http.MethodGet, "route=stock", 405, "method_not_allowed"},
		{http.MethodPost, "route=aem", 404, "unknown_route"},
	} {
		status, h, body := httpDo(t, c.method, p.AdminURL()+"/cache/purge?"+c.query, nil)
		var e struct{ Error string }
		if json.Unmarshal(body, &e); status != c.status || e.Error != c.code || h.Get("X-Imsproxy-Error") != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.query, status, body, c.status, c.code)
		}
	}
}

func TestE2E_LicenseThroughTheProxyEmptiesTheCache(t *testing.T) {
	a, _, base := startCachedStock(t, map[string]string{"IMSPROXY_STOCK_ALLOW_LICENSE": "true"})
	const search = "/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=1" +
		"&search_parameters[filters][content_type:photo]=1&search_parameters[filters][editorial]=false" +
		"&result_columns[]=id&result_columns[]=is_licensed"
	type answer struct {
		Files []struct {
			ID         int    `json:"id"`
			IsLicensed string `json:"is_licensed"`
		} `json:"files"`
	}
	read := func(wantXCache string) answer {
		t.Helper()
		status, h, body := httpGet(t, base+search)
		var ans answer
		if err := json.Unmarshal(body, &ans); err != nil || status != 200 || len(ans.Files) != 1 || h.Get("X-Cache") != wantXCache {
			t.Fatalf("search: %d X-Cache=%q %s, want 200 %s with one file", status, h.Get("X-Cache"), body, wantXCache)
		}
		return ans
	}
	before := read("MISS")
	if read("HIT").Files[0].IsLicensed != "" {
		t.Fatalf("the asset is licensed already: %+v", before)
	}
	id := strconv.Itoa(before.Files[0].ID)
	if status, _, body := httpGet(t, base+"/Rest/Libraries/1/Content/License?content_id="+id+"&license=Standard"); status != 200 ||
		!strings.Contains(string(body), "just_purchased") {
		t.Fatalf("license: %d %s", status, body)
	}
	if got := read("MISS").Files[0].IsLicensed; got != "Standard" {
		t.Errorf("is_licensed after the license = %q, want Standard", got)
	}
	// Two searches of ours, and the licensing guard's editorial lookup
	// (a Search/Files with media_id) before the license.
	if n := searches(a); n != 3 {
		t.Errorf("the emulator saw %d searches, want 3", n)
	}
}

// searchGate stands between the proxy and the emulator: it forwards every
// request, but holds each Search/Files until released, so that a test
// decides when Stock answers instead of racing a fixed latency.
type searchGate struct {
	URL       string
	arrived   chan struct{} // one send per search that reached it
	release   chan struct{}
	once      sync.Once
	cancelled atomic.Int64 // searches whose request ended before their answer
}

// open lets the held searches, and all later ones, go on to Stock.
func (g *searchGate) open() { g.once.Do(func() { close(g.release) }) }

func startSearchGate(t *testing.T, upstream string) *searchGate {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	g := &searchGate{arrived: make(chan struct{}, 64), release: make(chan struct{})}
	forward := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/Rest/Media/1/Search/Files" {
			g.arrived <- struct{}{}
			select {
			case <-g.release:
			case <-r.Context().Done():
				g.cancelled.Add(1)
				return
			}
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { g.open(); srv.Close() })
	g.URL = srv.URL
	return g
}

func TestE2E_CacheConcurrentSearchesShareOneRequestAndSurviveALeavingCaller(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	gate := startSearchGate(t, a.URL)
	env := a.stockOAuthEnv(a.newCredentials(t, fakeadobe.CredentialOptions{}))
	env["IMSPROXY_STOCK_UPSTREAM"] = gate.URL
	p := startProxy(t, env)
	p.waitReady()
	base := p.URL("stock")

	type result struct {
		status int
		body   string
		err    error
	}
	get := func(ctx context.Context, out chan<- result) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+cacheSearch, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, err = bufio.NewReader(resp.Body).WriteTo(&b)
		out <- result{resp.StatusCode, b.String(), err}
	}
	const misses = `imsproxy_cache_misses_total{route="stock"}`
	// The first caller starts the fetch, which Stock holds, then gives up.
	leaderCtx, cancel := context.WithCancel(context.Background())
	leader := make(chan result, 1)
	go get(leaderCtx, leader)
	select {
	case <-gate.arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the first search did not reach Stock within 20 s")
	}
	const followers = 6
	answers := make(chan result, followers)
	var wg sync.WaitGroup
	for range followers {
		wg.Go(func() { get(context.Background(), answers) })
	}
	p.waitMetric(misses, 1+followers)
	cancel()
	if r := <-leader; r.err == nil {
		t.Fatalf("the first caller's request was not cancelled: %+v", r)
	}
	gate.open() // Stock answers
	wg.Wait()
	close(answers)
	var first string
	for r := range answers {
		if r.err != nil || r.status != 200 || !strings.Contains(r.body, `"files"`) {
			t.Fatalf("follower: %+v", r)
		}
		if first == "" {
			first = r.body
		} else if r.body != first {
			t.Errorf("followers got different answers")
		}
	}
	if n := searches(a); n != 1 {
		t.Errorf("the emulator saw %d searches for %d callers, want 1", n, 1+followers)
	}
	if n := gate.cancelled.Load(); n != 0 {
		t.Errorf("the shared search was cancelled upstream when the first caller left")
	}
	if _, h, _ := httpGet(t, base+cacheSearch); h.Get("X-Cache") != "HIT" {
		t.Errorf("afterwards: X-Cache = %q, want HIT", h.Get("X-Cache"))
	}
}
