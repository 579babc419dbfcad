package proxy

import (
	"net/http"
	"strings"
	"sync"
	"testing"
)

// The request path's own bookkeeping allocates nothing once warm: counting
// a request is a lookup in resolved counters, and a request id is one
// string.
func TestHotPath_Allocations(t *testing.T) {
	m := NewMetrics()
	stock := m.requestCounter("stock")
	stock.count(http.MethodGet, 200, "HIT") // resolves the counter
	cases := []struct {
		name string
		max  float64
		f    func()
	}{
		{"count", 0, func() { stock.count(http.MethodGet, 200, "HIT") }},
		{"requestID", 1, func() { _ = requestIDs.New() }},
	}
	for _, c := range cases {
		if got := testing.AllocsPerRun(1000, c.f); got > c.max {
			t.Errorf("%s: %v allocations per call, want at most %v", c.name, got, c.max)
		}
	}
}

func TestCountRequest_Labels(t *testing.T) {
	m := NewMetrics()
	stock, aem := m.requestCounter("stock"), m.requestCounter("aem")
	stock.count("PROPFIND", 499, "STALE")
	stock.count("PROPFIND", 499, "STALE")
	aem.count(http.MethodDelete, 999, "")
	want := map[string]float64{
		"none other DELETE aem": 1,
		"stale 4xx OTHER stock": 2,
	}
	got := samples(t, m, "imsproxy_requests_total")
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
	m := NewMetrics()
	const goroutines, each = 8, 500
	routes := []*requestCounter{m.requestCounter("a"), m.requestCounter("b")}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				routes[(g+i)%2].count(http.MethodGet, 200+100*(i%3), "")
			}
		})
	}
	wg.Wait()
	var total float64
	for _, v := range samples(t, m, "imsproxy_requests_total") {
		total += v
	}
	if total != goroutines*each {
		t.Fatalf("counted %v requests, want %d", total, goroutines*each)
	}
}

// samples gathers the values of metric name (a counter or a gauge), keyed
// by its label values in the order of the label names, space-separated.
func samples(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			var values []string
			for _, l := range s.GetLabel() {
				values = append(values, l.GetValue())
			}
			out[strings.Join(values, " ")] = s.GetCounter().GetValue() + s.GetGauge().GetValue()
		}
	}
	return out
}
