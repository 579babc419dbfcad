package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// waiting is how many callers wait on fetches led by others.
func (fs *flights) waiting() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, f := range fs.calls {
		n += f.waiters
	}
	return n
}

// waitFor polls cond (a state the code under test reaches on its own)
// for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gate is an upstream search that holds every answer until released.
type gate struct {
	arrived chan struct{} // one send per request that reached the upstream
	release chan struct{}
	once    sync.Once
	test    context.Context // ends before the cleanups close the servers
	// cancelled counts requests whose context had ended by their answer.
	cancelled atomic.Int64
}

func newGate(t *testing.T) *gate {
	return &gate{arrived: make(chan struct{}, 64), release: make(chan struct{}), test: t.Context()}
}

// open lets every held answer go (the end of the test does too).
func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) handler(w http.ResponseWriter, r *http.Request, _ []byte) {
	g.arrived <- struct{}{}
	select {
	case <-g.release:
	case <-g.test.Done():
	}
	if r.Context().Err() != nil {
		g.cancelled.Add(1)
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"files":[]}`)
}

type result struct {
	status int
	xcache string
	body   string
	err    error
}

// goGet sends a GET in the background; the answer arrives on the channel.
func (f *cacheFixture) goGet(ctx context.Context, target string, header ...string) <-chan result {
	out := make(chan result, 1)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.front.URL+target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	go func() {
		resp, err := f.client.Do(req)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- result{resp.StatusCode, resp.Header.Get("X-Cache"), string(b), err}
	}()
	return out
}

func TestCache_ConcurrentIdenticalMissesMakeOneUpstreamRequest(t *testing.T) {
	g := newGate(t)
	f := newCacheFixture(t, g.handler, nil)
	leader := f.goGet(context.Background(), searchPath)
	<-g.arrived
	const followers = 8
	var answers []<-chan result
	for range followers {
		answers = append(answers, f.goGet(context.Background(), searchPath))
	}
	waitFor(t, "the followers to join the fetch", func() bool { return f.route.cache.flights.waiting() == followers })
	g.open()
	for i, ch := range append(answers, leader) {
		if r := <-ch; r.err != nil || r.status != 200 || r.body != `{"files":[]}` || r.xcache != "MISS" {
			t.Errorf("caller %d: %+v", i, r)
		}
	}
	f.wantUpstreamCalls(1)
	if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("afterwards: X-Cache = %q", resp.Header.Get("X-Cache"))
	}
}

func TestCache_CallerThatLeavesDoesNotCancelTheSharedFetch(t *testing.T) {
	g := newGate(t)
	f := newCacheFixture(t, g.handler, nil)
	// Learn when the proxy has seen the leader go away.
	leaderGone := make(chan struct{})
	f.front.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Leader") != "" {
			context.AfterFunc(r.Context(), func() { close(leaderGone) })
		}
		f.route.ServeHTTP(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	leader := f.goGet(ctx, searchPath, "X-Test-Leader", "1")
	<-g.arrived
	follower := f.goGet(context.Background(), searchPath)
	waitFor(t, "the follower to join the fetch", func() bool { return f.route.cache.flights.waiting() == 1 })
	cancel()
	if r := <-leader; r.err == nil {
		t.Fatalf("the leader's request was not cancelled: %+v", r)
	}
	<-leaderGone
	g.open()
	if r := <-follower; r.err != nil || r.status != 200 || r.body != `{"files":[]}` {
		t.Fatalf("follower: %+v", r)
	}
	if n := g.cancelled.Load(); n != 0 {
		t.Errorf("the upstream request was cancelled")
	}
	f.wantUpstreamCalls(1)
	if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("the shared answer was not stored: X-Cache = %q", resp.Header.Get("X-Cache"))
	}
}

// failingSearch answers searches normally until fail holds a failure.
type failingSearch struct {
	fail atomic.Int64 // status to answer; 0 = normal
	next func(w http.ResponseWriter, r *http.Request, body []byte)
}

func (s *failingSearch) handler(w http.ResponseWriter, r *http.Request, body []byte) {
	if st := int(s.fail.Load()); st != 0 {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(st)
		io.WriteString(w, `{"code":"gateway"}`)
		return
	}
	s.next(w, r, body)
}

func TestCache_StaleIfError(t *testing.T) {
	cases := []struct {
		name       string
		fail       func(f *cacheFixture, s *failingSearch)
		errStatus  int
		proxyError string // X-Imsproxy-Error without a stale entry
	}{
		{"503", func(_ *cacheFixture, s *failingSearch) { s.fail.Store(503) }, 503, ""},
		{"500", func(_ *cacheFixture, s *failingSearch) { s.fail.Store(500) }, 500, ""},
		{"429", func(_ *cacheFixture, s *failingSearch) { s.fail.Store(429) }, 429, ""},
		{"unreachable", func(f *cacheFixture, _ *failingSearch) { f.upstream.Close() }, 502, CodeUpstreamUnreachable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &failingSearch{next: numberedSearch()}
			f := newCacheFixture(t, s.handler, nil)
			_, warm := f.get(searchPath)
			c.fail(f, s)
			f.clock.Advance(time.Minute + 10*time.Minute) // past the TTL, inside the hour of stale-if-error
			resp, body := f.get(searchPath)
			if resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "STALE" || body != warm || resp.Header.Get("Age") != "660" {
				t.Fatalf("got %d X-Cache=%q Age=%q %q, want the stale answer %q", resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("Age"), body, warm)
			}
			// A search never stored, and a caller who insists on a fresh
			// answer, get the failure as it is.
			for _, h := range [][]string{{"X-Product", "never-stored"}, {"Cache-Control", "no-cache"}} {
				resp, _ := f.get(searchPath, h...)
				if resp.StatusCode != c.errStatus || resp.Header.Get(ErrorHeader) != c.proxyError || resp.Header.Get("X-Cache") != "MISS" {
					t.Errorf("%v: %d %s=%q X-Cache=%q, want %d %q MISS", h, resp.StatusCode, ErrorHeader, resp.Header.Get(ErrorHeader),
						resp.Header.Get("X-Cache"), c.errStatus, c.proxyError)
				}
			}
			// Past TTL + CACHE_STALE_IF_ERROR the failure passes too.
			f.clock.Advance(time.Hour)
			if resp, _ := f.get(searchPath); resp.StatusCode != c.errStatus || resp.Header.Get("X-Cache") != "MISS" {
				t.Errorf("after the window: %d X-Cache=%q, want %d MISS", resp.StatusCode, resp.Header.Get("X-Cache"), c.errStatus)
			}
			if f.route.cache.Len() != 0 {
				t.Errorf("a dead entry is kept")
			}
		})
	}
}

func TestCache_StaleIfErrorZeroDisables(t *testing.T) {
	s := &failingSearch{next: numberedSearch()}
	f := newCacheFixture(t, s.handler, func(rc *config.Route) { rc.Cache.StaleIfError = 0 })
	f.get(searchPath)
	s.fail.Store(503)
	f.clock.Advance(time.Minute)
	if resp, _ := f.get(searchPath); resp.StatusCode != 503 || resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("got %d X-Cache=%q, want the 503", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
}

func TestCache_StaleIfErrorWhenUpstreamTimesOut(t *testing.T) {
	g := newGate(t)
	var slow atomic.Bool
	f := newCacheFixture(t, func(w http.ResponseWriter, r *http.Request, b []byte) {
		if slow.Load() {
			g.handler(w, r, b)
			return
		}
		io.WriteString(w, `{"files":[1]}`)
	}, func(rc *config.Route) { rc.Timeout = 200 * time.Millisecond })
	f.get(searchPath)
	slow.Store(true)
	f.clock.Advance(2 * time.Minute)
	if resp, body := f.get(searchPath); resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "STALE" || body != `{"files":[1]}` {
		t.Fatalf("got %d X-Cache=%q %q, want the stale answer", resp.StatusCode, resp.Header.Get("X-Cache"), body)
	}
}

func TestCache_SuccessfulLicenceEmptiesTheCache(t *testing.T) {
	var licence atomic.Value // "<status> <purchase state>"
	search := numberedSearch()
	f := newCacheFixture(t, func(w http.ResponseWriter, r *http.Request, b []byte) {
		switch {
		case classifyStock(r.URL.Path) == pathLicence:
			var status int
			var state string
			fmt.Sscan(licence.Load().(string), &status, &state)
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"contents":{"1":{"purchase_details":{"state":%q}}}}`, state)
		case r.URL.Query().Get("search_parameters[media_id]") != "":
			io.WriteString(w, `{"nb_results":1,"files":[{"id":1,"is_editorial":false}]}`) // the editorial check
		default:
			search(w, r, b)
		}
	}, func(rc *config.Route) { rc.AllowLicense = true })
	steps := []struct {
		licence string
		status  int
		want    string // X-Cache of the search after the licence
	}{
		{"403 -", 403, "HIT"},
		{"400 -", 400, "HIT"},
		{"200 purchased", 200, "HIT"}, // already held: is_licensed did not change
		{"200 just_purchased", 200, "MISS"},
	}
	f.get(searchPath)
	for _, s := range steps {
		licence.Store(s.licence)
		resp, _ := f.do("GET", "/Rest/Libraries/1/Content/License?content_id=1&license=Standard")
		if resp.StatusCode != s.status {
			t.Fatalf("licence %s answered %d", s.licence, resp.StatusCode)
		}
		if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != s.want {
			t.Errorf("search after a licence answered %s: X-Cache = %q, want %s", s.licence, resp.Header.Get("X-Cache"), s.want)
		}
	}
}

func TestCache_PurgeDuringAFetchKeepsItsAnswerOut(t *testing.T) {
	g := newGate(t)
	f := newCacheFixture(t, g.handler, nil)
	answer := f.goGet(context.Background(), searchPath)
	<-g.arrived
	f.route.PurgeCache("test") // e.g. a licence that went through meanwhile
	g.open()
	if r := <-answer; r.status != 200 || r.xcache != "MISS" {
		t.Fatalf("in-flight search: %+v", r)
	}
	if f.route.cache.Len() != 0 {
		t.Fatal("an answer fetched before the purge was stored")
	}
	go func() { <-g.arrived }()
	if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("next search: X-Cache = %q, want MISS", resp.Header.Get("X-Cache"))
	}
}

func TestServer_CachePurgeEndpoint(t *testing.T) {
	stock := newCacheFixture(t, nil, nil)
	aem := newCacheFixture(t, nil, func(rc *config.Route) { rc.Name, rc.Type = "aem", config.TypeAEM })
	var logs syncBuffer
	s := &Server{metrics: NewMetrics(), routes: []*Route{stock.route, aem.route},
		log: slog.New(slog.NewJSONHandler(&logs, nil))}
	admin := httptest.NewServer(s.adminHandler())
	t.Cleanup(admin.Close)

	stock.get(searchPath)
	stock.get(searchPath + "&page=2")
	cases := []struct {
		method, query string
		status        int
		code          string // X-Imsproxy-Error, "" on success
		purged        float64
	}{
		{"GET", "route=stock", 405, "method_not_allowed", 0},
		{"POST", "route=stock", 200, "", 2},
		{"POST", "route=stock", 200, "", 0},
		{"POST", "route=nope", 404, "unknown_route", 0},
		{"POST", "route=aem", 404, "no_cache", 0},
		{"POST", "", 400, "bad_request", 0},
	}
	for _, c := range cases {
		logged := len(logLines(t, logs.String()))
		req, _ := http.NewRequest(c.method, admin.URL+"/cache/purge?"+c.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.status || resp.Header.Get(ErrorHeader) != c.code ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q %v, want %d %q JSON", c.method, c.query, resp.StatusCode, resp.Header.Get(ErrorHeader), err, c.status, c.code)
			continue
		}
		if c.code == "" && body["purged"] != c.purged {
			t.Errorf("%s %s: body %v, want purged %v", c.method, c.query, body, c.purged)
		}
		if c.status == 405 && resp.Header.Get("Allow") != "POST" {
			t.Errorf("405 without Allow: POST")
		}
		// One line per error, none for a purge (the route logs that), never the query.
		lines := logLines(t, logs.String())[logged:]
		var errorLines int
		for _, l := range lines {
			if l["code"] != nil {
				errorLines++
				if l["code"] != c.code || l["path"] != "/cache/purge" || l["status"] != float64(c.status) {
					t.Errorf("%s %s: error line %v", c.method, c.query, l)
				}
			}
		}
		if want := min(len(c.code), 1); errorLines != want {
			t.Errorf("%s %s: %d error lines, want %d: %v", c.method, c.query, errorLines, want, lines)
		}
	}
	if strings.Contains(logs.String(), "nope") {
		t.Errorf("the query reached the log: %s", logs.String())
	}
	if resp, _ := stock.get(searchPath); resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("after the purge: X-Cache = %q", resp.Header.Get("X-Cache"))
	}
}

// TestCache_RaceFreeUnderLoad runs hits, misses, refreshes and purges at
// once; run with -race.
func TestCache_RaceFreeUnderLoad(t *testing.T) {
	f := newCacheFixture(t, nil, func(rc *config.Route) { rc.Cache.Size = 4 })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				target := searchPath + "&page=" + string(rune('0'+i%6))
				switch {
				case w == 0 && i%10 == 0:
					f.route.PurgeCache("test")
				case w == 1:
					f.get(target, "Cache-Control", "no-cache")
				default:
					if resp, _ := f.get(target); resp.StatusCode != 200 {
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			}
		})
	}
	wg.Wait()
	if n, b := f.route.cache.Len(), f.route.cache.Bytes(); n > 4 || (n == 0) != (b == 0) {
		t.Errorf("%d entries, %d bytes", n, b)
	}
}
