package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Clock is a clock that moves only when told, so that expiry is tested
// without sleeping. Its zero value reads the zero time.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Buffer is a bytes.Buffer safe for writers and readers at once (a log
// written by a server and read by the test).
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// KeyHash is the key_sha256 of a caller key.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Caller is one entry of a callers file; Key is the key itself (hashed by
// CallersJSON).
type Caller struct {
	Name    string
	Key     string
	Routes  []string
	License bool
}

// CallersJSON renders a callers file.
func CallersJSON(callers ...Caller) string {
	var parts []string
	for _, c := range callers {
		parts = append(parts, fmt.Sprintf(`{"name":%q,"key_sha256":%q,"routes":["%s"],"license":%t}`,
			c.Name, KeyHash(c.Key), strings.Join(c.Routes, `","`), c.License))
	}
	return "[" + strings.Join(parts, ",\n") + "]"
}

// WriteFile replaces the file at path with content by writing a temporary
// file and renaming it, as a careful operator (or Kubernetes) does, so
// that a reader never sees half a file.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Families scrapes metrics (a /metrics handler) and parses what it
// exports, by family name.
func Families(t testing.TB, metrics http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// Samples scrapes metrics (a /metrics handler) and returns the values of
// the metric family name — a counter, a gauge, or a histogram's count —
// keyed by the values of its labels in the order of their names,
// space-separated.
func Samples(t testing.TB, metrics http.Handler, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	f, ok := Families(t, metrics)[name]
	if !ok {
		return out
	}
	for _, m := range f.GetMetric() {
		var values []string
		for _, l := range m.GetLabel() {
			values = append(values, l.GetValue())
		}
		out[strings.Join(values, " ")] = m.GetCounter().GetValue() + m.GetGauge().GetValue() +
			float64(m.GetHistogram().GetSampleCount())
	}
	return out
}

// Seen is what an Upstream observed of one request.
type Seen struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         []byte
}

// Upstream is a test upstream: it answers 200 "ok" (or as Handler says)
// and remembers every request.
type Upstream struct {
	Handler func(w http.ResponseWriter, r *http.Request, body []byte) // nil: 200 "ok"

	mu       sync.Mutex
	requests []Seen
}

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.requests = append(u.requests, Seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Clone(), body})
	u.mu.Unlock()
	if u.Handler != nil {
		u.Handler(w, r, body)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// All returns the requests seen so far.
func (u *Upstream) All() []Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Seen(nil), u.requests...)
}

// WaitFor polls cond, a state the code under test reaches on its own, for
// up to 10 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ClosedAddr returns a loopback address on which nothing listens: a port
// bound and closed again, for a guaranteed connection refusal.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
