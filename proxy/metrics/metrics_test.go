package metrics

import (
	"net/http"
	"sync"
	"testing"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

// Counting a request allocates nothing once warm: it is a lookup in
// resolved counters.
func TestRequestCounter_CountAllocatesNothing(t *testing.T) {
	stock := New().Requests("stock")
	stock.Count(http.MethodGet, 200, "HIT") // resolves the counter
	if got := testing.AllocsPerRun(1000, func() { stock.Count(http.MethodGet, 200, "HIT") }); got > 0 {
		t.Errorf("%v allocations per count, want none", got)
	}
}

func TestCountRequest_Labels(t *testing.T) {
	m := New()
	stock, aem := m.Requests("stock"), m.Requests("aem")
	stock.Count("PROPFIND", 499, "STALE")
	stock.Count("PROPFIND", 499, "STALE")
	aem.Count(http.MethodDelete, 999, "")
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
				routes[(g+i)%2].Count(http.MethodGet, 200+100*(i%3), "")
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
