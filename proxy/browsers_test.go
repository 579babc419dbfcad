package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// A web page can make a browser send requests to a proxy on the user's
// machine (an <img>, a form, fetch); the browser says so in
// Sec-Fetch-Site and Origin. Such requests never reach the upstream,
// unless the origin is allowed.
func TestRoute_RefusesBrowserRequestsFromOtherSites(t *testing.T) {
	up := &testutil.Upstream{}
	front := guardedRoute(t, up, RouteOptions{Origins: []string{"https://app.example.com"}}, nil)
	tests := []struct {
		name    string
		headers []string
		status  int
	}{
		{"an <img> on another site", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"}, 403},
		{"a page of a sibling site", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"a form posted from another origin", []string{"Origin", "https://evil.example"}, 403},
		{"a sandboxed frame", []string{"Origin", "null"}, 403},
		{"two origins", []string{"Origin", "https://app.example.com", "Origin", "https://evil.example"}, 403},
		{"an allowed origin", []string{"Origin", "https://app.example.com", "Sec-Fetch-Site", "cross-site"}, 200},
		{"an allowed origin in another case", []string{"Origin", "https://APP.example.com"}, 200},
		{"typed in the address bar", []string{"Sec-Fetch-Site", "none"}, 200},
		{"same origin, without Origin", []string{"Sec-Fetch-Site", "same-origin"}, 200},
		{"not a browser", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.All())
			req, _ := http.NewRequest("GET", front.URL+"/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat", nil)
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header.Add(tt.headers[i], tt.headers[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.status == 200 {
				resp.Body.Close()
				if resp.StatusCode != 200 || len(up.All()) != before+1 {
					t.Fatalf("status %d, %d requests upstream: want the request forwarded", resp.StatusCode, len(up.All())-before)
				}
				return
			}
			decodeProxyError(t, resp, 403, route.CodeCrossSiteRequest)
			if len(up.All()) != before {
				t.Fatal("a refused browser request reached the upstream")
			}
		})
	}
}

// Without a callers file, a loopback listener has nothing but Host to tell
// a local program from a page whose name an attacker's DNS turned into
// 127.0.0.1 (DNS rebinding): Host must name this machine.
func TestRoute_LoopbackListenerAnswersOnlyLocalNames(t *testing.T) {
	up := &testutil.Upstream{}
	front := guardedRoute(t, up, RouteOptions{Hosts: []string{"dev.example.test", "[::2]"}}, nil)
	addr := strings.TrimPrefix(front.URL, "http://")
	for host, want := range map[string]string{
		"127.0.0.1:8080":               "HTTP/1.1 200",
		"127.0.0.1":                    "HTTP/1.1 200",
		"127.1.2.3:80":                 "HTTP/1.1 200",
		"localhost:8080":               "HTTP/1.1 200",
		"LOCALHOST":                    "HTTP/1.1 200",
		"[::1]:8080":                   "HTTP/1.1 200",
		"[::1]":                        "HTTP/1.1 200",
		"dev.example.test:8080":        "HTTP/1.1 200", // IMSPROXY_ALLOWED_HOSTS
		"DEV.example.test":             "HTTP/1.1 200",
		"[::2]:1":                      "HTTP/1.1 200",
		"rebind.attacker.example:8080": "HTTP/1.1 403",
		"localhost.attacker.example":   "HTTP/1.1 403",
		"127.0.0.1.nip.io":             "HTTP/1.1 403",
		"10.0.0.1":                     "HTTP/1.1 403",
		"[::ffff:10.0.0.1]":            "HTTP/1.1 403",
		"localhost:http":               "HTTP/1.1 403",
		"localhost.":                   "HTTP/1.1 403",
		"":                             "HTTP/1.1 200", // no browser sends an empty Host
	} {
		before := len(up.All())
		got := rawRequest(t, addr, "GET /Rest/Media/1/Search/Files HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(got, want) {
			t.Errorf("Host %q: %q, want %s", host, got, want)
		}
		if reached := len(up.All()) > before; reached != (want == "HTTP/1.1 200") {
			t.Errorf("Host %q: reached the upstream: %v", host, reached)
		}
	}
}

// With a callers file a key tells callers apart: Host is not checked.
// Without one it is on every listener; off loopback the machine's
// addresses are accepted too (a rebinding page sends a name, a kubelet's
// probe the pod's address).
func TestRoute_HostIsCheckedWithoutCallersFile(t *testing.T) {
	callers, _ := loadTestCallers(t, testutil.CallersJSON(testutil.Caller{Name: "app", Key: "app-key", Routes: []string{"stock"}}))
	for name, opts := range map[string]struct {
		callers bool
		listen  string
		host    string
		want    string
	}{
		"callers file":                {true, "127.0.0.1:0", "proxy.corp.example", "HTTP/1.1 200"},
		"callers, wildcard":           {true, "[::]:0", "proxy.corp.example", "HTTP/1.1 200"},
		"non-loopback, name":          {false, "0.0.0.0:0", "proxy.corp.example", "HTTP/1.1 403"},
		"non-loopback, listed name":   {false, "0.0.0.0:0", "imsproxy.apps.svc:8080", "HTTP/1.1 200"},
		"non-loopback, address":       {false, "0.0.0.0:0", "10.1.2.3:8080", "HTTP/1.1 200"},
		"non-loopback, loopback name": {false, "0.0.0.0:0", "localhost:8080", "HTTP/1.1 200"},
		"named loopback":              {false, "localhost:0", "proxy.corp.example", "HTTP/1.1 403"},
		"loopback, no guard":          {false, "127.0.0.1:0", "proxy.corp.example", "HTTP/1.1 403"},
		"loopback, address":           {false, "127.0.0.1:0", "10.1.2.3", "HTTP/1.1 403"},
		"listener's own name":         {false, "Proxy.Corp.Example:0", "proxy.corp.example:8080", "HTTP/1.1 200"},
		"non-loopback, HTTP/1.0":      {false, "0.0.0.0:0", "", "HTTP/1.0 200"}, // a load balancer's check, no Host
	} {
		t.Run(name, func(t *testing.T) {
			up := &testutil.Upstream{}
			ro := RouteOptions{Hosts: []string{"imsproxy.apps.svc"}}
			if opts.callers {
				ro.Callers = callers
			}
			front := guardedRoute(t, up, ro, func(rc *config.Route) { rc.Listen = opts.listen })
			addr := strings.TrimPrefix(front.URL, "http://")
			req := "GET /x HTTP/1.1\r\nHost: " + opts.host + "\r\nX-Api-Key: app-key\r\nConnection: close\r\n\r\n"
			if opts.host == "" {
				req = "GET /x HTTP/1.0\r\nX-Api-Key: app-key\r\n\r\n"
			}
			got := rawRequest(t, addr, req)
			if !strings.HasPrefix(got, opts.want) {
				t.Errorf("%q, want %s", got, opts.want)
			}
			if reached := len(up.All()) > 0; reached != strings.HasSuffix(opts.want, " 200") {
				t.Errorf("reached the upstream: %v", reached)
			}
		})
	}
}

// TRACE and TRACK would have an upstream that echoes its request (Apache's
// default, TraceEnable On) send back the route's bearer token.
func TestRoute_RefusesTraceAndTrack(t *testing.T) {
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "message/http")
		_ = r.Write(w) // what Apache answers a TRACE with
	}}
	for _, typ := range []config.RouteType{config.TypeStock, config.TypeAEM, config.TypeGeneric} {
		front := guardedRoute(t, up, RouteOptions{}, func(rc *config.Route) { rc.Type = typ; rc.Name = string(typ) })
		for _, method := range []string{"TRACE", "TRACK", "trace"} {
			req, _ := http.NewRequest(method, front.URL+"/api/assets.json", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 405 || resp.Header.Get(route.ErrorHeader) != route.CodeMethodNotAllowed || resp.Header.Get("Allow") == "" {
				t.Errorf("%s %s: %d %s %q", typ, method, resp.StatusCode, resp.Header.Get(route.ErrorHeader), body)
			}
			if strings.Contains(string(body), routeToken) {
				t.Fatalf("%s %s: the answer carries the route's token", typ, method)
			}
		}
	}
	if n := len(up.All()); n != 0 {
		t.Fatalf("%d TRACE or TRACK requests reached the upstream", n)
	}
}

// The admin listener takes no cross-site request (a page posting to
// /cache/purge) and, on loopback, only local names.
func TestAdmin_RefusesBrowsersFromOtherSites(t *testing.T) {
	stock := newCacheFixture(t, nil, nil)
	s := &Server{cfg: &config.Config{AdminListen: "127.0.0.1:9090", AllowedOrigins: []string{"https://ops.example.com"}},
		metrics: metrics.New(), routes: []*routeState{stock.state()}, log: slog.New(slog.DiscardHandler)}
	admin := httptest.NewServer(s.adminHandler())
	t.Cleanup(admin.Close)
	stock.get(searchPath)
	tests := []struct {
		name, method, path string
		headers            []string
		status             int
		code               string
	}{
		{"cross-site purge", "POST", "/cache/purge?route=stock", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, 403, route.CodeCrossSiteRequest},
		{"form without Origin", "POST", "/cache/purge?route=stock", []string{"Sec-Fetch-Site", "cross-site"}, 403, route.CodeCrossSiteRequest},
		{"rebinding name reads /readyz", "GET", "/readyz", []string{"Host", "rebind.attacker.example:9090"}, 403, route.CodeHostNotAllowed},
		{"allowed origin", "POST", "/cache/purge?route=stock", []string{"Origin", "https://ops.example.com"}, 200, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, admin.URL+tt.path, nil)
		for i := 0; i+1 < len(tt.headers); i += 2 {
			if tt.headers[i] == "Host" {
				req.Host = tt.headers[i+1]
			} else {
				req.Header.Set(tt.headers[i], tt.headers[i+1])
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get(route.ErrorHeader) != tt.code {
			t.Errorf("%s: %d %q, want %d %q", tt.name, resp.StatusCode, resp.Header.Get(route.ErrorHeader), tt.status, tt.code)
		}
		if tt.status == 403 && stock.route.cache.Len() != 1 {
			t.Fatalf("%s emptied the cache", tt.name)
		}
	}
}
