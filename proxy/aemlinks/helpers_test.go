package aemlinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// chain is an upstream behind a ReverseProxy wrapped in Rewrite, as an
// aem route forwards.
type chain struct {
	front, up *httptest.Server
	client    *http.Client // sends Accept-Encoding as the test says
}

// startChain serves upstream (given its own origin, as AEM names itself)
// behind the middleware.
func startChain(t *testing.T, opts Options, upstream func(w http.ResponseWriter, r *http.Request, origin string)) *chain {
	t.Helper()
	c := &chain{}
	c.up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream(w, r, "http://"+r.Host)
	}))
	t.Cleanup(c.up.Close)
	target, err := url.Parse(c.up.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: &http.Transport{DisableCompression: true}, // as the proxy's transport
	}
	t.Cleanup(rp.Transport.(*http.Transport).CloseIdleConnections)
	c.front = httptest.NewServer(Rewrite(target, opts)(rp))
	t.Cleanup(c.front.Close)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c.client = &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c
}

// do sends method path with headers (name, value pairs) to the front and
// returns the answer with its body read.
func (c *chain) do(t *testing.T, method, path string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.front.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// frontBase is the origin callers of the front use.
func (c *chain) frontBase() string { return c.front.URL }

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// budget is a Limiter with a fixed capacity that remembers the most it
// lent at once; the global limiter the proxy will have works the same way.
type budget struct {
	mu        sync.Mutex
	capacity  int
	used, max int
	refusals  int
}

func (b *budget) Reserve(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.capacity {
		b.refusals++
		return false
	}
	b.used += n
	b.max = max(b.max, b.used)
	return true
}

func (b *budget) Release(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("released more than reserved")
	}
}

func (b *budget) state() (used, most, refusals int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.max, b.refusals
}
