package cache

import (
	"context"
	"net/http"
	"slices"
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
			c.serveEntry(w, r, e, xCacheHit)
			return
		}
	}
	key := string(kb)
	// Without a shared level a local miss goes upstream, and is counted
	// at once (a caller waiting for another's fetch included); with one,
	// whether it was a hit is known after the fetch.
	early := c.shared == nil
	if early {
		c.count(false)
	}
	var f *fetched
	led := true
	if refresh {
		// A refresh does not join a fetch that began before it asked.
		f = s.fetch(w, r, key)
	} else if f, led = s.sharedFetch(w, r, key); f == nil {
		w.WriteHeader(route.StatusClientClosed) // went away while waiting
		return
	}
	if !early {
		c.count(f.shared)
	}
	if !led {
		f.acquire() // the leader holds the answer from its fetch
	}
	defer f.release()
	switch {
	case f.entry != nil && f.shared:
		c.write(w, r, f.entry, xCacheHit)
	case f.entry != nil:
		c.write(w, r, f.entry, xCacheMiss)
	case f.spilled && led:
		// Too big to keep: already streamed to this caller.
	case (f.aborted || f.failed()) && !refresh && c.serveStale(w, r, key, f.stale):
	case f.aborted || f.spilled:
		// No answer to share: this caller's own request, not cached.
		w.Header()["X-Cache"] = xCacheMiss
		s.next.ServeHTTP(w, r)
	default:
		f.writeTo(w)
	}
}

// serveStale answers with an expired entry still inside the stale-if-error
// window, if there is one: the local one, else shared (the shared level's,
// found by the lookup before the fetch).
func (c *Cache) serveStale(w http.ResponseWriter, r *http.Request, key string, shared *entry) bool {
	e := c.staleEntry(key)
	if e == nil && shared != nil {
		shared.pin.acquire()
		e = shared
	}
	if e == nil {
		return false
	}
	c.count(true)
	c.serveEntry(w, r, e, xCacheStale)
	return true
}

// serveEntry answers from e, acquired by fresh or staleEntry, and
// releases it once written.
func (c *Cache) serveEntry(w http.ResponseWriter, r *http.Request, e *entry, xcache []string) {
	defer e.pin.release()
	c.write(w, r, e, xcache)
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
	// A fetch of key may have ended between this caller's lookup and its
	// join: its answer is stored by now, and is this caller's too, without
	// a second upstream request.
	if e := s.c.fresh([]byte(key)); e != nil {
		f = &fetched{status: http.StatusOK, entry: e}
		return f, true
	}
	f = s.fetch(w, r, key)
	return f, true
}

// fetched is the answer of one fetch.
type fetched struct {
	status  int
	header  http.Header
	body    []byte // nil once stored: entry holds the answer
	entry   *entry // the answer as stored; nil when it may not be
	shared  bool   // entry came from the shared level: a hit
	stale   *entry // the shared level's expired entry, for stale-if-error
	spilled bool   // over 1 MiB: streamed to the leader's caller alone
	aborted bool   // no whole answer: the upstream broke off or the fetch ran out of time
	// fitted: body fills a buffer allocated for its declared length, which
	// an entry keeps as it is (a copy would be no smaller).
	fitted bool
	// pin counts body, an answer shared with waiters without being
	// stored, toward the Limiter while they write it; nil: not counted.
	pin *pin
}

// acquire and release bracket a caller's write of the answer (and its
// hold on the shared level's stale entry); the fetch made them acquired
// for its leader.
func (f *fetched) acquire() {
	switch {
	case f.entry != nil:
		f.entry.pin.acquire()
	case f.pin != nil:
		f.pin.acquire()
	}
	if f.stale != nil {
		f.stale.pin.acquire()
	}
}

func (f *fetched) release() {
	switch {
	case f.entry != nil:
		f.entry.pin.release()
	case f.pin != nil:
		f.pin.release()
	}
	if f.stale != nil {
		f.stale.pin.release()
	}
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
	// A local miss asks the fleet's shared level before the upstream; a
	// refresh (no-cache) goes upstream in any case.
	var stale *entry
	if !wantsRefresh(r.Header) {
		e, expired := c.loadShared(ctx, key)
		if e != nil && !expired {
			c.add(e, gen)
			return &fetched{status: http.StatusOK, entry: e, shared: true}
		}
		if expired {
			stale = e
		}
	}
	// Read after the lookup, which learns it, and before the fetch.
	sharedGen := c.sharedGeneration()
	capt := &capture{header: make(http.Header), leader: w, lim: c.limiter, declared: -1}
	defer capt.release() // what was not handed on with the answer
	f = &fetched{aborted: true, stale: stale}
	defer func() {
		// The reverse proxy aborts with ErrAbortHandler when the upstream
		// breaks off mid-body. Until part of the answer went to the
		// leader's caller, that only means there is no answer to share.
		if v := recover(); v != nil && (v != http.ErrAbortHandler || capt.spilled) {
			if stale != nil {
				stale.pin.release() // the waiters get no answer, and no stale one
			}
			panic(v)
		}
	}()
	s.next.ServeHTTP(capt, r.WithContext(ctx))
	status := capt.status
	if status == 0 {
		status = http.StatusOK // nothing written: an empty 200
	}
	*f = fetched{status: status, header: capt.header, body: capt.body, spilled: capt.spilled,
		fitted: capt.declared >= 0 && len(capt.body) == capt.declared,
		// the fetch's own deadline passed before an answer came
		aborted: status == route.StatusClientClosed, stale: stale}
	if e := c.newEntry(key, f, c.now()); e != nil {
		if c.add(e, gen) { // not kept if purged meanwhile, but served to those waiting
			c.storeShared(sharedGen, e)
		}
		f.entry, f.body = e, nil
	} else if capt.reserved > 0 && f.body != nil {
		// Shared as it came: the capture's reservation goes with it,
		// held by the leader.
		f.pin = &pin{size: capt.reserved, lim: c.limiter}
		f.pin.state.Store(1)
		capt.reserved = 0
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

	lim      Limiter // nil: none
	reserved int     // bytes of body reserved from lim
	declared int     // the Content-Length body's buffer was allocated for; -1: none
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
		if n > maxCachedBody || !c.reserve(int(n)) {
			c.spill()
		} else {
			c.body = slices.Grow(c.body, int(n))
			c.declared = int(n)
			c.chargeRounding()
		}
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if need := len(c.body) + len(p); !c.spilled && (need > maxCachedBody || need > cap(c.body) && !c.grow(need)) {
		c.spill()
	}
	if c.spilled {
		return c.leader.Write(p)
	}
	c.body = append(c.body, p...)
	return len(p), nil
}

// grow makes room for need bytes of body, reserved from the Limiter; when
// there is none, the answer is streamed instead of stored.
func (c *capture) grow(need int) bool {
	size := min(max(need, 2*cap(c.body), 4<<10), maxCachedBody)
	if !c.reserve(size - c.reserved) {
		return false
	}
	// A new buffer of exactly size (rounded to its size class): growing
	// the old one with append's own rule would overshoot it.
	body := append(slices.Grow([]byte(nil), size), c.body...)
	c.body = body
	c.declared = -1
	c.chargeRounding()
	return true
}

// chargeRounding counts what the allocator added to the body's buffer
// beyond what was reserved (the rest of its size class), so that the
// reservation is what the buffer occupies and an entry can keep the
// buffer as it is.
func (c *capture) chargeRounding() {
	if extra := cap(c.body) - c.reserved; c.lim != nil && extra > 0 {
		c.lim.Charge(extra)
		c.reserved += extra
	}
}

func (c *capture) reserve(n int) bool {
	if c.lim == nil || n <= 0 {
		return true
	}
	if !c.lim.Reserve(n) {
		return false
	}
	c.reserved += n
	return true
}

// release gives back what the capture still holds reserved.
func (c *capture) release() {
	if c.reserved > 0 {
		c.lim.Release(c.reserved)
		c.reserved = 0
	}
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
	c.release()
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
