package cache

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
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
		e := c.newEntry(key, &fetched{status: 200, header: h, body: body}, now)
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
