package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/tokens"
)

// failingTokens has no token: IMS refused the route's credentials.
type failingTokens struct{}

func (failingTokens) Token(context.Context) (tokens.Token, error) {
	return tokens.Token{}, &tokens.IMSError{StatusCode: 401, Code: "invalid_client", Description: "invalid client_id parameter"}
}
func (failingTokens) Invalidate(string) bool { return false }

// logLines decodes JSON log output, one object a line.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20) // a panic's stack makes a long line
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

func TestRoute_OneLogLinePerProxyError(t *testing.T) {
	// Everything a caller sends that must stay out of the log.
	const (
		querySecret  = "query-secret-5f2a"
		callerSecret = "caller-secret-9c1d"
	)
	callers, _ := loadTestCallers(t, callersJSON(
		callerEntry{Name: "dam", KeySHA256: "dam-key", Routes: []string{"stock"}},
		callerEntry{Name: "aem-only", KeySHA256: "aem-key", Routes: []string{"aem"}}))
	licence := "/Rest/Libraries/1/Content/License?content_id=5&license=Standard&q=" + querySecret
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })

	tests := []struct {
		name          string
		method, path  string
		header        []string // name, value, ...
		body          string
		src           TokenSource // nil: staticTokens
		up            http.Handler
		opts          RouteOptions
		mutate        func(*config.Route)
		before        string // a path requested once first (another request id)
		status        int
		code          string
		msg           string // "" = any
		wantLevel     string
		wantAttrValue map[string]string
	}{
		{name: "unknown caller", path: "/Rest/Media/1/Search/Files?q=" + querySecret, header: []string{"X-Api-Key", callerSecret},
			opts: RouteOptions{Callers: callers}, status: 401, code: CodeUnauthorizedCaller, msg: "caller refused", wantLevel: "INFO",
			wantAttrValue: map[string]string{"reason": "unknown caller key"}},
		{name: "route not allowed", path: "/Rest/Media/1/Search/Files", header: []string{"X-Api-Key", "aem-key"},
			opts: RouteOptions{Callers: callers}, status: 403, code: CodeForbidden, msg: "caller refused", wantLevel: "INFO",
			wantAttrValue: map[string]string{"caller": "aem-only"}},
		{name: "CONNECT", method: "CONNECT", path: "/", status: 405, code: "method_not_allowed", wantLevel: "INFO"},
		{name: "absolute form", path: "http://elsewhere.example/x?q=" + querySecret, status: 400, code: "bad_request", wantLevel: "INFO"},
		{name: "body too large", method: "POST", path: "/Rest/Media/1/Search/Files?q=" + querySecret, body: strings.Repeat("x", 100),
			mutate: func(rc *config.Route) { rc.MaxBodyBytes = 10 }, status: 413, code: CodeBodyTooLarge, wantLevel: "INFO"},
		{name: "licensing disabled", path: licence, mutate: func(rc *config.Route) { rc.AllowLicense = false },
			status: 403, code: CodeLicensingDisabled, msg: "licence refused", wantLevel: "INFO",
			wantAttrValue: map[string]string{"outcome": CodeLicensingDisabled, "content_id": "5"}},
		{name: "licence limit reached", path: licence, before: licence, up: &fakeStock{editorial: map[string]bool{"5": false}},
			mutate: func(rc *config.Route) { rc.LicenseDailyLimit = 1 }, status: 429, code: CodeLicenseLimitReached, msg: "licence refused", wantLevel: "INFO"},
		{name: "editorial use only", path: licence, up: &fakeStock{editorial: map[string]bool{"5": true}},
			status: 403, code: CodeEditorialUseOnly, msg: "licence refused", wantLevel: "INFO"},
		{name: "editorial check failed", path: licence, up: &fakeStock{searchErr: 503},
			status: 502, code: CodeUpstreamUnreachable, msg: "editorial check failed; licence refused", wantLevel: "WARN",
			wantAttrValue: map[string]string{"outcome": outcomeEditorialCheck}},
		{name: "no token", path: "/Rest/Media/1/Search/Files?q=" + querySecret, src: failingTokens{},
			status: 503, code: CodeTokenUnavailable, msg: "no token for request", wantLevel: "WARN",
			wantAttrValue: map[string]string{"ims_error": "invalid_client"}},
		{name: "no token for a held licence", path: licence, header: []string{allowEditorialHeader, "true"}, src: failingTokens{},
			status: 503, code: CodeTokenUnavailable, msg: "no token for request", wantLevel: "WARN",
			wantAttrValue: map[string]string{"ims_error": "invalid_client", "outcome": outcomeFailed}},
		{name: "no token for a cached search", path: "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=" + querySecret, src: failingTokens{},
			mutate: func(rc *config.Route) { rc.Cache = config.Cache{Size: 10, TTL: time.Minute, MaxBytes: 1 << 20} },
			status: 503, code: CodeTokenUnavailable, msg: "no token for request", wantLevel: "WARN"},
		{name: "upstream unreachable", path: "/x?q=" + querySecret,
			mutate: func(rc *config.Route) { rc.Upstream = mustURL(t, "http://"+closedPort(t)) },
			status: 502, code: CodeUpstreamUnreachable, msg: "upstream request failed", wantLevel: "WARN"},
		{name: "upstream timeout", path: "/x?q=" + querySecret, up: hang,
			mutate: func(rc *config.Route) { rc.Timeout = 50 * time.Millisecond },
			status: 504, code: CodeUpstreamTimeout, msg: "upstream request failed", wantLevel: "WARN"},
		{name: "no download host", path: "/Rest/Libraries/Download/5/1?token=" + querySecret,
			mutate: func(rc *config.Route) { rc.DownloadUpstream = nil }, status: 404, code: "not_found", wantLevel: "INFO"},
		{name: "panic", path: "/x?q=" + querySecret, src: panickingTokens{},
			status: 500, code: "internal_error", msg: panicMessage, wantLevel: "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := tt.up
			if up == nil {
				up = &recordingUpstream{}
			}
			upstream := httptest.NewServer(up)
			t.Cleanup(upstream.Close)
			rc := testRouteConfig(t, upstream.URL)
			rc.AllowLicense = true
			rc.DownloadUpstream = mustURL(t, upstream.URL)
			if tt.mutate != nil {
				tt.mutate(rc)
			}
			audit, err := OpenAuditLog(filepath.Join(t.TempDir(), "audit.log"), time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = audit.Close() })
			logs := &syncBuffer{}
			opts := tt.opts
			opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts.Audit = audit
			src := tt.src
			if src == nil {
				src = staticTokens{}
			}
			rt := NewRoute(rc, src, opts)
			serve := func(method, target, id string) *httptest.ResponseRecorder {
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				req := httptest.NewRequest(method, target, body)
				req.Header.Set("Authorization", "Bearer "+callerSecret)
				req.Header.Set(requestIDHeader, id)
				for i := 0; i+1 < len(tt.header); i += 2 {
					req.Header.Set(tt.header[i], tt.header[i+1])
				}
				w := httptest.NewRecorder()
				rt.ServeHTTP(w, req)
				return w
			}
			if tt.before != "" {
				if w := serve("GET", tt.before, "before-1"); w.Code != 200 {
					t.Fatalf("the request before answered %d: %s", w.Code, w.Body)
				}
			}
			method := tt.method
			if method == "" {
				method = "GET"
			}
			const id = "req-under-test"
			w := serve(method, tt.path, id)
			if w.Code != tt.status || w.Header().Get(ErrorHeader) != tt.code {
				t.Fatalf("answer %d %q, want %d %q: %s", w.Code, w.Header().Get(ErrorHeader), tt.status, tt.code, w.Body)
			}

			out := logs.String()
			var errorLines, requestLines []map[string]any
			for _, l := range logLines(t, out) {
				if l["request_id"] != id && !strings.Contains(l["msg"].(string), id) {
					continue
				}
				if l["msg"] == "request" && l["level"] == "DEBUG" {
					requestLines = append(requestLines, l)
				} else {
					errorLines = append(errorLines, l)
				}
			}
			if len(errorLines) != 1 || len(requestLines) != 1 {
				t.Fatalf("%d error lines and %d request lines about the request, want 1 and 1:\n%s", len(errorLines), len(requestLines), out)
			}
			l := errorLines[0]
			want := map[string]any{"route": "stock", "method": method, "status": float64(tt.status), "code": tt.code, "level": tt.wantLevel}
			if tt.method != "CONNECT" {
				want["path"] = requestPath(t, tt.path)
			}
			if tt.msg != "" {
				want["msg"] = tt.msg
			}
			for k, v := range tt.wantAttrValue {
				want[k] = v
			}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("%s = %v, want %v in %v", k, l[k], v, l)
				}
			}
			for _, secret := range []string{querySecret, callerSecret, routeToken, "q=", "license=Standard"} {
				if strings.Contains(out, secret) {
					t.Errorf("the log contains %q:\n%s", secret, out)
				}
			}
		})
	}
}

// requestPath is the path of a request target, without its query.
func requestPath(t *testing.T, target string) string {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	return req.URL.Path
}
