package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// fakeIMS answers /ims/token/v3 with tokens ims-1, ims-2, ... of a set
// lifetime and remembers when each expires, so an upstream can tell an
// expired token from a valid one exactly as Adobe would.
type fakeIMS struct {
	lifetime time.Duration
	calls    atomic.Int64
	down     atomic.Bool
	hold     chan struct{} // when non-nil, answers wait for it

	mu      sync.Mutex
	expires map[string]time.Time
}

func newFakeIMS(t *testing.T, lifetime time.Duration) (*fakeIMS, *httptest.Server) {
	ims := &fakeIMS{lifetime: lifetime, expires: make(map[string]time.Time)}
	srv := httptest.NewServer(ims)
	t.Cleanup(srv.Close)
	return ims, srv
}

func (f *fakeIMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.calls.Add(1)
	if f.hold != nil {
		<-f.hold
	}
	if r.URL.Path != "/ims/token/v3" || r.FormValue("grant_type") != "client_credentials" || r.FormValue("client_secret") != "s3cret-value" {
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"error":"invalid_request"}`)
		return
	}
	if f.down.Load() {
		w.WriteHeader(500)
		_, _ = io.WriteString(w, `{"error":"internal_error","error_description":"Please try again later"}`)
		return
	}
	tok := "ims-" + strconv.FormatInt(n, 10)
	f.mu.Lock()
	f.expires[tok] = time.Now().Add(f.lifetime)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":%d}`, tok, int(f.lifetime/time.Second))
}

// valid reports whether the bearer token in h is one IMS issued and has not
// expired.
func (f *fakeIMS) valid(h http.Header) bool {
	tok, ok := cutBearer(h.Get("Authorization"))
	f.mu.Lock()
	exp, known := f.expires[tok]
	f.mu.Unlock()
	return ok && known && time.Now().Before(exp)
}

func cutBearer(v string) (string, bool) {
	const p = "Bearer "
	if len(v) > len(p) && v[:len(p)] == p {
		return v[len(p):], true
	}
	return "", false
}

// strictUpstream answers 401 to any request without a valid token, and
// counts those: the test fails if one ever arrives.
func strictUpstream(ims *fakeIMS, rejected *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ims.valid(r.Header) {
			rejected.Add(1)
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
}

// oauthRoute is a route config with OAuth credentials against ims.
func oauthRoute(t *testing.T, upstream, ims string) *config.Route {
	rc := testroute.Stock(t, upstream)
	rc.IMSURL = ims
	rc.Credentials.ClientSecret = config.Secret("s3cret-value")
	rc.Credentials.Scopes = []string{"openid"}
	return rc
}

// startRoute serves rc through a real OAuth source and Manager; wrap, when
// set, sits in front of the route.
func startRoute(t *testing.T, rc *config.Route, opts tokens.Options, wrap func(http.Handler) http.Handler) (*httptest.Server, *tokens.Manager) {
	t.Helper()
	src, err := tokens.NewSource(rc, &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opts.Kind = "oauth"
	mgr := tokens.NewManager(rc.Name, src, opts)
	var h http.Handler = NewRoute(rc, mgr, RouteOptions{})
	if wrap != nil {
		h = wrap(h)
	}
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	return front, mgr
}

// runManager runs mgr's refresh loop for the rest of the test.
func runManager(t *testing.T, mgr *tokens.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); mgr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func get(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestProxy_ColdStartConcurrentRequestsShareOneExchange(t *testing.T) {
	const callers = 300
	ims, imsSrv := newFakeIMS(t, time.Hour)
	allArrived := make(chan struct{})
	ims.hold = allArrived // IMS answers only once every request is waiting
	var rejected atomic.Int64
	up := httptest.NewServer(strictUpstream(ims, &rejected))
	t.Cleanup(up.Close)

	var arrived atomic.Int64
	front, _ := startRoute(t, oauthRoute(t, up.URL, imsSrv.URL), tokens.Options{}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if arrived.Add(1) == callers {
				close(allArrived)
			}
			h.ServeHTTP(w, r)
		})
	})

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers}}
	t.Cleanup(client.CloseIdleConnections)
	var wg sync.WaitGroup
	statuses := make(chan int, callers)
	for range callers {
		wg.Go(func() {
			resp, err := client.Get(front.URL + "/Rest/Media/1/Search/Files?search_parameters[words]=cat")
			if err != nil {
				statuses <- -1
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Fatalf("a request got %d", s)
		}
	}
	if got := ims.calls.Load(); got != 1 {
		t.Fatalf("IMS exchanges = %d, want exactly 1", got)
	}

	// Warm: many more requests, no exchange on the request path.
	for range 200 {
		if s := get(t, front.URL+"/x"); s != 200 {
			t.Fatalf("warm request got %d", s)
		}
	}
	if got := ims.calls.Load(); got != 1 {
		t.Fatalf("IMS exchanges after 200 warm requests = %d, want 1", got)
	}
}

func TestProxy_ShortTokensRefreshedAheadNeverSentExpired(t *testing.T) {
	ims, imsSrv := newFakeIMS(t, 3*time.Second)
	var rejected atomic.Int64
	up := httptest.NewServer(strictUpstream(ims, &rejected))
	t.Cleanup(up.Close)
	front, mgr := startRoute(t, oauthRoute(t, up.URL, imsSrv.URL), tokens.Options{}, nil)
	runManager(t, mgr)

	// Three token lifetimes of continuous traffic.
	deadline := time.Now().Add(7 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		if s := get(t, front.URL+"/x"); s != 200 {
			t.Fatalf("request %d got %d", n, s)
		}
		n++
	}
	if r := rejected.Load(); r != 0 {
		t.Fatalf("%d requests reached the upstream with an expired token", r)
	}
	// One token at start, then one per 1.5 s of lifetime used.
	if got := ims.calls.Load(); got < 3 || got > 6 {
		t.Fatalf("IMS exchanges = %d over 7 s of 3 s tokens, want 3 to 6", got)
	}
	t.Logf("%d requests, %d exchanges", n, ims.calls.Load())
}

func TestProxy_IMSDownAtStartThen503ThenRecovery(t *testing.T) {
	ims, imsSrv := newFakeIMS(t, time.Hour)
	ims.down.Store(true)
	var rejected atomic.Int64
	up := httptest.NewServer(strictUpstream(ims, &rejected))
	t.Cleanup(up.Close)
	// Retries are not waited for: a full channel must not stop the
	// manager inside an exchange that the request below may join.
	exchanges := make(chan tokens.Exchange, 1)
	opts := tokens.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		OnExchange: func(e tokens.Exchange) {
			select {
			case exchanges <- e:
			default:
			}
		}}
	front, mgr := startRoute(t, oauthRoute(t, up.URL, imsSrv.URL), opts, nil)
	runManager(t, mgr)

	if e := <-exchanges; e.Err == nil {
		t.Fatal("first exchange succeeded while IMS is down")
	}
	resp, err := http.Get(front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body := decodeProxyError(t, resp, 503, route.CodeTokenUnavailable)
	if want := "internal_error"; !strings.Contains(body.Message, want) {
		t.Errorf("message %q lacks the IMS code %q", body.Message, want)
	}

	ims.down.Store(false)
	// The backoff loop retries on its own.
	testutil.WaitFor(t, "a token once IMS is back", func() bool { return mgr.Status().Ready })
	if s := get(t, front.URL+"/x"); s != 200 {
		t.Fatalf("after IMS recovered: status %d", s)
	}
}

func TestProxy_IMSDownWhileTokenValidCausesNoFailures(t *testing.T) {
	ims, imsSrv := newFakeIMS(t, 3*time.Second)
	var rejected atomic.Int64
	up := httptest.NewServer(strictUpstream(ims, &rejected))
	t.Cleanup(up.Close)
	exchanges := make(chan tokens.Exchange, 64)
	opts := tokens.Options{OnExchange: func(e tokens.Exchange) { exchanges <- e }}
	front, mgr := startRoute(t, oauthRoute(t, up.URL, imsSrv.URL), opts, nil)
	runManager(t, mgr)
	first := <-exchanges
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	ims.down.Store(true)
	// Requests until the refresh (due 1.5 s into the token's 3 s) has
	// failed, and some after: all are served with the old token. Ending
	// on that signal rather than after a set time keeps the last request
	// a second away from the token's last usable moment, however slowly
	// the first exchange was reported.
	usableUntil := first.Token.Expiry.Add(-first.Token.Lifetime() / 10)
	failed := false
	for after := 0; after < 20; {
		if time.Now().After(usableUntil) {
			t.Fatalf("the old token's usable time ran out first (refresh failed: %v, requests after: %d): the test proved nothing", failed, after)
		}
		if s := get(t, front.URL+"/x"); s != 200 {
			t.Fatalf("request failed with %d while the old token was still valid (refresh failed: %v)", s, failed)
		}
		if failed {
			after++
			continue
		}
		select {
		case e := <-exchanges:
			failed = e.Err != nil
		default:
		}
	}
}

// startServer runs a full Server (route + admin listener) on free ports.
// It returns the server, a stop (what SIGTERM does) and a wait for Run's
// result.
func startServer(t *testing.T, rc *config.Route, opts Options) (*Server, context.CancelFunc, func() error) {
	t.Helper()
	rc.Listen = "127.0.0.1:0"
	return startConfig(t, &config.Config{AdminListen: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second, Routes: []config.Route{*rc}}, opts)
}

// startConfig is startServer with the whole configuration given.
func startConfig(t *testing.T, cfg *config.Config, opts Options) (*Server, context.CancelFunc, func() error) {
	t.Helper()
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	wait := sync.OnceValue(func() error { return <-done })
	t.Cleanup(func() { cancel(); _ = wait() })
	return srv, cancel, wait
}

// waitReady polls /readyz (the readiness signal operators use) until 200.
func waitReady(t *testing.T, admin string) readiness {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var body readiness
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10 s: %+v", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServer_ReadyzAndHealthz(t *testing.T) {
	ims, imsSrv := newFakeIMS(t, time.Hour)
	var rejected atomic.Int64
	up := httptest.NewServer(strictUpstream(ims, &rejected))
	t.Cleanup(up.Close)
	srv, _, _ := startServer(t, oauthRoute(t, up.URL, imsSrv.URL), Options{})

	if s := get(t, "http://"+srv.AdminAddr()+"/healthz"); s != 200 {
		t.Fatalf("/healthz = %d", s)
	}
	body := waitReady(t, srv.AdminAddr())
	st := body.Routes["stock"]
	if !body.Ready || !st.Ready || st.Kind != "oauth" || st.Expiry.IsZero() || st.ExpiresIn == "" {
		t.Fatalf("/readyz = %+v", body)
	}
	if s := get(t, "http://"+srv.Addr("stock")+"/x"); s != 200 {
		t.Fatalf("route answered %d", s)
	}
}

func TestServer_ReadyzReportsIMSFailure(t *testing.T) {
	ims, imsSrv := newFakeIMS(t, time.Hour)
	ims.down.Store(true)
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	exchanges := make(chan tokens.Exchange, 16)
	srv, _, _ := startServer(t, oauthRoute(t, up.URL, imsSrv.URL), Options{TokenOptions: tokens.Options{
		OnExchange: func(e tokens.Exchange) { exchanges <- e },
	}})
	<-exchanges // the first (failed) exchange is done
	resp, err := http.Get("http://" + srv.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body readiness
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 503 || body.Ready || body.Routes["stock"].LastError == "" {
		t.Fatalf("/readyz = %d %+v, want 503 with the last error", resp.StatusCode, body)
	}
}

func TestServer_ShutdownDrainsInFlightRequests(t *testing.T) {
	_, imsSrv := newFakeIMS(t, time.Hour)
	arrived, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	t.Cleanup(up.Close)
	srv, stop, wait := startServer(t, oauthRoute(t, up.URL, imsSrv.URL), Options{})
	waitReady(t, srv.AdminAddr())
	addr := srv.Addr("stock")

	result := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			result <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-arrived
	stop() // what SIGTERM does in cmd/imsproxy

	// New connections are refused once shutdown has begun.
	refused := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := http.Get("http://" + addr + "/other"); err != nil {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("the listener still accepts after shutdown began")
	}
	close(release)
	if got := <-result; got != "200 finished" {
		t.Fatalf("in-flight request got %q, want it to complete", got)
	}
	if err := wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// Licensing without IMSPROXY_AUDIT_LOG is unaudited on one process, but a
// fleet audits every license to its Redis stream: no warning there.
func TestServer_WarnsOfUnauditedLicensingOnlyOutsideAFleet(t *testing.T) {
	for _, fleet := range []bool{false, true} {
		rc := cachedRoute(t)
		rc.AllowLicense = true
		cfg := &config.Config{ShutdownTimeout: time.Second, Routes: []config.Route{*rc}}
		if fleet {
			// New does no I/O: no Redis needs to listen there.
			cfg.Redis = &config.Redis{URL: config.Secret("redis://127.0.0.1:1"), Prefix: "test", Timeout: time.Second}
		}
		var logs strings.Builder
		srv, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		_ = srv.Close()
		if warned := strings.Contains(logs.String(), "licensing attempts are not audited"); warned == fleet {
			t.Errorf("fleet mode %v: warned of unaudited licensing %v:\n%s", fleet, warned, logs.String())
		}
	}
}
