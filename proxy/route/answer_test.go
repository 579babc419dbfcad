package route

import "testing"

func TestAcceptsGzip(t *testing.T) {
	cases := map[string]bool{
		"":                       false,
		"gzip":                   true,
		"GZIP":                   true,
		"x-gzip":                 true,
		"deflate, gzip;q=0.5":    true,
		"br":                     false,
		"gzip;q=0":               false,
		"gzip; q=0.000":          false,
		"*":                      true,
		"*;q=0":                  false,
		"*, gzip;q=0":            false,
		"identity":               false,
		"br;q=1.0, gzip;q=0.8 ,": true,
	}
	for v, want := range cases {
		var values []string
		if v != "" {
			values = []string{v}
		}
		if got := AcceptsGzip(values); got != want {
			t.Errorf("Accept-Encoding %q: acceptsGzip = %v, want %v", v, got, want)
		}
	}
}

// A request id is one allocation, the string.
func TestRequestID_OneAllocation(t *testing.T) {
	if got := testing.AllocsPerRun(1000, func() { _ = requestIDs.New() }); got > 1 {
		t.Errorf("%v allocations per id, want at most 1", got)
	}
}
