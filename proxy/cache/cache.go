// Package cache is the Stock search cache stage: GET answers of the search
// paths are stored as the upstream sent them and served to every caller of
// the same search, fresh for CACHE_TTL, then kept CACHE_STALE_IF_ERROR
// longer to be served when the upstream fails; concurrent identical misses
// make one upstream request. Nothing else is ever cached.
package cache

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"hash/maphash"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// maxCachedBody is the largest body the cache stores.
const maxCachedBody = 1 << 20

// maxDecodedBody bounds what a stored gzip body may expand to: a body that
// inflates beyond it is not stored (a decompression bomb would otherwise
// be served to every caller that does not accept gzip).
const maxDecodedBody = 16 << 20

// entryOverhead is what one entry costs besides its body, key and header
// (headerSize): the entry struct, the LRU element and its map slot, and
// allocation rounding. TestCache_MemoryStaysWithinBudget measures 215 to
// 290 bytes on amd64 with Go 1.26 (up to 370 under -race); counting 320
// toward CACHE_MAX_BYTES keeps a full cache's heap within the budget.
const entryOverhead = 320

// sweepPerAdd bounds how many long-dead entries one Add removes from the
// least recently used end, so the cache sheds them without a goroutine.
const sweepPerAdd = 4

// Cache is the Stock search cache of one route: answers stored as the
// upstream sent them, bounded by entries and by bytes, fresh for TTL, then
// kept for StaleIfError more to be served when the upstream fails.
//
// It is golang-lru's simplelru under a mutex of its own rather than the
// expirable package, for two reasons: expirable drops an entry the moment
// its TTL ends, while stale-if-error needs it kept; and every expirable
// cache starts a goroutine that v2 never stops. The mutex also makes the
// byte count move together with the entries.
type Cache struct {
	route    string
	size     int
	ttl      time.Duration
	stale    time.Duration
	maxBytes int64
	now      func() time.Time
	log      *slog.Logger
	counts   *metrics.Cache // nil: none recorded
	shared   Shared         // the fleet's second level; nil: none
	limiter  Limiter        // nil: no bound beyond maxBytes (SetLimiter)

	flights flights
	gunzips sync.Pool // *gzip.Reader, for callers that do not accept gzip

	// The LRU is indexed by a hash of the key, so that a hit is found
	// from the key's bytes without making a string of them; the entry
	// holds the whole key, compared on every lookup (a hash collision is
	// a miss, never another search's answer).
	seed  maphash.Seed
	mu    sync.Mutex
	lru   *simplelru.LRU[uint64, *entry]
	bytes int64
	gen   uint64 // bumped by Purge: an answer fetched before is not stored
}

// entry is one stored answer. Nothing in it changes once it is stored, so
// a hit shares its header slices and body with every caller.
type entry struct {
	key    string
	body   []byte        // exactly as the upstream sent it
	header []headerField // the upstream's, with Content-Length
	// plainLength is the Content-Length of a gzip body decoded, for a
	// caller that does not accept gzip (the body is then decoded on the
	// way out); nil for identity bodies.
	plainLength []string
	stored      time.Time
	size        int64 // counted toward CACHE_MAX_BYTES
	pin         pin   // who holds the body (pin.go)
}

// New returns the search cache of stock route rc (CACHE_SIZE > 0) on the
// clock now (nil: time.Now), exporting its counters to m (nil: none).
func New(rc *config.Route, now func() time.Time, log *slog.Logger, m *metrics.Metrics) *Cache {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		route:    rc.Name,
		size:     rc.Cache.Size,
		ttl:      rc.Cache.TTL,
		stale:    rc.Cache.StaleIfError,
		maxBytes: rc.Cache.MaxBytes,
		now:      now,
		log:      log,
		flights:  flights{calls: make(map[string]*flight)},
		seed:     maphash.MakeSeed(),
	}
	// The size passed to simplelru is never reached by Add: add makes room
	// first, so that every removal is counted where it happens.
	c.lru, _ = simplelru.NewLRU(c.size, func(_ uint64, e *entry) {
		c.bytes -= e.size
		e.pin.add(-inCache) // a caller still being written to keeps it charged
	})
	if m != nil {
		c.counts = m.Cache(rc.Name, func() float64 { return float64(c.Len()) }, func() float64 { return float64(c.Bytes()) })
	}
	return c
}

// Len is the number of entries held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Bytes is what the entries held count toward CACHE_MAX_BYTES.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Purge empties the cache and returns how many entries it held. Answers
// being fetched while it runs are served but not stored. reason ("admin",
// "license", "credentials") goes to the log, with the request id ctx
// carries when a request caused it. With a shared level, every replica's
// cache empties.
func (c *Cache) Purge(ctx context.Context, reason string) int {
	if c.shared != nil {
		c.shared.Purge(reason)
	}
	return c.purgeLocal(ctx, reason)
}

func (c *Cache) purgeLocal(ctx context.Context, reason string) int {
	c.mu.Lock()
	n := c.lru.Len()
	c.lru.Purge()
	c.gen++
	c.mu.Unlock()
	c.log.InfoContext(ctx, "search cache purged", "route", c.route, "reason", reason, "entries", n)
	return n
}

// generation is read before a fetch and handed back to add.
func (c *Cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// fresh returns the entry for key if it is within its TTL, acquired for
// a write (release it after). An entry past its stale-if-error window is
// removed on the way.
func (c *Cache) fresh(key []byte) *entry {
	h := maphash.Bytes(c.seed, key)
	now := c.now()
	c.mu.Lock()
	e, ok := c.lru.Get(h)
	if !ok || e.key != string(key) {
		c.mu.Unlock()
		return nil
	}
	age := now.Sub(e.stored)
	if age < c.ttl {
		e.pin.acquire() // under the lock: the entry cannot be evicted first
		c.mu.Unlock()
		return e
	}
	dead := age >= c.ttl+c.stale
	if dead {
		c.lru.Remove(h)
	}
	c.mu.Unlock()
	if dead {
		c.evicted(1)
	}
	return nil
}

// staleEntry returns the entry for key if it may still be served when the
// upstream fails: past its TTL by no more than StaleIfError. It is
// acquired for a write (release it after).
func (c *Cache) staleEntry(key string) *entry {
	if c.stale <= 0 {
		return nil
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lru.Peek(maphash.String(c.seed, key))
	if !ok || e.key != key || now.Sub(e.stored) >= c.ttl+c.stale {
		return nil
	}
	e.pin.acquire()
	return e
}

// add stores e unless the cache was purged since gen was read, and
// reports whether it was not (the answer is current, whether stored or
// not). It makes room by removing long-dead entries, then the least
// recently used ones. An entry still being written to a caller is removed
// only if the Limiter has room to count it; else e is not stored (it is
// still served to those waiting for it), so that callers that do not read
// cannot make the cache hand over more memory than the Limiter allows.
func (c *Cache) add(e *entry, gen uint64) bool {
	evicted := 0
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		c.evicted(evicted)
	}()
	if gen != c.gen {
		return false
	}
	h := maphash.String(c.seed, e.key)
	// A refresh replaces the old answer (or one whose key collides); not
	// an eviction.
	if old, ok := c.lru.Peek(h); ok && !c.removeLocked(h, old) {
		return true
	}
	for range sweepPerAdd {
		k, old, ok := c.lru.GetOldest()
		if !ok || e.stored.Sub(old.stored) < c.ttl+c.stale {
			break
		}
		if !c.removeLocked(k, old) {
			return true
		}
		evicted++
	}
	for c.lru.Len() > 0 && (c.lru.Len() >= c.size || c.bytes+e.size > c.maxBytes) {
		k, old, _ := c.lru.GetOldest()
		if !c.removeLocked(k, old) {
			return true
		}
		evicted++
	}
	c.lru.Add(h, e)
	c.bytes += e.size
	e.pin.add(inCache)
	return true
}

// removeLocked removes old, under key k, unless it is being written to a
// caller and the Limiter has no room to count it once out of the cache.
func (c *Cache) removeLocked(k uint64, old *entry) bool {
	// Writers acquire under c.mu: the count can only fall meanwhile.
	held := c.limiter != nil && old.pin.state.Load()&(inCache-1) > 0
	if held && !c.limiter.Reserve(old.pin.size) {
		return false
	}
	c.lru.Remove(k) // charges the entry if it is still held
	if held {
		c.limiter.Release(old.pin.size)
	}
	return true
}

func (c *Cache) evicted(n int) {
	if c.counts != nil && n > 0 {
		c.counts.Evictions.Add(float64(n))
	}
}

// newEntry makes an entry of a fetched answer, or returns nil when the
// answer must not be stored: not a 200, a no-store, too big, trailers, or
// a content coding the proxy cannot undo for a caller that does not
// accept it (only gzip and identity are stored).
func (c *Cache) newEntry(key string, f *fetched, stored time.Time) *entry {
	if f.status != http.StatusOK || f.spilled || f.aborted || len(f.body) > maxCachedBody ||
		hasDirective(f.header["Cache-Control"], "no-store") || len(f.header["Trailer"]) > 0 {
		return nil
	}
	var gzipped bool
	switch codings := f.header["Content-Encoding"]; {
	case len(codings) == 0:
	case len(codings) > 1:
		return nil
	default:
		switch strings.ToLower(strings.TrimSpace(codings[0])) {
		case "", "identity":
		case "gzip", "x-gzip":
			gzipped = true
		default:
			return nil
		}
	}
	// The capture's buffer is kept when the body fills it (an answer of
	// declared length) or nearly; otherwise, grown by doubling, it may be
	// up to half empty, and a copy of the body's own size (rounded to its
	// size class) takes its place. A copy of every stored answer doubled
	// the garbage that many large answers in flight make, and with it the
	// process's resident size.
	body := f.body
	if !f.fitted && cap(body)-len(body) > len(body)/16 {
		body = slices.Grow([]byte(nil), len(body))
		body = append(body, f.body...)
	}
	e := &entry{key: key, body: body, header: storedHeader(f.header, len(body)), stored: stored}
	if gzipped {
		n, err := c.gunzippedLen(body)
		if err != nil {
			return nil // not what it claims to be: pass it on, do not keep it
		}
		e.plainLength = []string{strconv.Itoa(n)}
	}
	e.size = int64(cap(body)+len(key)) + headerSize(e.header) + entryOverhead
	if e.size > c.maxBytes {
		return nil
	}
	// Held by the fetch that made it until it is stored: charged to the
	// Limiter meanwhile, like the capture it comes from.
	e.pin.size, e.pin.lim = cap(body), c.limiter
	e.pin.acquire()
	return e
}

// headerField is one stored header. A slice of them costs a fixed,
// small amount per header, where a map's cost jumps with its size, and is
// quicker to copy into an answer.
type headerField struct {
	name   string
	values []string
}

// headerFieldSize is what a headerField itself occupies in its slice.
const headerFieldSize = int64(unsafe.Sizeof(headerField{}))

// storedHeader is the upstream's header as every hit answers with it:
// without what belongs to one request or one caller (X-Request-Id is the
// caller's own; Set-Cookie is never shared) and with an exact
// Content-Length.
func storedHeader(h http.Header, bodyLen int) []headerField {
	out := make([]headerField, 0, len(h)+1)
	for k, v := range h {
		switch k {
		case route.RequestIDHeader, "Set-Cookie", "Age", "X-Cache", "Content-Length", "Trailer":
			continue
		}
		out = append(out, headerField{k, v})
	}
	return append(out, headerField{"Content-Length", []string{strconv.Itoa(bodyLen)}})
}

// headerSize is what the stored header occupies: its fields, their names
// and values, and the values' slices.
func headerSize(fields []headerField) int64 {
	n := headerFieldSize * int64(cap(fields))
	for _, f := range fields {
		n += int64(len(f.name)) + 16*int64(cap(f.values))
		for _, v := range f.values {
			n += int64(len(v))
		}
	}
	return n
}

// gunzippedLen checks a gzip body through to its end and returns its
// decoded length.
func (c *Cache) gunzippedLen(body []byte) (int, error) {
	zr, err := c.gunzipper(body)
	if err != nil {
		return 0, err
	}
	defer c.gunzips.Put(zr)
	n, err := io.Copy(io.Discard, io.LimitReader(zr, maxDecodedBody+1))
	if err == nil && n > maxDecodedBody {
		err = errTooLarge
	}
	return int(n), err
}

var errTooLarge = errors.New("gzip body inflates beyond 16 MiB")

func (c *Cache) gunzipper(body []byte) (*gzip.Reader, error) {
	if zr, ok := c.gunzips.Get().(*gzip.Reader); ok {
		if err := zr.Reset(bytes.NewReader(body)); err != nil {
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(bytes.NewReader(body))
}

// cache results, as X-Cache says them (shared, never modified).
var (
	xCacheHit    = []string{"HIT"}
	xCacheMiss   = []string{"MISS"}
	xCacheBypass = []string{"BYPASS"}
	xCacheStale  = []string{"STALE"}
)

// write answers from e: the stored header and body in one Write, or, for
// a caller that does not accept the stored gzip body, the body decoded on
// the way out. Hits and stale answers carry Age.
func (c *Cache) write(w http.ResponseWriter, r *http.Request, e *entry, xcache []string) {
	h := w.Header()
	gunzip := e.plainLength != nil && !route.AcceptsGzip(r.Header["Accept-Encoding"])
	for _, f := range e.header {
		// A strong validator names the gzip bytes, not the decoded ones.
		if gunzip && (f.name == "Content-Encoding" || f.name == "Content-Length" || f.name == "Etag") {
			continue
		}
		h[f.name] = f.values
	}
	if gunzip {
		h["Content-Length"] = e.plainLength
	}
	h["X-Cache"] = xcache
	if xcache[0] != "MISS" {
		h["Age"] = ageValue(int64(max(c.now().Sub(e.stored), 0) / time.Second))
	}
	w.WriteHeader(http.StatusOK)
	if !gunzip {
		_, _ = w.Write(e.body)
		return
	}
	zr, err := c.gunzipper(e.body)
	if err != nil {
		return // checked when stored: cannot happen
	}
	_, _ = io.Copy(w, zr)
	c.gunzips.Put(zr)
}

// ages are the Age header values of the first hour and a bit, made on
// first use and shared by every answer (header values are never changed
// once set), so that a hit writes its Age without allocating.
var ages [4096]atomic.Pointer[[]string]

// ageValue is the Age header value of an answer secs seconds old.
func ageValue(secs int64) []string {
	if secs < 0 || secs >= int64(len(ages)) {
		return []string{strconv.FormatInt(secs, 10)}
	}
	if v := ages[secs].Load(); v != nil {
		return *v
	}
	v := []string{strconv.FormatInt(secs, 10)}
	ages[secs].Store(&v)
	return v
}
