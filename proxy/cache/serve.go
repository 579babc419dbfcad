package cache

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imsproxy/imsproxy/proxy/route"
)

// fetchBodyTime is how long a shared fetch may run beyond TIMEOUT (the
// upstream's response-header timeout) to read its body. The fetch belongs
// to no single caller, so this deadline of its own is what bounds it.
const fetchBodyTime = 30 * time.Second

// Handler returns the cache stage in front of next: searches are answered
// from the cache or fetched once for everyone asking; anything else goes
// to next.
func (c *Cache) Handler(next http.Handler) http.Handler {
	return &stage{c: c, next: next}
}

var _ http.Handler = (*stage)(nil)

type stage struct {
	c    *Cache
	next http.Handler
}

func (s *stage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if cacheablePath(r.URL.Path) {
		s.serveSearch(w, r)
		return
	}
	s.next.ServeHTTP(w, r)
}

// serveSearch answers a request to a cacheable path.
func (s *stage) serveSearch(w http.ResponseWriter, r *http.Request) {
	c := s.c
	var buf [512]byte // a search's key fits: a hit allocates no key
	kb, ok := appendSearchKey(buf[:0], c.route, r)
	if !ok {
		w.Header()["X-Cache"] = xCacheBypass
		s.next.ServeHTTP(w, r)
		return
	}
	refresh := wantsRefresh(r.Header)
	if !refresh {
		if e := c.fresh(kb); e != nil {
			c.count(true)
			c.write(w, r, e, xCacheHit)
			return
		}
	}
	key := string(kb)
	c.count(false)
	var f *fetched
	led := true
	if refresh {
		// A refresh does not join a fetch that began before it asked.
		f = s.fetch(w, r, key)
	} else if f, led = s.sharedFetch(w, r, key); f == nil {
		w.WriteHeader(route.StatusClientClosed) // went away while waiting
		return
	}
	switch {
	case f.entry != nil:
		c.write(w, r, f.entry, xCacheMiss)
	case f.spilled && led:
		// Too big to keep: already streamed to this caller.
	case (f.aborted || f.failed()) && !refresh && c.serveStale(w, r, key):
	case f.aborted || f.spilled:
		// No answer to share: this caller's own request, not cached.
		w.Header()["X-Cache"] = xCacheMiss
		s.next.ServeHTTP(w, r)
	default:
		f.writeTo(w)
	}
}

// serveStale answers with an expired entry still inside the stale-if-error
// window, if there is one.
func (c *Cache) serveStale(w http.ResponseWriter, r *http.Request, key string) bool {
	e := c.staleEntry(key)
	if e == nil {
		return false
	}
	c.count(true)
	c.write(w, r, e, xCacheStale)
	return true
}

func (c *Cache) count(hit bool) {
	switch {
	case c.counts == nil:
	case hit:
		c.counts.Hits.Inc()
	default:
		c.counts.Misses.Inc()
	}
}

// sharedFetch joins the fetch of key already under way, or leads a new
// one. It returns nil when the caller went away while waiting.
func (s *stage) sharedFetch(w http.ResponseWriter, r *http.Request, key string) (f *fetched, led bool) {
	// A shared answer that is not stored is handed over as it came, so
	// only callers that accept the same encodings share one.
	fk := key + "\x00" + strings.Join(r.Header["Accept-Encoding"], ",")
	call, lead := s.c.flights.join(fk)
	if !lead {
		select {
		case <-call.done:
			return call.res, false
		case <-r.Context().Done():
			return nil, false
		}
	}
	f = &fetched{aborted: true} // what the waiters get if fetch panics
	defer func() { s.c.flights.finish(fk, call, f) }()
	f = s.fetch(w, r, key)
	return f, true
}

// fetched is the answer of one fetch.
type fetched struct {
	status  int
	header  http.Header
	body    []byte
	entry   *entry // the answer as stored; nil when it may not be
	spilled bool   // over 1 MiB: streamed to the leader's caller alone
	aborted bool   // no whole answer: the upstream broke off or the fetch ran out of time
}

// failed: an answer stale-if-error replaces, including the
// proxy's own 502, 503 and 504.
func (f *fetched) failed() bool {
	return f.status == http.StatusTooManyRequests || f.status >= 500
}

// writeTo replays an answer that was not stored.
func (f *fetched) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range f.header {
		if k != route.RequestIDHeader {
			h[k] = v
		}
	}
	h["X-Cache"] = xCacheMiss
	w.WriteHeader(f.status)
	_, _ = w.Write(f.body)
}

// fetch forwards r (credentials, token refresh and all) in a context of
// its own, so that the caller who started it may go away without
// cancelling it for the others, and stores the answer when it may.
func (s *stage) fetch(w http.ResponseWriter, r *http.Request, key string) (f *fetched) {
	c := s.c
	gen := c.generation()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), route.Config(r).Timeout+fetchBodyTime)
	defer cancel()
	capt := &capture{header: make(http.Header), leader: w}
	f = &fetched{aborted: true}
	defer func() {
		// The reverse proxy aborts with ErrAbortHandler when the upstream
		// breaks off mid-body. Until part of the answer went to the
		// leader's caller, that only means there is no answer to share.
		if v := recover(); v != nil && (v != http.ErrAbortHandler || capt.spilled) {
			panic(v)
		}
	}()
	s.next.ServeHTTP(capt, r.WithContext(ctx))
	status := capt.status
	if status == 0 {
		status = http.StatusOK // nothing written: an empty 200
	}
	*f = fetched{status: status, header: capt.header, body: capt.body, spilled: capt.spilled,
		// the fetch's own deadline passed before an answer came
		aborted: status == route.StatusClientClosed}
	if e := c.newEntry(key, f, c.now()); e != nil {
		c.add(e, gen) // not kept if purged meanwhile, but served to those waiting
		f.entry = e
	}
	return f
}

// capture is the ResponseWriter a fetch writes into: it keeps the answer
// so that every caller waiting for it can be served. Once the body grows
// past what may be stored, it hands over to the leader's own writer and
// streams the rest there; the other callers then forward on their own.
type capture struct {
	header  http.Header
	status  int
	body    []byte
	leader  http.ResponseWriter
	spilled bool
}

func (c *capture) Header() http.Header {
	if c.spilled {
		return c.leader.Header() // trailers
	}
	return c.header
}

func (c *capture) WriteHeader(code int) {
	if code < 200 || c.status != 0 {
		return // 1xx answers are not the answer
	}
	c.status = code
	if n, err := strconv.ParseInt(c.header.Get("Content-Length"), 10, 64); err == nil {
		if n > maxCachedBody {
			c.spill()
		} else {
			c.body = make([]byte, 0, n)
		}
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if !c.spilled && len(c.body)+len(p) > maxCachedBody {
		c.spill()
	}
	if c.spilled {
		return c.leader.Write(p)
	}
	c.body = append(c.body, p...)
	return len(p), nil
}

// Flush is called by the reverse proxy for answers of unknown length.
func (c *capture) Flush() {
	if c.spilled {
		_ = http.NewResponseController(c.leader).Flush()
	}
}

func (c *capture) spill() {
	c.spilled = true
	h := c.leader.Header()
	for k, v := range c.header {
		if k != route.RequestIDHeader {
			h[k] = v
		}
	}
	h["X-Cache"] = xCacheMiss
	c.leader.WriteHeader(c.status)
	if len(c.body) > 0 {
		_, _ = c.leader.Write(c.body) // an error shows again on the next Write
	}
	c.body = nil
}

// flights coalesces concurrent identical misses: the first
// caller leads the fetch, the others wait for its answer or for their own
// context to end. Unlike singleflight.Group.Do, a waiter that goes away
// stops waiting at once; unlike DoChan, the fetch runs on the leader's own
// goroutine, which its request owns and a graceful shutdown drains.
type flights struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done    chan struct{}
	res     *fetched // set before done is closed
	waiters int      // callers that joined, leader excluded (tests)
}

func (fs *flights) join(key string) (f *flight, lead bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.calls[key]; f != nil {
		f.waiters++
		return f, false
	}
	f = &flight{done: make(chan struct{})}
	fs.calls[key] = f
	return f, true
}

func (fs *flights) finish(key string, f *flight, res *fetched) {
	f.res = res
	fs.mu.Lock()
	delete(fs.calls, key)
	fs.mu.Unlock()
	close(f.done)
}
