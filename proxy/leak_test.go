package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/tokens"
)

// connCounter follows an httptest server's connections through ConnState:
// how many are open now, the most open at once, and how many were opened.
type connCounter struct {
	open, peak, opened atomic.Int64
}

func (c *connCounter) track(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.opened.Add(1)
		n := c.open.Add(1)
		for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
		}
	case http.StateClosed, http.StateHijacked:
		c.open.Add(-1)
	}
}

// TestRoute_NoGoroutineOrConnectionLeak sends many requests through a route
// (metrics on, tokens from a Manager) over keep-alive connections: the
// upstream connections are reused, and once the clients'
// and the route's idle connections are closed, no connection is left open
// and the goroutines are back to what they were before.
func TestRoute_NoGoroutineOrConnectionLeak(t *testing.T) {
	requests := 100_000
	if raceEnabled {
		requests = 10_000 // the race detector makes each request ~10x slower
	}
	const concurrency = 16

	var upConns connCounter
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchAnswer)
	}))
	up.Config.ConnState = upConns.track
	up.Start()
	t.Cleanup(up.Close)
	rc := testroute.Stock(t, up.URL)
	transport := NewTransport(rc)
	m := metrics.New()
	mgr := tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{Kind: "oauth", OnExchange: m.ObserveExchange})
	front := httptest.NewServer(NewRoute(rc, mgr, RouteOptions{Metrics: m, Transport: transport}))
	t.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	t.Cleanup(client.CloseIdleConnections)

	baseline := runtime.NumGoroutine()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(requests); i = next.Add(1) {
				resp, err := client.Get(front.URL + "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat&n=" + fmt.Sprint(i))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("request %d: status %d", i, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests from %d goroutines in %v; upstream connections: %d opened, at most %d at once", requests, concurrency, time.Since(start).Round(time.Millisecond), upConns.opened.Load(), upConns.peak.Load())
	if t.Failed() {
		return
	}

	// Keep-alive works: the upstream connections are reused, not one per
	// request. A few more than the concurrency may be opened: the
	// Transport returns a connection to its idle pool from its own
	// goroutine after the body's end, and a request that comes first dials
	// (measured: 16-18 for 16 callers over 100,000 requests).
	if opened := upConns.opened.Load(); opened > 2*concurrency {
		t.Errorf("%d upstream connections opened for %d requests from %d callers: they are not reused", opened, requests, concurrency)
	}

	client.CloseIdleConnections()
	transport.CloseIdleConnections()
	testutil.WaitFor(t, "the upstream connections to close", func() bool { return upConns.open.Load() == 0 })
	// A little slack: the token Manager's refresh timer may have come and
	// gone, and net/http may still be winding a connection down.
	const slack = 5
	var goroutines int
	defer func() {
		if t.Failed() {
			t.Logf("%d goroutines, %d before the requests; %d upstream connections open", goroutines, baseline, upConns.open.Load())
		}
	}()
	testutil.WaitFor(t, "the goroutines to return to the baseline", func() bool {
		goroutines = runtime.NumGoroutine()
		return goroutines <= baseline+slack
	})
}
