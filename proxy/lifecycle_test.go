package proxy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// On shutdown, /readyz answers 503 at once while requests are still
// served for the shutdown delay; SkipShutdownDelay (a second signal) ends
// the delay, and then the server drains and Run returns.
func TestServer_ShutdownDelayKeepsServingWithReadyz503(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	t.Cleanup(up.Close)
	rc := testroute.Stock(t, up.URL)
	rc.Auth = config.AuthNone
	logs := &testutil.Buffer{}
	// A delay no test run reaches: the delay ends by SkipShutdownDelay, so
	// nothing here depends on timing.
	cfg := &config.Config{AdminListen: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, ShutdownDelay: time.Hour, Routes: []config.Route{*rc}}
	srv, stop, wait := startConfig(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	waitReady(t, srv.AdminAddr())
	addr := srv.Addr("stock")

	stop() // what SIGTERM does in cmd/imsproxy
	testutil.WaitFor(t, "/readyz to answer 503", func() bool { return get(t, "http://"+srv.AdminAddr()+"/readyz") == 503 })
	resp, err := http.Get("http://" + srv.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body readiness
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if body.Ready || !body.Stopping || !body.Routes["stock"].Ready {
		t.Errorf("/readyz during the delay = %+v, want not ready, stopping, the route itself ready", body)
	}
	for i := range 5 {
		// New connections each time: the listener still accepts.
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + "/during-the-delay")
		if err != nil {
			t.Fatalf("request %d during the delay: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d during the delay: %d %q", i, resp.StatusCode, b)
		}
	}
	if get(t, "http://"+srv.AdminAddr()+"/healthz") != 200 {
		t.Error("/healthz during the delay is not 200: a liveness probe would restart the process")
	}
	srv.SkipShutdownDelay()
	if err := wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := http.Get("http://" + addr + "/after"); err == nil {
		t.Error("the route still accepts after the drain")
	}
	for _, want := range []string{"delay=1h0m0s", "shutdown delay cut short", "shutting down"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs)
		}
	}
}

// Requests served during the shutdown delay and the drain still get
// tokens: a token revoked then is exchanged again, as at any other time.
// The token managers ran under the context the first signal cancels, so
// every exchange then failed at once with "context canceled" and the
// caller got the upstream's 401.
func TestServer_TokensAreStillRenewedWhileShuttingDown(t *testing.T) {
	ims, imsSrv := newFakeIMS(t, time.Hour)
	var rejected atomic.Int64
	up := httptest.NewServer(strictUpstream(ims, &rejected))
	t.Cleanup(up.Close)
	rc := oauthRoute(t, up.URL, imsSrv.URL)
	cfg := &config.Config{AdminListen: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, ShutdownDelay: time.Hour, Routes: []config.Route{*rc}}
	srv, stop, wait := startConfig(t, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	waitReady(t, srv.AdminAddr())
	search := "http://" + srv.Addr("stock") + "/Rest/Media/1/Search/Files?search_parameters[words]=cat"
	if code := get(t, search); code != 200 {
		t.Fatalf("before the signal: %d", code)
	}

	stop() // what SIGTERM does in cmd/imsproxy
	testutil.WaitFor(t, "/readyz to answer 503", func() bool { return get(t, "http://"+srv.AdminAddr()+"/readyz") == 503 })
	ims.mu.Lock()
	clear(ims.expires) // IMS revokes every token it issued
	ims.mu.Unlock()
	if code := get(t, search); code != 200 {
		t.Errorf("during the shutdown delay, after a revocation: %d, want 200 with a new token", code)
	}
	if n := ims.calls.Load(); n != 2 {
		t.Errorf("%d exchanges, want 2: the first and one after the revocation", n)
	}
	srv.SkipShutdownDelay()
	if err := wait(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// Listen names the variable of an address it cannot listen on.
func TestServer_ListenNamesTheVariableOfAPortInUse(t *testing.T) {
	busy := busyAddr(t)
	for _, tc := range []struct {
		name  string
		route string
		admin string
		want  string
	}{
		{"route", busy, "127.0.0.1:0", "IMSPROXY_STOCK_LISTEN " + busy + " is in use: another process listens there; stop it, or set IMSPROXY_STOCK_LISTEN to a free address"},
		{"admin", "127.0.0.1:0", busy, "IMSPROXY_ADMIN_LISTEN " + busy + " is in use: "},
		{"address of no interface", "192.0.2.1:0", "127.0.0.1:0", "IMSPROXY_STOCK_LISTEN 192.0.2.1:0 cannot be listened on: no interface of this machine has that address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := listenFailing(t, tc.route, tc.admin)
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Listen = %q, want %q", err, tc.want)
			}
			if srv.Addr("stock") != "" || srv.AdminAddr() != "" {
				t.Error("a listener stayed open")
			}
		})
	}
}

// listenFailing is the Server of a stock route on routeListen and an admin
// listener on adminListen, and the error of its Listen, which the test
// expects to fail.
func listenFailing(t *testing.T, routeListen, adminListen string) (*Server, error) {
	t.Helper()
	rc := testroute.Stock(t, "http://127.0.0.1:1")
	rc.Auth, rc.Listen = config.AuthNone, routeListen
	srv, err := New(&config.Config{AdminListen: adminListen, Routes: []config.Route{*rc}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		return srv, err
	}
	_ = srv.Close()
	t.Fatal("Listen succeeded")
	return nil, nil
}

// busyAddr is a loopback address something listens on until the test ends.
func busyAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// Every port in use is named at once, one line each: told of one, fixed,
// then told of the next was how an operator met them.
func TestServer_ListenNamesEveryPortInUseAtOnce(t *testing.T) {
	busy := [2]string{busyAddr(t), busyAddr(t)}
	_, err := listenFailing(t, busy[0], busy[1])
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "IMSPROXY_STOCK_LISTEN "+busy[0]+" is in use") ||
		!strings.HasPrefix(lines[1], "IMSPROXY_ADMIN_LISTEN "+busy[1]+" is in use") {
		t.Errorf("Listen = %q, want a line for each of the two ports", err)
	}
}

// A route listening off loopback is a warning at start, naming the route
// and the address, with a callers file or without.
func TestServer_WarnsAboutARouteOffLoopback(t *testing.T) {
	callersFile := filepath.Join(t.TempDir(), "callers.json")
	testutil.WriteFile(t, callersFile, "[]")
	for _, tc := range []struct {
		name, callers, want string
	}{
		{"without a callers file", "", "route listens off loopback with no IMSPROXY_CALLERS_FILE"},
		{"with a callers file", callersFile, "route listens off loopback: whoever reaches the address and holds a caller key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remote, local := testroute.Stock(t, "http://127.0.0.1:1"), testroute.Stock(t, "http://127.0.0.1:1")
			remote.Auth, remote.Listen = config.AuthNone, "0.0.0.0:8080"
			local.Name, local.Auth, local.Listen = "local", config.AuthNone, "127.0.0.1:8081"
			logs := &testutil.Buffer{}
			cfg := &config.Config{AdminListen: "127.0.0.1:0", CallersFile: tc.callers, AllowRemote: tc.callers == "",
				Routes: []config.Route{*remote, *local}}
			if _, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			var warned []string
			for _, l := range lines {
				if strings.Contains(l, "off loopback") {
					warned = append(warned, l)
				}
			}
			if len(warned) != 1 || !strings.Contains(warned[0], "level=WARN") || !strings.Contains(warned[0], tc.want) ||
				!strings.Contains(warned[0], "route=stock") || !strings.Contains(warned[0], "listen=0.0.0.0:8080") {
				t.Errorf("warnings %q, want one for route stock on 0.0.0.0:8080 saying %q", warned, tc.want)
			}
		})
	}
}
