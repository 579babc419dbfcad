package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

func TestServer_RefusesOversizedHeaders(t *testing.T) {
	up := httptest.NewServer(&testutil.Upstream{})
	t.Cleanup(up.Close)
	rc := testroute.Stock(t, up.URL)
	rc.Auth = "none"
	srv, _, _ := startServer(t, rc, Options{})
	addr := srv.Addr("stock")
	big := strings.Repeat("a", 80<<10)
	if got := rawRequest(t, addr, "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "+big+"\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 431") {
		t.Fatalf("80 KiB of headers: %q, want 431", got)
	}
	if got := rawRequest(t, addr, "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Small: a\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("small headers: %q", got)
	}
	h := srv.httpServer(http.NotFoundHandler())
	if h.ReadHeaderTimeout <= 0 || h.ReadHeaderTimeout > 30*time.Second || h.IdleTimeout <= 0 {
		t.Fatalf("ReadHeaderTimeout %v, IdleTimeout %v: a slow or idle client could hold connections forever", h.ReadHeaderTimeout, h.IdleTimeout)
	}
}

// A client that never finishes its headers, and a keep-alive connection
// left idle, are hung up on; with the timeouts shortened, well within the
// 5 s the test waits (the defaults, 10 s and 2 min, would not be).
func TestServer_HangsUpOnSlowAndIdleClients(t *testing.T) {
	up := httptest.NewServer(&testutil.Upstream{})
	t.Cleanup(up.Close)
	rc := testroute.Stock(t, up.URL)
	rc.Auth = "none"
	srv, _, _ := startServer(t, rc, Options{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	addr := srv.Addr("stock")

	tests := []struct{ name, request, wantFirst string }{
		{"headers never finished", "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a", ""},
		{"idle after an answer", "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "HTTP/1.1 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn, tt.request); err != nil {
				t.Fatal(err)
			}
			// Read until the server closes: EOF (or a reset), not the
			// test's own deadline.
			got, err := io.ReadAll(conn)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after 5 s (read %q)", got)
			}
			if !strings.HasPrefix(string(got), tt.wantFirst) {
				t.Errorf("read %q before the hang-up, want it to start with %q", got, tt.wantFirst)
			}
		})
	}
}

func TestRoute_DropsHopByHopHeaders(t *testing.T) {
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)
	req, _ := http.NewRequest("GET", front.URL+"/x", nil)
	req.Header.Set("Connection", "X-Internal-Secret")
	req.Header.Set("X-Internal-Secret", "v")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("Proxy-Authorization", "Basic abc")
	req.Header.Set("Upgrade-Insecure-Requests", "1") // end-to-end: kept
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := up.All()[0].Header
	for _, h := range []string{"X-Internal-Secret", "Keep-Alive", "Proxy-Authorization"} {
		if v := got.Get(h); v != "" {
			t.Errorf("%s forwarded: %q", h, v)
		}
	}
	if v := got.Get("Te"); v != "" && v != "trailers" {
		t.Errorf("Te forwarded as %q", v)
	}
	if got.Get("Upgrade-Insecure-Requests") != "1" {
		t.Error("an end-to-end header was dropped")
	}
}
