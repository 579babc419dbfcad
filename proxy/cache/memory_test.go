package cache

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/inflight"
)

// fillCache fills a cache of maxBytes with entries whose bodies are of
// bodySize bytes, each with a header set and key like a real search's,
// and returns the heap growth and what the entries hold (bodies, keys,
// header bytes).
func fillCache(t testing.TB, maxBytes int64, bodySize int, gzip bool) (c *Cache, heap, payload int64) {
	rc := &config.Route{Name: "stock", Cache: config.Cache{Size: 1 << 20, TTL: time.Hour, MaxBytes: maxBytes, StaleIfError: time.Hour}}
	body := []byte(searchAnswer(bodySize))
	if gzip {
		body = gzipped(t, string(body))
	}
	now := time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c = New(rc, func() time.Time { return now }, nil, nil)
	for i := 0; ; i++ {
		key, _ := cacheKey("stock", pathSearchFiles,
			fmt.Sprintf("search_parameters[words]=cat+%d&search_parameters[limit]=32&search_parameters[offset]=%d&locale=en_US", i, i*32),
			[]string{"en-US,en;q=0.9"}, nil)
		// A header as the transport builds it: fresh strings and slices.
		h := make(http.Header)
		for k, v := range map[string]string{
			"Content-Type":                "application/json; charset=utf-8",
			"Date":                        now.Add(time.Duration(i) * time.Second).UTC().Format(http.TimeFormat),
			"Server":                      "nginx",
			"Vary":                        "Accept-Encoding, Accept-Language",
			"X-Request-Id":                fmt.Sprintf("req-%016d", i),
			"Access-Control-Allow-Origin": "*",
			"Strict-Transport-Security":   "max-age=31536000",
		} {
			h[k] = []string{strings.Clone(v)}
		}
		if gzip {
			h["Content-Encoding"] = []string{strings.Clone("gzip")}
		}
		// A body of its own, as each fetch captures one: the entry may keep it.
		e := c.newEntry(key, &fetched{status: 200, header: h, body: bytes.Clone(body)}, now)
		if e == nil {
			t.Fatal("entry refused")
		}
		c.add(e, c.generation())
		if i > 0 && int64(i) > 2*maxBytes/int64(len(body)) {
			break // well past full: evictions have been running
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(body) // counted in before: keep it out of the difference
	heap = int64(after.HeapAlloc) - int64(before.HeapAlloc)
	c.mu.Lock()
	for _, e := range c.lru.Values() {
		payload += int64(len(e.body)+len(e.key)) + headerSize(e.header)
	}
	c.mu.Unlock()
	return c, heap, payload
}

// TestCache_MemoryStaysWithinBudget fills caches past their
// CACHE_MAX_BYTES and checks that the heap they hold stays within it.
func TestCache_MemoryStaysWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 16 MiB caches")
	}
	const maxBytes = 16 << 20
	for _, tc := range []struct {
		size int
		gzip bool
	}{{512, false}, {4 << 10, false}, {32 << 10, false}, {200 << 10, false}, {4 << 10, true}, {32 << 10, true}} {
		size := tc.size
		t.Run(fmt.Sprintf("%dB bodies gzip=%v", size, tc.gzip), func(t *testing.T) {
			c, heap, payload := fillCache(t, maxBytes, size, tc.gzip)
			n := int64(c.Len())
			t.Logf("%d entries, accounted %d bytes of %d; heap %d bytes (%.3f of the budget); payload %d; overhead %d bytes an entry",
				n, c.Bytes(), maxBytes, heap, float64(heap)/maxBytes, payload, (heap-payload)/n)
			if c.Bytes() > maxBytes {
				t.Errorf("accounted %d bytes, over the budget of %d", c.Bytes(), maxBytes)
			}
			// The small slack: the LRU's map grows by doubling, and the
			// runtime's size classes round some allocations up.
			if limit := int64(maxBytes) + maxBytes/50; heap > limit {
				t.Errorf("a full cache holds %d heap bytes, over the budget %d + 2%%", heap, maxBytes)
			}
			runtime.KeepAlive(c)
		})
	}
}

// BenchmarkCacheMemory reports the heap a full 16 MiB cache holds and
// its overhead per entry beyond bodies, keys and headers.
func BenchmarkCacheMemory(b *testing.B) {
	for _, size := range []int{512, 4 << 10, 32 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			for b.Loop() {
				c, heap, payload := fillCache(b, 16<<20, size, false)
				b.ReportMetric(float64(heap)/(16<<20), "heap/budget")
				b.ReportMetric(float64(heap-payload)/float64(c.Len()), "overhead-B/entry")
				b.ReportMetric(float64(c.Len()), "entries")
			}
		})
	}
}

// searchAnswer is a Stock-like search answer of about size bytes.
func searchAnswer(size int) string {
	var b strings.Builder
	b.WriteString(`{"nb_results":120345,"files":[`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"title":"Cat sitting on a windowsill in the sun %d","width":6000,"height":4000,"thumbnail_url":"https://t4.ftcdn.net/jpg/00/%02d/%02d/24/500_F_%d.jpg","is_licensed":""}`,
			100000+i, i, i%100, (i*7)%100, 100000+i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// Entries are found by a hash of their key: an entry whose key hashes the
// same but differs is another search's answer, and must be a miss.
func TestCache_HashCollisionIsAMiss(t *testing.T) {
	now := time.Now()
	rc := &config.Route{Name: "stock", Cache: config.Cache{Size: 10, TTL: time.Hour, MaxBytes: 1 << 20}}
	c := New(rc, func() time.Time { return now }, nil, nil)
	key := []byte("the key of one search")
	c.lru.Add(maphash.Bytes(c.seed, key), &entry{key: "the key of another search", stored: now})
	if e := c.fresh(key); e != nil {
		t.Fatalf("a lookup returned the entry of another key (%q)", e.key)
	}
	if e := c.staleEntry(string(key)); e != nil {
		t.Fatalf("a stale lookup returned the entry of another key (%q)", e.key)
	}
	c.add(&entry{key: string(key), stored: now, size: 100}, c.generation())
	if e := c.fresh(key); e == nil || e.key != string(key) || c.Len() != 1 {
		t.Fatalf("after storing the key's own answer: %v, %d entries", e, c.Len())
	}
}

// An answer of known length is read into a buffer of its size, and the
// entry keeps that buffer: storing a miss allocates its body once, not a
// second time for a copy. Many large answers in flight otherwise made
// twice the garbage, and the resident set grew with it. 40961 bytes is
// just past a size class, where a rule on the buffer's spare room alone
// still copied.
func TestCache_AMissOfKnownLengthIsStoredWithoutACopy(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's build allocates the buffer slices.Grow sizes twice")
	}
	for _, size := range []int{40961, 512 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			body := []byte(searchAnswer(size))
			body = append(body, bytes.Repeat([]byte(" "), size-len(body))...) // exactly size: JSON may end in spaces
			f := newCacheFixture(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				_, _ = w.Write(body)
			}, nil)
			miss := func(i int) {
				req := httptest.NewRequest("GET", fmt.Sprintf("%s&search_parameters[offset]=%d", searchPath, i), nil)
				w := &countingWriter{h: http.Header{}}
				f.handler.ServeHTTP(w, req)
				if w.code != http.StatusOK || w.h.Get("X-Cache") != "MISS" || w.n != len(body) {
					t.Fatalf("%d X-Cache %q, %d bytes", w.code, w.h.Get("X-Cache"), w.n)
				}
			}
			miss(0) // the connection, the pools
			const misses = 8
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range misses {
				miss(i + 1)
			}
			runtime.ReadMemStats(&after)
			perMiss := int(after.TotalAlloc-before.TotalAlloc) / misses
			t.Logf("%d bytes allocated a miss of %d bytes", perMiss, len(body))
			// One body, and what a request through this fixture costs
			// besides (about 50 KB, 32 KB of it the reverse proxy's copy
			// buffer); a copy would add the body's size again.
			if perMiss > len(body)+64<<10 {
				t.Errorf("a miss of %d bytes allocated %d: the body is copied", len(body), perMiss)
			}
			if n := f.cache.Len(); n != misses+1 {
				t.Fatalf("%d entries stored, want %d", n, misses+1)
			}
		})
	}
}

// A capture of unknown length grows its buffer within what may be stored,
// and its reservation is what the buffer occupies, at every step: grown
// by append's own rule, a 1,000,000-byte answer took a buffer of 1.08 MiB
// and charged the Limiter past the 1 MiB an answer may hold.
func TestCapture_GrowsWithinTheStoredMaximum(t *testing.T) {
	c := &capture{header: http.Header{}, leader: &countingWriter{h: http.Header{}}, lim: inflight.New(64 << 20), declared: -1}
	c.WriteHeader(http.StatusOK)
	chunk := make([]byte, 4096)
	for written := 0; written+len(chunk) <= 1_000_000; written += len(chunk) {
		_, _ = c.Write(chunk)
		if c.spilled || cap(c.body) > maxCachedBody || c.reserved != cap(c.body) {
			t.Fatalf("after %d bytes: spilled %v, buffer %d, reserved %d; the most an answer may hold is %d",
				written+len(chunk), c.spilled, cap(c.body), c.reserved, maxCachedBody)
		}
	}
	c.release()
}

// countingWriter counts what is written to it and keeps none of it.
type countingWriter struct {
	h       http.Header
	code, n int
}

func (w *countingWriter) Header() http.Header { return w.h }
func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *countingWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
