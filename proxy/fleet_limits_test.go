package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/redistest"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/fleet"
	"github.com/imsproxy/imsproxy/proxy/inflight"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// Fleet mode under the rules of a single proxy: a license that may have
// been made counts in Redis as it does in the local count, the audit
// stream gets the attempt and outcome records the local log gets, and the
// answers of the cache's shared level are held within
// IMSPROXY_MAX_INFLIGHT_BYTES as the local ones are.

// fleetRouteOf is the fleet's view of the test stock route (its name and
// client id) through a Client of its own on srv.
func fleetRouteOf(t *testing.T, srv *redistest.Server) *fleet.Route {
	t.Helper()
	return fleetClient(t, srv.URL, 500*time.Millisecond).Route(testroute.Stock(t, "http://127.0.0.1:1"))
}

// streamRecords reads the fleet's audit stream (fleetClient's prefix).
func streamRecords(t *testing.T, srv *redistest.Server) []audit.Record {
	t.Helper()
	c, err := fleet.New(&config.Redis{URL: config.Secret(srv.URL), Prefix: "bench", Timeout: time.Second}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	if _, err := c.PrintAudit(context.Background(), time.Unix(0, 0), &b); err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for line := range strings.Lines(b.String()) {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("stream record %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

func TestFleetRoute_LicenseOutcomesCountInRedisAsTheyDoLocally(t *testing.T) {
	tests := []struct {
		name    string
		sold    func(http.ResponseWriter, *http.Request) // the first license's answer; nil: licensed
		status  int
		outcome string
		counted bool
	}{
		{name: "licensed", status: 200, outcome: audit.OutcomeLicensed, counted: true},
		{name: "Stock answers 503", sold: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) },
			status: 503, outcome: audit.OutcomeUnknown, counted: true},
		{name: "Stock refuses", sold: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, `{"code":"10"}`, 400) },
			status: 400, outcome: audit.OutcomeFailed, counted: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			stock := faultyOnce(tt.sold)
			lr := newLicensingRoute(t, stock, RouteOptions{Fleet: fleetRouteOf(t, srv)}, func(rc *config.Route) { rc.LicenseDailyLimit = 1 })
			resp := lr.get(t, licenseTarget, allowEditorialHeader, "true")
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			recs := streamRecords(t, srv)
			if len(recs) != 2 || recs[0].Outcome != audit.OutcomeAttempt || recs[1].Outcome != tt.outcome ||
				recs[0].Attempt == "" || recs[0].Attempt != recs[1].Attempt {
				t.Fatalf("audit stream %+v, want the attempt then %s, paired", recs, tt.outcome)
			}
			if local := lr.auditLines(t); len(local) != 1 || local[0].Attempt != recs[1].Attempt {
				t.Errorf("local audit %+v, stream %+v: not the same license", local, recs)
			}
			resp = lr.get(t, "/Rest/Libraries/1/Content/License?content_id=2&license=Standard", allowEditorialHeader, "true")
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusTooManyRequests; got != tt.counted {
				t.Fatalf("the next license answered %d: the first counted %v, want %v", resp.StatusCode, got, tt.counted)
			}
		})
	}
}

// While a license is on its way, its reservation in Redis carries the
// attempt's record, its attempt line's id included: a replica that dies
// then is audited with what it was licensing, paired with that line.
func TestFleetRoute_AReservationCarriesTheAttempt(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	opts, _ := redis.ParseURL(srv.URL)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	var members []string
	var stock *fakeStock
	stock = faultyOnce(func(w http.ResponseWriter, r *http.Request) {
		keys, _ := rdb.Keys(r.Context(), "bench:*:held").Result()
		for _, k := range keys {
			m, _ := rdb.ZRange(r.Context(), k, 0, -1).Result()
			members = append(members, m...)
		}
		stock.answerLicense(w, r)
	})
	lr := newLicensingRoute(t, stock, RouteOptions{Fleet: fleetRouteOf(t, srv)}, func(rc *config.Route) { rc.LicenseDailyLimit = 5 })
	resp := lr.get(t, licenseTarget, allowEditorialHeader, "true")
	resp.Body.Close()
	recs := streamRecords(t, srv)
	if len(recs) != 2 || recs[0].Attempt == "" || len(members) != 1 {
		t.Fatalf("audit stream %+v, reservations held while Stock answered %q", recs, members)
	}
	_, record, ok := strings.Cut(members[0], " j ")
	var held audit.Record
	if !ok || json.Unmarshal([]byte(record), &held) != nil {
		t.Fatalf("reservation %q carries no record", members[0])
	}
	if held.Attempt != recs[0].Attempt || held.ContentID != "1" || held.License != "Standard" || held.RequestID != recs[0].RequestID {
		t.Errorf("reservation %+v, attempt line %+v: not the same license", held, recs[0])
	}
}

// Without IMSPROXY_AUDIT_LOG the fleet's stream is the audit log: a
// license whose attempt record Redis cannot take is not requested.
func TestFleetRoute_WithoutALocalLogTheAuditStreamFailsClosed(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	stock := &fakeStock{}
	front := guardedRoute(t, stock, RouteOptions{Fleet: fleetRouteOf(t, srv), Metrics: metrics.New()}, func(rc *config.Route) {
		rc.AllowLicense = true
	})
	lr := &licensingRoute{front: front, stock: stock}
	if resp := lr.get(t, licenseTarget, allowEditorialHeader, "true"); resp.StatusCode != 200 {
		t.Fatalf("status %d with Redis up", resp.StatusCode)
	}
	if recs := streamRecords(t, srv); len(recs) != 2 || recs[0].Outcome != audit.OutcomeAttempt || recs[1].Outcome != audit.OutcomeLicensed {
		t.Fatalf("audit stream %+v, want the attempt and the license", recs)
	}
	srv.Kill()
	body := decodeProxyError(t, lr.get(t, licenseTarget, allowEditorialHeader, "true"), 503, route.CodeAuditUnavailable)
	if !strings.Contains(body.Message, "Redis") {
		t.Errorf("message %q does not say where the line could not be written", body.Message)
	}
	if n := stock.licenses.Load(); n != 1 {
		t.Fatalf("Stock sold %d licenses, want only the one audited", n)
	}
}

// slowCaller is a caller that does not read: its Write blocks until the
// test lets it go.
type slowCaller struct {
	h       http.Header
	status  int
	writing chan struct{} // closed on the first Write
	release chan struct{}
	once    sync.Once
}

func newSlowCaller() *slowCaller {
	return &slowCaller{h: http.Header{}, writing: make(chan struct{}), release: make(chan struct{})}
}

func (w *slowCaller) Header() http.Header  { return w.h }
func (w *slowCaller) WriteHeader(code int) { w.status = code }
func (w *slowCaller) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.writing) })
	<-w.release
	return len(p), nil
}

// limitedReplica is one replica's stock route in fleet mode, its memory
// bounded by lim.
func limitedReplica(t *testing.T, srv *redistest.Server, upstream string, lim *inflight.Limiter) *testRoute {
	t.Helper()
	rc := testroute.Stock(t, upstream)
	rc.Cache = config.Cache{Size: 16, TTL: time.Hour, MaxBytes: 64 << 20, StaleIfError: time.Hour}
	return NewRoute(rc, tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{}), RouteOptions{
		Metrics: metrics.New(), Fleet: fleetClient(t, srv.URL, 500*time.Millisecond).Route(rc), Inflight: lim})
}

func TestFleetRoute_SharedLevelAnswersAreHeldWithinTheMemoryLimit(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var upstreamCalls atomic.Int64
	body := searchAnswer(64 << 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		upstreamCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(up.Close)
	upstream := up.URL

	limA := inflight.New(16 << 20)
	a := limitedReplica(t, srv, upstream, limA)
	serve := func(rt *testRoute) string {
		w := &discardWriter{h: http.Header{}}
		rt.ServeHTTP(w, searchRequest(0))
		if w.status != 200 {
			t.Fatalf("status %d", w.status)
		}
		return w.h.Get("X-Cache")
	}
	if got := serve(a); got != "MISS" {
		t.Fatalf("first search X-Cache %s", got)
	}
	// The copy handed to Redis is counted until Redis has it.
	testutil.WaitFor(t, "the store's copy to be given back", func() bool { return limA.Used() == 0 })

	limB := inflight.New(16 << 20)
	b := limitedReplica(t, srv, upstream, limB)
	testutil.WaitFor(t, "the answer to reach Redis", func() bool {
		if serve(b) == "HIT" {
			return true
		}
		b.cache.PurgeLocal("test") // a miss was stored locally: ask Redis again
		return false
	})
	if n := upstreamCalls.Load(); n != 1 {
		t.Fatalf("%d upstream calls, want the first replica's alone", n)
	}
	if limB.Used() != 0 {
		t.Fatalf("%d bytes counted for an answer the cache holds", limB.Used())
	}

	// A caller that does not read holds an answer from Redis; once the
	// local level lets it go, it counts toward the limit until written.
	limC := inflight.New(16 << 20)
	c := limitedReplica(t, srv, upstream, limC)
	slow := newSlowCaller()
	done := make(chan struct{})
	go func() { defer close(done); c.ServeHTTP(slow, searchRequest(0)) }()
	<-slow.writing
	if slow.h.Get("X-Cache") != "HIT" {
		t.Fatalf("X-Cache %s, want a hit from Redis", slow.h.Get("X-Cache"))
	}
	c.cache.PurgeLocal("test")
	if used := limC.Used(); used < int64(len(body)) {
		t.Fatalf("%d bytes counted for a %d-byte answer from Redis still being written", used, len(body))
	}
	close(slow.release)
	<-done
	if limC.Used() != 0 {
		t.Fatalf("%d bytes still counted after the write", limC.Used())
	}

	// With no room left, an answer from Redis is not taken: the search is
	// streamed from the upstream without being stored.
	limD := inflight.New(16 << 20)
	d := limitedReplica(t, srv, upstream, limD)
	limD.Charge(16 << 20)
	if got := serve(d); got != "MISS" {
		t.Fatalf("X-Cache %s with no memory left, want MISS", got)
	}
	if n := upstreamCalls.Load(); n != 2 {
		t.Fatalf("%d upstream calls, want one more", n)
	}
	limD.Release(16 << 20)
	if limD.Used() != 0 {
		t.Fatalf("%d bytes counted after the search", limD.Used())
	}
}
