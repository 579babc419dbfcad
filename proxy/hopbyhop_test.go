package proxy

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
)

// A caller's Connection header names headers to drop at the next hop. The
// route's credentials and X-Product are set after that, so that naming
// them strips nothing: no request leaves without them, and no answer made
// without them (a search without is_licensed) is cached for everyone.
func TestRoute_ConnectionHeaderCannotStripTheCredentials(t *testing.T) {
	var mu sync.Mutex
	release := make(chan struct{})
	answered := 0
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		<-release // hold every search, so that concurrent callers wait for one fetch
		mu.Lock()
		answered++
		mu.Unlock()
		licensed := `""`
		if r.Header.Get("Authorization") != "" {
			licensed = `"Standard"`
		}
		_, _ = w.Write([]byte(`{"files":[{"id":1,"is_licensed":` + licensed + `}]}`))
	}}
	m := metrics.New()
	misses := func() float64 { return testutil.Samples(t, m.Handler(), "imsproxy_cache_misses_total")["stock"] }
	front := guardedRoute(t, up, RouteOptions{Metrics: m}, func(rc *config.Route) {
		rc.Cache = config.Cache{Size: 16, TTL: time.Hour, MaxBytes: 1 << 20}
	})
	addr := strings.TrimPrefix(front.URL, "http://")

	for i, strip := range []string{"Authorization", "X-Api-Key", "X-Product", "Authorization, X-Api-Key, X-Product", "close, authorization"} {
		search := "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=w" + string(rune('a'+i))
		// The attacker leads the fetch, naming the credentials in
		// Connection; two plain callers join it while it waits.
		results := make(chan string, 3)
		var wg sync.WaitGroup
		send := func(extra string) {
			defer wg.Done()
			results <- rawAnswer(t, addr, "GET "+search+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+extra+"\r\n")
		}
		wg.Add(1)
		go send("Connection: " + strip + "\r\n")
		testutil.WaitFor(t, "the first search to reach the upstream", func() bool { return len(up.All()) == i+1 })
		wg.Add(2)
		go send("")
		go send("")
		// They count their miss just before they join the fetch in flight.
		testutil.WaitFor(t, "the other searches to wait for it", func() bool { return misses() == float64(3*(i+1)) })
		release <- struct{}{}
		wg.Wait()
		close(results)
		for answer := range results {
			if !strings.Contains(answer, `"is_licensed":"Standard"`) {
				t.Errorf("Connection: %s: an answer made without the token: %q", strip, answer)
			}
		}
		for _, seen := range up.All() {
			for _, h := range []string{"Authorization", "X-Api-Key", "X-Product"} {
				if seen.Header.Get(h) == "" {
					t.Errorf("Connection: %s: a request left without %s", strip, h)
				}
			}
		}
		if n := len(up.All()); n != i+1 {
			t.Errorf("Connection: %s: %d searches upstream, want %d: the callers did not share the fetch", strip, n, i+1)
		}
		// And the cached answer, served to the next caller, is the right one.
		if answer := rawAnswer(t, addr, "GET "+search+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); !strings.Contains(answer, "X-Cache: HIT") || !strings.Contains(answer, `"Standard"`) {
			t.Errorf("Connection: %s: the cached answer: %q", strip, answer)
		}
	}
	close(release)
}

// rawAnswer sends one raw request on a fresh connection and returns the
// whole answer (status line, header and body).
func rawAnswer(t *testing.T, addr, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Error(err)
		return ""
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	_ = resp.Header.Write(&b)
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.Status + "\n" + b.String()
}
