package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/tokens"
)

func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// callersJSON renders a callers file. For brevity each entry's KeySHA256
// holds the key itself: it is hashed here.
func callersJSON(entries ...callerEntry) string {
	var parts []string
	for _, e := range entries {
		parts = append(parts, fmt.Sprintf(`{"name":%q,"key_sha256":%q,"routes":["%s"],"license":%t}`,
			e.Name, keyHash(e.KeySHA256), strings.Join(e.Routes, `","`), e.License))
	}
	return "[" + strings.Join(parts, ",\n") + "]"
}

func writeCallersFile(t *testing.T, path, content string) {
	t.Helper()
	// Written to a temporary file and renamed, as a careful operator (or a
	// Kubernetes ConfigMap) does, so a reload never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestParseCallers(t *testing.T) {
	good := keyHash("k1")
	tests := []struct {
		name    string
		data    string
		want    int      // callers, when valid
		errs    []string // substrings of the error, when invalid
		notInIt string   // must not appear in the error
	}{
		{"valid", `[{"name":"dam","key_sha256":"` + good + `","routes":["stock","aem"],"license":true},
			{"name":"report","key_sha256":"` + strings.ToUpper(keyHash("k2")) + `","routes":["stock"]}]`, 2, nil, ""},
		{"empty list", `[]`, 0, nil, ""},
		{"empty file", ``, 0, []string{"the file is empty"}, ""},
		{"null", `null`, 0, []string{"holds null"}, ""},
		{"an object, not a list", `{"callers":[]}`, 0, []string{"must hold a JSON list"}, ""},
		{"syntax error has its line", "[\n{\"name\":\"a\",}]", 0, []string{"line 2, column"}, ""},
		{"unknown field (typo)", `[{"name":"a","key_sha256":"` + good + `","routes":["stock"],"licence":true}]`, 0, []string{`unknown field "licence"`}, ""},
		{"pasted data as a field name", `[{"name":"a","key_sha256":"` + good + `","routes":["stock"],"imsp_0123456789abcdefghijklmnopqrstuvwxyz":true}]`, 0,
			[]string{"an unknown field (its name is too long to show)"}, "imsp_0123456789"},
		{"wrong type", `[{"name":"a","key_sha256":"` + good + `","routes":"stock"}]`, 0, []string{"routes must be a JSON list"}, ""},
		{"trailing data", `[] []`, 0, []string{"data after the JSON list"}, ""},
		{"every problem at once", `[{"key_sha256":"imsp_the-key-itself","routes":[]},{"name":"b","key_sha256":"` + good + `","routes":["Stock"]},{"name":"b","key_sha256":"` + good + `","routes":["stock"]}]`, 0,
			[]string{"caller 1: name is required", "caller 1: key_sha256 must be the 64 hex digits", "caller 1: routes is empty",
				`caller 2 (b): routes holds "Stock"`, "caller 3 (b): name is used by another caller", "caller 3 (b): key_sha256 is the same as another caller's"},
			"imsp_the-key-itself"},
		{"missing key", `[{"name":"a","routes":["stock"]}]`, 0, []string{"key_sha256 is required"}, ""},
		{"unprintable name", `[{"name":"a\u0000b","key_sha256":"` + good + `","routes":["stock"]}]`, 0, []string{"printable"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCallers([]byte(tt.data), nil)
			if tt.errs == nil {
				if err != nil || len(got) != tt.want {
					t.Fatalf("got %d callers, error %v; want %d", len(got), err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.errs)
			}
			for _, s := range tt.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tt.notInIt != "" && strings.Contains(err.Error(), tt.notInIt) {
				t.Errorf("error repeats a key: %q", err)
			}
		})
	}
}

func TestCallerSet_Lookup(t *testing.T) {
	callers, err := ParseCallers([]byte(callersJSON(
		callerEntry{Name: "a", KeySHA256: "key-a", Routes: []string{"stock"}},
		callerEntry{Name: "b", KeySHA256: "key-b", Routes: []string{"stock"}})), nil)
	if err != nil {
		t.Fatal(err)
	}
	set := &callerSet{callers: callers}
	for key, want := range map[string]string{"key-a": "a", "key-b": "b", "key-c": "", "": "", "key-a ": ""} {
		got := ""
		if c := set.lookup(key); c != nil {
			got = c.Name
		}
		if got != want {
			t.Errorf("lookup(%q) = %q, want %q", key, got, want)
		}
	}
}

// guardedRoute serves a Route in front of up with the given options.
func guardedRoute(t *testing.T, up http.Handler, opts RouteOptions, mutate func(*config.Route)) *httptest.Server {
	t.Helper()
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	rc := testRouteConfig(t, upstream.URL)
	if mutate != nil {
		mutate(rc)
	}
	front := httptest.NewServer(NewRoute(rc, staticTokens{}, opts))
	t.Cleanup(front.Close)
	return front
}

// staticTokens hands out route-token forever.
type staticTokens struct{}

const routeToken = "route-token-abc123"

func (staticTokens) Token(context.Context) (tokens.Token, error) {
	return tokens.Token{Value: routeToken, Expiry: time.Now().Add(time.Hour)}, nil
}
func (staticTokens) Invalidate(string) bool { return false }

func loadTestCallers(t *testing.T, content string) (*Callers, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callers.json")
	writeCallersFile(t, path, content)
	c, err := LoadCallers(path, []string{"stock", "aem"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, path
}

func TestRoute_CallersFile(t *testing.T) {
	callers, _ := loadTestCallers(t, callersJSON(
		callerEntry{Name: "dam", KeySHA256: "dam-key", Routes: []string{"stock"}},
		callerEntry{Name: "aem-only", KeySHA256: "aem-key", Routes: []string{"aem"}}))
	up := &recordingUpstream{}
	front := guardedRoute(t, up, RouteOptions{Callers: callers}, nil)

	tests := []struct {
		name    string
		headers []string
		status  int
		code    string
	}{
		{"no key", nil, 401, CodeUnauthorizedCaller},
		{"unknown key", []string{"X-Api-Key", "guess"}, 401, CodeUnauthorizedCaller},
		{"unknown bearer", []string{"Authorization", "Bearer guess"}, 401, CodeUnauthorizedCaller},
		{"key of another route", []string{"X-Api-Key", "aem-key"}, 403, CodeForbidden},
		{"x-api-key", []string{"X-Api-Key", "dam-key"}, 200, ""},
		{"bearer", []string{"Authorization", "Bearer dam-key"}, 200, ""},
		{"stale x-api-key, good bearer", []string{"X-Api-Key", "old-adobe-client-id", "Authorization", "Bearer dam-key"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.all())
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
				got := up.all()[before]
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
			if n := len(up.all()); n != before {
				t.Errorf("a refused request reached the upstream")
			}
		})
	}
}

func TestCallers_ReloadKeepsPreviousCallersOnError(t *testing.T) {
	c, path := loadTestCallers(t, callersJSON(callerEntry{Name: "a", KeySHA256: "key-a", Routes: []string{"stock"}}))
	req := func(key string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Api-Key", key)
		return r
	}
	writeCallersFile(t, path, callersJSON(callerEntry{Name: "b", KeySHA256: "key-b", Routes: []string{"stock"}}))
	if changed, err := c.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if c.identify(req("key-a")) != nil || c.identify(req("key-b")) == nil {
		t.Fatal("after the reload, key-a should be refused and key-b known")
	}
	if changed, err := c.Reload(); changed || err != nil {
		t.Fatalf("Reload of an unchanged file = %v, %v; want no change", changed, err)
	}
	for name, content := range map[string]string{
		"broken JSON":      `[{"name":`,
		"unknown route":    callersJSON(callerEntry{Name: "c", KeySHA256: "key-c", Routes: []string{"brandportal"}}),
		"file not present": "",
	} {
		if name == "file not present" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else {
			writeCallersFile(t, path, content)
		}
		_, err := c.Reload()
		var ps config.Problems
		if !errors.As(err, &ps) || ps[0].Var != "IMSPROXY_CALLERS_FILE" {
			t.Errorf("%s: Reload error = %v, want problems of IMSPROXY_CALLERS_FILE", name, err)
		}
		if c.identify(req("key-b")) == nil {
			t.Errorf("%s: the previous callers are no longer in force", name)
		}
	}
}

func TestCallers_WatchReloadsChangedFile(t *testing.T) {
	c, path := loadTestCallers(t, callersJSON(callerEntry{Name: "a", KeySHA256: "key-a", Routes: []string{"stock"}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.watch(ctx, 5*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	writeCallersFile(t, path, callersJSON(callerEntry{Name: "b", KeySHA256: "key-b", Routes: []string{"stock"}}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer key-b")
	deadline := time.Now().Add(5 * time.Second)
	for c.identify(r) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the changed callers file was not reloaded within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
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
	up := &recordingUpstream{}
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
	if n := len(up.all()); n != 1 {
		t.Fatalf("%d requests reached the upstream, want only the origin-form one", n)
	}
}
