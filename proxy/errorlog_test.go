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
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// failingTokens has no token: IMS refused the route's credentials.
type failingTokens struct{}

func (failingTokens) Token(context.Context) (tokens.Token, error) {
	return tokens.Token{}, &tokens.IMSError{StatusCode: 401, Code: "invalid_client", Description: "invalid client_id parameter"}
}
func (failingTokens) Invalidate(context.Context, string) bool { return false }

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
	callers, _ := loadTestCallers(t, testutil.CallersJSON(
		testutil.Caller{Name: "dam", Key: "dam-key", Routes: []string{"stock"}},
		testutil.Caller{Name: "aem-only", Key: "aem-key", Routes: []string{"aem"}}))
	license := "/Rest/Libraries/1/Content/License?content_id=5&license=Standard&q=" + querySecret
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })

	tests := []struct {
		name          string
		method, path  string
		header        []string // name, value, ...
		body          string
		src           tokens.TokenSource // nil: staticTokens
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
			opts: RouteOptions{Callers: callers}, status: 401, code: route.CodeUnauthorizedCaller, msg: "caller refused", wantLevel: "INFO",
			wantAttrValue: map[string]string{"reason": "unknown caller key"}},
		{name: "route not allowed", path: "/Rest/Media/1/Search/Files", header: []string{"X-Api-Key", "aem-key"},
			opts: RouteOptions{Callers: callers}, status: 403, code: route.CodeForbidden, msg: "caller refused", wantLevel: "INFO",
			wantAttrValue: map[string]string{"caller": "aem-only"}},
		{name: "CONNECT", method: "CONNECT", path: "/", status: 405, code: "method_not_allowed", wantLevel: "INFO"},
		{name: "absolute form", path: "http://elsewhere.example/x?q=" + querySecret, status: 400, code: "bad_request", wantLevel: "INFO"},
		{name: "body too large", method: "POST", path: "/Rest/Media/1/Search/Files?q=" + querySecret, body: strings.Repeat("x", 100),
			mutate: func(rc *config.Route) { rc.MaxBodyBytes = 10 }, status: 413, code: route.CodeBodyTooLarge, wantLevel: "INFO"},
		{name: "licensing disabled", path: license, mutate: func(rc *config.Route) { rc.AllowLicense = false },
			status: 403, code: route.CodeLicensingDisabled, msg: "license refused", wantLevel: "INFO",
			wantAttrValue: map[string]string{"outcome": route.CodeLicensingDisabled, "content_id": "5"}},
		{name: "license limit reached", path: license, before: license, up: &fakeStock{editorial: map[string]bool{"5": false}},
			mutate: func(rc *config.Route) { rc.LicenseDailyLimit = 1 }, status: 429, code: route.CodeLicenseLimitReached, msg: "license refused", wantLevel: "INFO"},
		{name: "editorial use only", path: license, up: &fakeStock{editorial: map[string]bool{"5": true}},
			status: 403, code: route.CodeEditorialUseOnly, msg: "license refused", wantLevel: "INFO"},
		{name: "editorial check failed", path: license, up: &fakeStock{searchErr: 503},
			status: 502, code: route.CodeUpstreamUnreachable, msg: "editorial check failed; license refused", wantLevel: "WARN",
			wantAttrValue: map[string]string{"outcome": audit.OutcomeEditorialCheck}},
		{name: "no token", path: "/Rest/Media/1/Search/Files?q=" + querySecret, src: failingTokens{},
			status: 503, code: route.CodeTokenUnavailable, msg: "no token for request", wantLevel: "WARN",
			wantAttrValue: map[string]string{"ims_error": "invalid_client"}},
		{name: "no token for a held license", path: license, header: []string{allowEditorialHeader, "true"}, src: failingTokens{},
			status: 503, code: route.CodeTokenUnavailable, msg: "no token for request", wantLevel: "WARN",
			wantAttrValue: map[string]string{"ims_error": "invalid_client", "outcome": audit.OutcomeFailed}},
		{name: "no token for a cached search", path: "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=" + querySecret, src: failingTokens{},
			mutate: func(rc *config.Route) { rc.Cache = config.Cache{Size: 10, TTL: time.Minute, MaxBytes: 1 << 20} },
			status: 503, code: route.CodeTokenUnavailable, msg: "no token for request", wantLevel: "WARN"},
		{name: "upstream unreachable", path: "/x?q=" + querySecret,
			mutate: func(rc *config.Route) { rc.Upstream = mustURL(t, "http://"+closedPort(t)) },
			status: 502, code: route.CodeUpstreamUnreachable, msg: "upstream request failed", wantLevel: "WARN"},
		{name: "upstream timeout", path: "/x?q=" + querySecret, up: hang,
			mutate: func(rc *config.Route) { rc.Timeout = 50 * time.Millisecond },
			status: 504, code: route.CodeUpstreamTimeout, msg: "upstream request failed", wantLevel: "WARN"},
		{name: "no download host", path: "/Rest/Libraries/Download/5/1?token=" + querySecret,
			mutate: func(rc *config.Route) { rc.DownloadUpstream = nil }, status: 404, code: "not_found", wantLevel: "INFO"},
		{name: "panic", path: "/x?q=" + querySecret, src: panickingTokens{},
			status: 500, code: "internal_error", msg: "panic in handler (a bug): the request was answered 500", wantLevel: "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := tt.up
			if up == nil {
				up = &testutil.Upstream{}
			}
			upstream := httptest.NewServer(up)
			t.Cleanup(upstream.Close)
			rc := testroute.Stock(t, upstream.URL)
			rc.AllowLicense = true
			rc.DownloadUpstream = mustURL(t, upstream.URL)
			if tt.mutate != nil {
				tt.mutate(rc)
			}
			audit, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"), time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = audit.Close() })
			logs := &testutil.Buffer{}
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
				req.Host = "127.0.0.1:8080" // a loopback listener answers local names only
				req.Header.Set("Authorization", "Bearer "+callerSecret)
				req.Header.Set(route.RequestIDHeader, id)
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
			if w.Code != tt.status || w.Header().Get(route.ErrorHeader) != tt.code {
				t.Fatalf("answer %d %q, want %d %q: %s", w.Code, w.Header().Get(route.ErrorHeader), tt.status, tt.code, w.Body)
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

// Every line logged about a request carries its id and route, whichever
// stage writes it and when: the held licensing answer's warning, the
// licensing line written once the answer is in, and the request line.
func TestRoute_EveryLogLineCarriesTheRequestID(t *testing.T) {
	up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/Rest/Media/1/Search/Files" { // the editorial check
			_, _ = io.WriteString(w, `{"files":[{"id":5,"is_editorial":false}]}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "br") // cannot be rewritten: warned about
		_, _ = io.WriteString(w, "\x0b\x02\x80{}\x03")
	})
	logs := &testutil.Buffer{}
	front := guardedRoute(t, up, RouteOptions{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		func(rc *config.Route) {
			rc.AllowLicense = true
			// A license empties the search cache, which logs it.
			rc.Cache = config.Cache{Size: 16, TTL: time.Minute, MaxBytes: 1 << 20}
		})
	req, _ := http.NewRequest("GET", front.URL+"/Rest/Libraries/1/Content/License?content_id=5&license=Standard", nil)
	req.Header.Set(route.RequestIDHeader, "trace-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lines := logLines(t, logs.String())
	msgs := map[string]bool{}
	for _, l := range lines {
		msgs[l["msg"].(string)] = true
		if l["request_id"] != "trace-42" || l["route"] != "stock" {
			t.Errorf("log line without the request's id and route: %v", l)
		}
	}
	for _, want := range []string{"answer encoded with br; download URLs not rewritten", "licensing", "search cache purged", "request"} {
		if !msgs[want] {
			t.Errorf("no %q line among %v", want, msgs)
		}
	}
}

// Lines about a request written by code that knows nothing of routes carry
// its id too: the token manager dropping the token an upstream refused,
// and an upstream answer that broke off (the reverse proxy's own line
// would have neither route nor request id).
func TestRoute_TokenAndBrokenAnswerLinesCarryTheRequestID(t *testing.T) {
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		switch {
		case r.URL.Path == "/refused" && r.Header.Get("Authorization") == "Bearer token-1":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/cut":
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "only the start")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the upstream breaks the connection off
		}
	}}
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	logs := &testutil.Buffer{}
	log := slog.New(route.LogHandler(slog.NewJSONHandler(logs, nil)))
	rc := testroute.Stock(t, upstream.URL)
	mgr := tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{Kind: "oauth", Logger: log})
	front := httptest.NewServer(NewRoute(rc, mgr, RouteOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))}))
	t.Cleanup(front.Close)
	for path, id := range map[string]string{"/refused": "trace-401", "/cut": "trace-cut"} {
		req, _ := http.NewRequest("GET", front.URL+path, nil)
		req.Header.Set(route.RequestIDHeader, id)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	want := map[string]string{
		"upstream rejected the token; fetching a new one":       "trace-401",
		"the upstream's answer broke off; the caller's was cut": "trace-cut",
	}
	for _, l := range logLines(t, logs.String()) {
		msg, _ := l["msg"].(string)
		if msg == "token obtained" { // an exchange is shared, no one request's
			continue
		}
		if l["request_id"] == nil {
			t.Errorf("a line without a request id: %v", l)
		}
		if id, ok := want[msg]; ok {
			if l["request_id"] != id {
				t.Errorf("%q carries request id %v, want %s", msg, l["request_id"], id)
			}
			delete(want, msg)
		}
	}
	for msg := range want {
		t.Errorf("no %q line:\n%s", msg, logs.String())
	}
}
