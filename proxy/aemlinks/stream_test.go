package aemlinks

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Other answers stream through as they come: the caller reads the first
// part while the upstream still holds back the rest, so nothing is
// buffered, and the reverse proxy's flushes of an answer of unknown length
// (1000 bytes: less than net/http buffers) reach the caller.
func TestRewrite_StreamsOtherAnswersAsTheyCome(t *testing.T) {
	cases := []struct {
		name, contentType string
		length            bool
		first             int
	}{
		{"a binary of unknown length", "image/jpeg", false, 1000},
		{"events", "text/event-stream", false, 1000},
		// The reverse proxy does not flush an answer of known length:
		// the first part is larger than net/http's buffers.
		{"JSON larger than the limit", "application/json", true, 64 << 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			first := bytes.Repeat([]byte("x"), c.first)
			ch := startChain(t, Options{}, func(w http.ResponseWriter, r *http.Request, origin string) {
				w.Header().Set("Content-Type", c.contentType)
				if c.length {
					w.Header().Set("Content-Length", strconv.Itoa(maxBody+1))
				}
				_, _ = w.Write(first)
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = w.Write(bytes.Repeat([]byte("y"), maxBody+1-len(first)))
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ch.front.URL+"/content/dam/x", nil)
			resp, err := ch.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := make([]byte, len(first))
			if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, first) {
				t.Fatalf("first part: %v %q", err, got)
			}
			once.Do(func() { close(release) })
			rest, err := io.ReadAll(resp.Body)
			if err != nil || len(rest) != maxBody+1-len(first) {
				t.Fatalf("rest: %v, %d bytes", err, len(rest))
			}
		})
	}
}

func TestRewrite_LimiterBoundsHeldBytes(t *testing.T) {
	listing := func(origin string) []byte { return sirenListing(origin, 40) }
	cases := []struct {
		name      string
		capacity  int
		gzip      bool
		rewritten bool
	}{
		{"room for the body and its rewrite", 64 << 10, false, true},
		{"room for a gzip body, decoded and rewritten", 128 << 10, true, true},
		{"no room to hold the body", 1 << 10, false, false},
		{"room to hold, not to rewrite", 12 << 10, false, false},
		{"room to hold gzip, not to decode", 2 << 10, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &budget{capacity: c.capacity}
			ch := startChain(t, Options{Limiter: b}, func(w http.ResponseWriter, r *http.Request, origin string) {
				body := listing(origin)
				w.Header().Set("Content-Type", "application/json")
				if c.gzip {
					w.Header().Set("Content-Encoding", "gzip")
					body = gzipped(t, body)
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				_, _ = w.Write(body)
			})
			resp, body := ch.do(t, http.MethodGet, "/api/assets.json", "Accept-Encoding", "gzip")
			if c.gzip && resp.Header.Get("Content-Encoding") == "gzip" {
				body = gunzipped(t, body)
			}
			want := listing(ch.up.URL)
			if c.rewritten {
				want = listing(ch.frontBase())
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("rewritten: %v, want %v", bytes.Contains(body, []byte(ch.frontBase())), c.rewritten)
			}
			ch.front.Close() // waits for the handler, which gives back what it held
			used, most, refusals := b.state()
			if used != 0 || most > c.capacity || (refusals == 0) == !c.rewritten {
				t.Fatalf("after the answer: %d bytes still reserved, at most %d of %d, %d refusals", used, most, c.capacity, refusals)
			}
		})
	}
}

// A panic in the handler behind (the reverse proxy cutting a broken
// stream) gives back the bytes held and leaves the real header as it was.
func TestRewrite_PanicReleasesHeldBytes(t *testing.T) {
	b := &budget{capacity: 1 << 20}
	u, _ := url.Parse("https://author.example.com")
	h := Rewrite(u, Options{Limiter: b})(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte(`{"href":"https://author.example.com/`))
		panic(http.ErrAbortHandler)
	}))
	rec := httptest.NewRecorder()
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recovered %v, want the handler's panic", p)
			}
		}()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081/api/assets.json", nil))
	}()
	if used, most, _ := b.state(); used != 0 || most != 100 {
		t.Errorf("%d bytes still reserved (%d held at most), want 0 (100)", used, most)
	}
	if len(rec.Header()) != 0 || rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("the real writer got %v %d %q", rec.Header(), rec.Code, rec.Body)
	}
}

// A Host that is not a plain host[:port] never reaches an answer: the
// listener's address is used instead, and with neither nothing is
// rewritten.
func TestRewrite_AddressFallsBackToTheListener(t *testing.T) {
	u, _ := url.Parse("https://author.example.com")
	h := Rewrite(u, Options{})(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "https://author.example.com/x")
		_, _ = io.WriteString(w, `"https://author.example.com/y"`)
	}))
	listener := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}
	cases := []struct {
		name, host     string
		local          net.Addr
		location, body string
	}{
		{"a plain host", "aem.local:9000", listener, "http://aem.local:9000/x", `"http://aem.local:9000/y"`},
		{"a Host with a quote", `evil"host`, listener, "http://127.0.0.1:8081/x", `"http://127.0.0.1:8081/y"`},
		{"a Host with a path", "evil.net/x", listener, "http://127.0.0.1:8081/x", `"http://127.0.0.1:8081/y"`},
		{"no Host and no listener", "", nil, "https://author.example.com/x", `"https://author.example.com/y"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/assets.json", nil)
			r.Host = c.host
			if c.local != nil {
				r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, c.local))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Header().Get("Location") != c.location || rec.Body.String() != c.body {
				t.Fatalf("Location %q, body %s; want %q, %s", rec.Header().Get("Location"), rec.Body, c.location, c.body)
			}
		})
	}
}

// A protocol upgrade passes through as without the stage: the connection
// is handed over, and the 101 carries the header set before the stage
// (the proxy's X-Request-Id).
func TestRewrite_ProtocolUpgradePassesThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString(line)
		_ = brw.Flush()
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	staged := Rewrite(target, Options{})(rp)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "upgrade-1")
		staged.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	conn, err := net.DialTimeout("tcp", front.Listener.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.WriteString(conn, "GET /socket HTTP/1.1\r\nHost: "+front.Listener.Addr().String()+"\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Request-Id") != "upgrade-1" {
		t.Fatalf("upgrade answered %d with X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	_, _ = io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
}
