package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/internal/version"
	"github.com/imsproxy/imsproxy/tokens"
)

// Counting a request allocates nothing once warm: it is a lookup in
// resolved counters.
func TestRequestCounter_CountAllocatesNothing(t *testing.T) {
	stock := New().Requests("stock")
	stock.Count(http.MethodGet, 200, "HIT", time.Millisecond) // resolves the counter
	if got := testing.AllocsPerRun(1000, func() { stock.Count(http.MethodGet, 200, "HIT", time.Millisecond) }); got > 0 {
		t.Errorf("%v allocations per count, want none", got)
	}
}

func TestCountRequest_Labels(t *testing.T) {
	m := New()
	stock, aem := m.Requests("stock"), m.Requests("aem")
	stock.Count("PROPFIND", 499, "STALE", time.Millisecond)
	stock.Count("PROPFIND", 499, "STALE", time.Millisecond)
	aem.Count(http.MethodDelete, 999, "", time.Millisecond)
	want := map[string]float64{
		"none other DELETE aem": 1,
		"stale 4xx OTHER stock": 2,
	}
	got := testutil.Samples(t, m.Handler(), "imsproxy_requests_total")
	if len(got) != len(want) {
		t.Fatalf("series = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// Requests counted at once from many goroutines, on cells resolved by the
// first of them, are all counted.
func TestCountRequest_Concurrent(t *testing.T) {
	m := New()
	const goroutines, each = 8, 500
	routes := []*RequestCounter{m.Requests("a"), m.Requests("b")}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				routes[(g+i)%2].Count(http.MethodGet, 200+100*(i%3), "", time.Millisecond)
			}
		})
	}
	wg.Wait()
	var total float64
	for _, v := range testutil.Samples(t, m.Handler(), "imsproxy_requests_total") {
		total += v
	}
	if total != goroutines*each {
		t.Fatalf("counted %v requests, want %d", total, goroutines*each)
	}
}

// Each request's duration lands in the histogram of its route and status
// class, in the bucket of its duration.
func TestCount_ObservesTheDurationByRouteAndStatusClass(t *testing.T) {
	m := New()
	stock, aem := m.Requests("stock"), m.Requests("aem")
	stock.Count(http.MethodGet, 200, "MISS", 3*time.Millisecond)
	stock.Count(http.MethodGet, 204, "", 40*time.Millisecond)
	stock.Count(http.MethodPost, 503, "", 2*time.Second)
	aem.Count(http.MethodGet, 404, "", time.Millisecond/2)

	fams := testutil.Families(t, m.Handler())
	fam, ok := fams["imsproxy_request_duration_seconds"]
	if !ok {
		t.Fatal("no imsproxy_request_duration_seconds")
	}
	type want struct {
		count    uint64
		sum      float64
		under5ms uint64 // observations in the buckets up to 5 ms
	}
	wants := map[string]want{
		"2xx stock": {2, 0.043, 1},
		"5xx stock": {1, 2, 0},
		"4xx aem":   {1, 0.0005, 1},
	}
	if len(fam.GetMetric()) != len(wants) {
		t.Errorf("%d series, want %d", len(fam.GetMetric()), len(wants))
	}
	for _, s := range fam.GetMetric() {
		var labels []string
		for _, l := range s.GetLabel() {
			labels = append(labels, l.GetValue())
		}
		key := labels[0] + " " + labels[1]
		w, ok := wants[key]
		h := s.GetHistogram()
		if !ok {
			t.Errorf("unexpected series %s", key)
			continue
		}
		var under5ms uint64
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 0.005 {
				under5ms = b.GetCumulativeCount()
			}
		}
		if h.GetSampleCount() != w.count || h.GetSampleSum() < w.sum-1e-9 || h.GetSampleSum() > w.sum+1e-9 || under5ms != w.under5ms {
			t.Errorf("%s: count %d, sum %v, ≤5ms %d; want %+v", key, h.GetSampleCount(), h.GetSampleSum(), under5ms, w)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	fams := testutil.Families(t, New().Handler())
	fam, ok := fams["imsproxy_build_info"]
	if !ok || len(fam.GetMetric()) != 1 {
		t.Fatalf("imsproxy_build_info: %v", fam)
	}
	s := fam.GetMetric()[0]
	labels := map[string]string{}
	for _, l := range s.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	v := version.Get()
	if s.GetGauge().GetValue() != 1 || labels["version"] != v.Version || labels["revision"] != v.Revision ||
		labels["goversion"] != runtime.Version() || len(labels) != 3 {
		t.Errorf("imsproxy_build_info %v = %v, want version %q, revision %q, goversion %q = 1",
			labels, s.GetGauge().GetValue(), v.Version, v.Revision, runtime.Version())
	}
}

// The token gauge is the seconds left, 0 without a valid token, and
// absent for a valid token of unknown expiry: a fixed opaque token must
// not look like a missing one.
func TestWatchTokens(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	m := New()
	m.WatchTokens("jwt", func() tokens.Status { return tokens.Status{Ready: true, Expiry: now.Add(time.Hour)} }, func() time.Time { return now })
	m.WatchTokens("failing", func() tokens.Status { return tokens.Status{LastError: "invalid_client"} }, func() time.Time { return now })
	m.WatchTokens("opaque", func() tokens.Status { return tokens.Status{Kind: "token", Ready: true} }, func() time.Time { return now })
	got := testutil.Samples(t, m.Handler(), "imsproxy_token_expiry_seconds")
	if len(got) != 2 || got["jwt"] != 3600 || got["failing"] != 0 {
		t.Errorf("samples %v, want jwt = 3600, failing = 0 and nothing for opaque", got)
	}
	if _, ok := got["opaque"]; ok {
		t.Error("a sample for the token of unknown expiry")
	}
}
