package cache

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/route"
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
	testutil.WaitFor(t, "the followers to join the fetch", func() bool { return f.cache.flights.waiting() == followers })
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
		f.handler.ServeHTTP(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	leader := f.goGet(ctx, searchPath, "X-Test-Leader", "1")
	<-g.arrived
	follower := f.goGet(context.Background(), searchPath)
	testutil.WaitFor(t, "the follower to join the fetch", func() bool { return f.cache.flights.waiting() == 1 })
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

// A caller whose lookup missed just before a fetch of the same search
// ended, and which joins no flight since, takes the stored answer rather
// than asking the upstream again: concurrent misses make one request
// however their timing falls.
func TestCache_ACallerThatMissedAsAFetchEndedTakesItsAnswer(t *testing.T) {
	f := newCacheFixture(t, nil, nil)
	_, want := f.get(searchPath) // the fetch that ended
	req := httptest.NewRequest(http.MethodGet, searchPath, nil)
	key, _ := appendSearchKey(nil, f.cache.route, req)
	// The late caller, past its lookup: it reaches the flights with
	// nothing under way.
	s := &stage{c: f.cache, next: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the late caller was sent upstream")
	})}
	res, led := s.sharedFetch(httptest.NewRecorder(), req, string(key))
	if !led || res.entry == nil || string(res.entry.body) != want {
		t.Fatalf("led %v, entry %+v: want the stored answer", led, res.entry)
	}
	res.release()
	f.wantUpstreamCalls(1)
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
		{"unreachable", func(f *cacheFixture, _ *failingSearch) { f.upstream.Close() }, 502, route.CodeUpstreamUnreachable},
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
				if resp.StatusCode != c.errStatus || resp.Header.Get(route.ErrorHeader) != c.proxyError || resp.Header.Get("X-Cache") != "MISS" {
					t.Errorf("%v: %d %s=%q X-Cache=%q, want %d %q MISS", h, resp.StatusCode, route.ErrorHeader, resp.Header.Get(route.ErrorHeader),
						resp.Header.Get("X-Cache"), c.errStatus, c.proxyError)
				}
			}
			// Past TTL + CACHE_STALE_IF_ERROR the failure passes too.
			f.clock.Advance(time.Hour)
			if resp, _ := f.get(searchPath); resp.StatusCode != c.errStatus || resp.Header.Get("X-Cache") != "MISS" {
				t.Errorf("after the window: %d X-Cache=%q, want %d MISS", resp.StatusCode, resp.Header.Get("X-Cache"), c.errStatus)
			}
			if f.cache.Len() != 0 {
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

func TestCache_PurgeDuringAFetchKeepsItsAnswerOut(t *testing.T) {
	g := newGate(t)
	f := newCacheFixture(t, g.handler, nil)
	answer := f.goGet(context.Background(), searchPath)
	<-g.arrived
	f.cache.Purge(context.Background(), "test") // e.g. a license that went through meanwhile
	g.open()
	if r := <-answer; r.status != 200 || r.xcache != "MISS" {
		t.Fatalf("in-flight search: %+v", r)
	}
	if f.cache.Len() != 0 {
		t.Fatal("an answer fetched before the purge was stored")
	}
	go func() { <-g.arrived }()
	if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("next search: X-Cache = %q, want MISS", resp.Header.Get("X-Cache"))
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
					f.cache.Purge(context.Background(), "test")
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
	if n, b := f.cache.Len(), f.cache.Bytes(); n > 4 || (n == 0) != (b == 0) {
		t.Errorf("%d entries, %d bytes", n, b)
	}
}
