package proxy

import (
	"net/http"
	"sync"
	"testing"
)

// The request path's own bookkeeping allocates nothing once warm: counting
// a request is a lookup in resolved counters, and a request id is one
// string.
func TestHotPath_Allocations(t *testing.T) {
	m := NewMetrics()
	m.countRequest("stock", http.MethodGet, 200, "HIT") // resolves the counter
	cases := []struct {
		name string
		max  float64
		f    func()
	}{
		{"countRequest", 0, func() { m.countRequest("stock", http.MethodGet, 200, "HIT") }},
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
	m.countRequest("stock", "PROPFIND", 499, "STALE")
	m.countRequest("stock", "PROPFIND", 499, "STALE")
	m.countRequest("aem", http.MethodDelete, 999, "")
	want := map[string]float64{
		"aem DELETE other none": 1,
		"stock OTHER 4xx stale": 2,
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "imsproxy_requests_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["route"]+" "+l["method"]+" "+l["code"]+" "+l["cache"]] = s.GetCounter().GetValue()
		}
	}
	if len(got) != len(want) {
		t.Fatalf("series = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// Requests counted at once from many goroutines, on routes and cells seen
// for the first time, are all counted.
func TestCountRequest_Concurrent(t *testing.T) {
	m := NewMetrics()
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				m.countRequest([]string{"a", "b"}[(g+i)%2], http.MethodGet, 200+100*(i%3), "")
			}
		})
	}
	wg.Wait()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() == "imsproxy_requests_total" {
			for _, s := range f.GetMetric() {
				total += s.GetCounter().GetValue()
			}
		}
	}
	if total != goroutines*each {
		t.Fatalf("counted %v requests, want %d", total, goroutines*each)
	}
}
