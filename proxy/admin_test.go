package proxy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/route"
)

const (
	adminTokenA = "admin-token-aaaaaaaaaaaaaaaaaaaaaaaa"
	adminTokenB = "admin-token-bbbbbbbbbbbbbbbbbbbbbbbb"
)

// cachedRoute is a stock route with a search cache and no credentials,
// ready without IMS.
func cachedRoute(t *testing.T) *config.Route {
	rc := testroute.Stock(t, "http://127.0.0.1:1")
	rc.Auth = config.AuthNone
	rc.Cache = config.Cache{Size: 10, TTL: time.Minute, MaxBytes: 1 << 20}
	return rc
}

// adminServer runs a server with one cached stock route and the admin
// token settings of cfg (AdminToken, AdminTokenFile), logging into logs.
func adminServer(t *testing.T, token config.Secret, tokenFile string, logs *testutil.Buffer) *Server {
	t.Helper()
	cfg := &config.Config{AdminListen: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second,
		Routes: []config.Route{*cachedRoute(t)}, AdminToken: token, AdminTokenFile: tokenFile}
	srv, _, _ := startConfig(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return srv
}

// adminDo sends a request to the admin listener, with an Authorization
// header when auth is not empty.
func adminDo(t *testing.T, srv *Server, method, path, auth string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+srv.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// GET / lists the admin endpoints as JSON; any other path is a JSON 404
// that points there.
func TestAdmin_IndexListsTheEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name     string
		token    config.Secret
		wantAuth string
	}{{"without a token", "", ""}, {"with a token", adminTokenA, "Authorization: Bearer <admin token>"}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := adminServer(t, tc.token, "", &testutil.Buffer{})
			status, h, body := adminDo(t, srv, http.MethodGet, "/", "")
			var index struct {
				Endpoints []adminEndpoint `json:"endpoints"`
			}
			if err := json.Unmarshal(body, &index); status != 200 || err != nil || h.Get("Content-Type") != "application/json" {
				t.Fatalf("GET / = %d %q %s (%v)", status, h.Get("Content-Type"), body, err)
			}
			paths := map[string]adminEndpoint{}
			for _, e := range index.Endpoints {
				paths[e.Method+" "+e.Path] = e
			}
			for _, want := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "POST /cache/purge?route=NAME"} {
				e, ok := paths[want]
				if !ok {
					t.Errorf("GET / does not list %s: %s", want, body)
				}
				// Every listed GET endpoint answers.
				if path, isGet := strings.CutPrefix(want, "GET "); isGet {
					if s, _, _ := adminDo(t, srv, http.MethodGet, path, ""); s != 200 {
						t.Errorf("%s, listed by GET /, answered %d", want, s)
					}
				}
				if want == "POST /cache/purge?route=NAME" && e.Auth != tc.wantAuth {
					t.Errorf("purge auth %q, want %q", e.Auth, tc.wantAuth)
				}
			}
			status, h, body = adminDo(t, srv, http.MethodGet, "/nothing-here", "")
			if status != 404 || h.Get(route.ErrorHeader) != route.CodeNotFound || !strings.Contains(string(body), "GET / lists them") {
				t.Errorf("GET /nothing-here = %d %q %s", status, h.Get(route.ErrorHeader), body)
			}
			// Another method on a GET endpoint, TRACE too: 405, as on the routes.
			for _, m := range []string{"TRACE", "POST", "DELETE"} {
				for _, path := range []string{"/", "/healthz", "/readyz", "/metrics"} {
					status, h, _ = adminDo(t, srv, m, path, "")
					if status != 405 || h.Get(route.ErrorHeader) != route.CodeMethodNotAllowed || h.Get("Allow") != "GET, HEAD" {
						t.Errorf("%s %s = %d %q Allow %q, want 405", m, path, status, h.Get(route.ErrorHeader), h.Get("Allow"))
					}
				}
			}
		})
	}
}

// With an admin token, POST /cache/purge needs it as a bearer token:
// anything else is a 401 in the error shape, and the token is never
// logged.
func TestAdmin_PurgeNeedsTheTokenWhenOneIsSet(t *testing.T) {
	logs := &testutil.Buffer{}
	srv := adminServer(t, adminTokenA, "", logs)
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no Authorization", "", 401},
		{"another token", "Bearer " + adminTokenB, 401},
		{"a prefix of the token", "Bearer " + adminTokenA[:20], 401},
		{"the token with another scheme", "Basic " + adminTokenA, 401},
		{"the token", "Bearer " + adminTokenA, 200},
		{"the token, scheme in lower case", "bearer " + adminTokenA, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := adminDo(t, srv, http.MethodPost, "/cache/purge?route=stock", tc.auth)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if tc.want == 401 {
				var e struct{ Error, Message, Route string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error != route.CodeUnauthorizedCaller ||
					h.Get(route.ErrorHeader) != route.CodeUnauthorizedCaller || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 = %s, headers %v", body, h)
				}
			}
		})
	}
	// The token is needed by the mutating endpoint only.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/"} {
		if s, _, _ := adminDo(t, srv, http.MethodGet, path, ""); s != 200 {
			t.Errorf("GET %s without the token: %d, want 200", path, s)
		}
	}
	if strings.Contains(logs.String(), adminTokenA) || strings.Contains(logs.String(), adminTokenB) || strings.Contains(logs.String(), adminTokenA[:20]) {
		t.Errorf("the logs hold a token:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "code=unauthorized_caller") {
		t.Errorf("a refused purge is not logged:\n%s", logs)
	}
}

// A token file is read again when it changes: the new token works, the old
// one no longer does; a file that no longer holds a valid token leaves the
// previous one in force.
func TestAdmin_TokenFileIsReloadedWhenItChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write := func(content string) {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // atomic, as a Kubernetes Secret update is
			t.Fatal(err)
		}
	}
	write(adminTokenA + "\n")
	logs := &testutil.Buffer{}
	srv := adminServer(t, adminTokenA, path, logs)
	purge := func(token string) int {
		s, _, _ := adminDo(t, srv, http.MethodPost, "/cache/purge?route=stock", "Bearer "+token)
		return s
	}
	if s := purge(adminTokenA); s != 200 {
		t.Fatalf("the loaded token: %d", s)
	}
	write(adminTokenB + "\n")
	testutil.WaitFor(t, "the new token to be accepted", func() bool { return purge(adminTokenB) == 200 })
	if s := purge(adminTokenA); s != 401 {
		t.Errorf("the replaced token: %d, want 401", s)
	}

	write("short\n")
	testutil.WaitFor(t, "the refused file to be logged", func() bool {
		return strings.Contains(logs.String(), "admin token not reloaded; the previous token stays in force")
	})
	if s := purge(adminTokenB); s != 200 {
		t.Errorf("after a file with an invalid token: %d, want the previous token still accepted", s)
	}
	srv.Reload() // SIGHUP: the same refusal, logged again
	if n := strings.Count(logs.String(), "admin token not reloaded"); n != 2 {
		t.Errorf("%d refusals logged, want one from the watch and one from the reload:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), adminTokenA) || strings.Contains(logs.String(), adminTokenB) {
		t.Errorf("the logs hold a token:\n%s", logs)
	}
}
