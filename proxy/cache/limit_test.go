package cache

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/inflight"
)

// limited is a fixture whose cache holds its answers within l.
func limited(t *testing.T, l *inflight.Limiter, handler func(w http.ResponseWriter, r *http.Request, body []byte), mutate func(*config.Route)) *cacheFixture {
	t.Helper()
	f := newCacheFixture(t, handler, mutate)
	f.cache.SetLimiter(l) // before the first request
	return f
}

// With no memory left for answers on their way into the cache, a search
// is still answered, streamed from the upstream without being stored.
func TestCache_StreamsWithoutStoringWhenMemoryIsFull(t *testing.T) {
	l := inflight.New(64 << 10)
	f := limited(t, l, nil, nil)
	l.Charge(64 << 10) // everything held by others
	for range 2 {
		if resp, body := f.get(searchPath); resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" || !strings.Contains(body, `"answer"`) {
			t.Fatalf("%d X-Cache %q %q", resp.StatusCode, resp.Header.Get("X-Cache"), body)
		}
	}
	f.wantUpstreamCalls(2)
	if f.cache.Len() != 0 {
		t.Fatal("an answer was stored without memory reserved for it")
	}
	l.Release(64 << 10)
	f.get(searchPath)
	if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("X-Cache %q once memory was free, want HIT", resp.Header.Get("X-Cache"))
	}
	if l.Used() != 0 {
		t.Fatalf("%d bytes still counted with nothing being served", l.Used())
	}
}

// blockedWriter is a caller that does not read: its Write blocks until
// the test lets it go.
type blockedWriter struct {
	h       http.Header
	writing chan struct{} // closed on the first Write
	release chan struct{}
	once    sync.Once
}

func (w *blockedWriter) Header() http.Header { return w.h }
func (w *blockedWriter) WriteHeader(int)     {}
func (w *blockedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.writing) })
	<-w.release
	return len(p), nil
}

// An entry the cache evicts while a caller that does not read is being
// written to stays in memory: it is counted toward the Limiter until the
// write ends, so that such callers cannot pin evicted answers without
// bound.
func TestCache_EvictedAnswerStillBeingWrittenStaysCounted(t *testing.T) {
	l := inflight.New(1 << 20)
	f := limited(t, l, nil, nil)
	f.get(searchPath) // stored
	if l.Used() != 0 {
		t.Fatalf("%d bytes counted for an answer the cache alone holds", l.Used())
	}
	w := &blockedWriter{h: http.Header{}, writing: make(chan struct{}), release: make(chan struct{})}
	req := httptest.NewRequest("GET", searchPath, nil)
	done := make(chan struct{})
	go func() { defer close(done); f.handler.ServeHTTP(w, req) }()
	<-w.writing
	if l.Used() != 0 {
		t.Fatalf("%d bytes counted while the cache still holds the answer", l.Used())
	}
	f.cache.Purge(context.Background(), "test")
	if l.Used() <= 0 {
		t.Fatal("an evicted answer still being written is not counted")
	}
	close(w.release)
	<-done
	if l.Used() != 0 {
		t.Fatalf("%d bytes still counted after the write ended", l.Used())
	}
}

// Under concurrent hits, misses, refreshes, purges, shared fetches and
// answers that are not stored, every byte counted is given back.
func TestCache_LimiterBalancesUnderLoad(t *testing.T) {
	l := inflight.New(1 << 20)
	f := limited(t, l, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if strings.Contains(r.URL.RawQuery, "page=5") {
			http.Error(w, strings.Repeat("not found ", 100), http.StatusNotFound) // shared, never stored
			return
		}
		_, _ = w.Write([]byte(`{"files":[` + strings.Repeat(`{"id":1},`, 200) + `{"id":2}]}`))
	}, func(rc *config.Route) { rc.Cache.Size = 3 })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				target := searchPath + "&page=" + string(rune('0'+i%6))
				switch {
				case w == 0 && i%7 == 0:
					f.cache.Purge(context.Background(), "test")
				case w == 1:
					f.get(target, "Cache-Control", "no-cache")
				default:
					f.get(target)
				}
			}
		})
	}
	wg.Wait()
	testutil.WaitFor(t, "every byte to be given back", func() bool { return l.Used() == 0 })
}

// The cache does not make room by evicting an answer still being written
// to a caller unless the Limiter can count it: callers that do not read
// cannot have the cache hand more and more memory over to them.
func TestCache_KeepsAnAnswerBeingWrittenWhenTheLimiterIsFull(t *testing.T) {
	l := inflight.New(1 << 20)
	f := limited(t, l, nil, func(rc *config.Route) { rc.Cache.Size = 1 })
	f.get(searchPath)
	w := &blockedWriter{h: http.Header{}, writing: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() { defer close(done); f.handler.ServeHTTP(w, httptest.NewRequest("GET", searchPath, nil)) }()
	<-w.writing
	l.Charge(1 << 20) // no room left
	other := searchPath + "&page=2"
	for range 2 {
		if resp, _ := f.get(other); resp.StatusCode != 200 || resp.Header.Get("X-Cache") != "MISS" {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("X-Cache"))
		}
	}
	if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("the answer being written was evicted without room to count it (X-Cache %s)", resp.Header.Get("X-Cache"))
	}
	l.Release(1 << 20)
	close(w.release)
	<-done
	f.get(other)
	if resp, _ := f.get(other); resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("once written, the answer makes room again (X-Cache %s)", resp.Header.Get("X-Cache"))
	}
	if l.Used() != 0 {
		t.Fatalf("%d bytes counted", l.Used())
	}
}
