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

func TestPlainHost(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:8081": true, "localhost": true, "aem-proxy.svc.cluster.local:80": true, "[::1]:8081": true,
		"[::1]": true, "": false, "host:": false, "host:123456": false, "::1": false, "[fe80::1%eth0]:80": false,
		"a/b": false, `a"b`: false, "a b": false, "user@host": false, "[::1]x:80": false, "[127.0.0.1]:80": false,
	}
	for in, want := range cases {
		if got := plainHost(in); got != want {
			t.Errorf("plainHost(%q) = %v, want %v", in, got, want)
		}
	}
}
