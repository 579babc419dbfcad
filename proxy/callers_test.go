package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// guardedRoute serves a Route in front of up with the given options.
func guardedRoute(t *testing.T, up http.Handler, opts RouteOptions, mutate func(*config.Route)) *httptest.Server {
	t.Helper()
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	rc := testroute.Stock(t, upstream.URL)
	if mutate != nil {
		mutate(rc)
	}
	var src tokens.TokenSource = staticTokens{}
	if opts.Tokens != nil {
		src = opts.Tokens
	}
	front := httptest.NewServer(NewRoute(rc, src, opts))
	t.Cleanup(front.Close)
	return front
}

// staticTokens hands out route-token forever.
type staticTokens struct{}

const routeToken = "route-token-abc123"

func (staticTokens) Token(context.Context) (tokens.Token, error) {
	return tokens.Token{Value: routeToken, Expiry: time.Now().Add(time.Hour)}, nil
}
func (staticTokens) Invalidate(context.Context, string) bool { return false }

func TestRoute_CallersFile(t *testing.T) {
	callers, _ := loadTestCallers(t, testutil.CallersJSON(
		testutil.Caller{Name: "dam", Key: "dam-key", Routes: []string{"stock"}},
		testutil.Caller{Name: "aem-only", Key: "aem-key", Routes: []string{"aem"}}))
	up := &testutil.Upstream{}
	front := guardedRoute(t, up, RouteOptions{Callers: callers}, nil)

	tests := []struct {
		name    string
		headers []string
		status  int
		code    string
	}{
		{"no key", nil, 401, route.CodeUnauthorizedCaller},
		{"unknown key", []string{"X-Api-Key", "guess"}, 401, route.CodeUnauthorizedCaller},
		{"unknown bearer", []string{"Authorization", "Bearer guess"}, 401, route.CodeUnauthorizedCaller},
		{"key of another route", []string{"X-Api-Key", "aem-key"}, 403, route.CodeForbidden},
		{"x-api-key", []string{"X-Api-Key", "dam-key"}, 200, ""},
		{"bearer", []string{"Authorization", "Bearer dam-key"}, 200, ""},
		{"stale x-api-key, good bearer", []string{"X-Api-Key", "old-adobe-client-id", "Authorization", "Bearer dam-key"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.All())
			req, _ := http.NewRequest("GET", front.URL+"/Rest/Media/1/Search/Files?x=1", nil)
			for i := 0; i < len(tt.headers); i += 2 {
				req.Header.Set(tt.headers[i], tt.headers[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if tt.code == "" {
				resp.Body.Close()
				if resp.StatusCode != tt.status {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
				}
				got := up.All()[before]
				if got.Header.Get("Authorization") != "Bearer "+routeToken || got.Header.Get("X-Api-Key") != "client-id-1" {
					t.Errorf("upstream got Authorization %q, X-Api-Key %q: want the route's", got.Header.Get("Authorization"), got.Header.Get("X-Api-Key"))
				}
				for name, vs := range got.Header {
					if strings.Contains(strings.Join(vs, " "), "dam-key") {
						t.Errorf("the caller key reached the upstream in %s", name)
					}
				}
				return
			}
			body := decodeProxyError(t, resp, tt.status, tt.code)
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tt.status == 403 && !strings.Contains(body.Message, "aem-only") {
				t.Errorf("403 message %q does not name the caller", body.Message)
			}
			if n := len(up.All()); n != before {
				t.Errorf("a refused request reached the upstream")
			}
		})
	}
}

// rawRequest sends a request line and headers over a plain connection and
// returns the status line.
func rawRequest(t *testing.T, addr, request string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

func TestRoute_IsNoForwardProxy(t *testing.T) {
	up := &testutil.Upstream{}
	front := guardedRoute(t, up, RouteOptions{}, nil)
	addr := strings.TrimPrefix(front.URL, "http://")
	tests := map[string]struct{ request, want string }{
		"CONNECT":             {"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP/1.1 405"},
		"absolute-form":       {"GET http://example.com/Rest/Media/1/Search/Files HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP/1.1 400"},
		"absolute-form https": {"GET https://stock.adobe.io/ HTTP/1.1\r\nHost: stock.adobe.io\r\n\r\n", "HTTP/1.1 400"},
		"origin-form":         {"GET /Rest/Media/1/Search/Files HTTP/1.1\r\nHost: " + addr + "\r\n\r\n", "HTTP/1.1 200"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := rawRequest(t, addr, tt.request); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("status line %q, want %q", got, tt.want)
			}
		})
	}
	if n := len(up.All()); n != 1 {
		t.Fatalf("%d requests reached the upstream, want only the origin-form one", n)
	}
}
