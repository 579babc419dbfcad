package fakeadobe

import (
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

// testKey is test key i, made once per process.
func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	return testutil.RSA(i)
}

func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC))
}

// env is one emulator behind an httptest server, with a fake clock and a
// registered client.
type env struct {
	t     *testing.T
	srv   *Server
	ts    *httptest.Server
	base  string
	clock *testutil.Clock
	creds *Credentials
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clock := newClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	if opts.SigningKey == nil {
		opts.SigningKey = testKey(t, 2)
	}
	if opts.CatalogueSize == 0 {
		opts.CatalogueSize = 2000
	}
	srv := New(opts)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	e := &env{t: t, srv: srv, ts: ts, base: ts.URL, clock: clock}
	e.creds = e.newCreds(CredentialOptions{})
	return e
}

// newCreds registers another client; its certificate is valid around the
// fake clock's time.
func (e *env) newCreds(opts CredentialOptions) *Credentials {
	e.t.Helper()
	if opts.Key == nil {
		opts.Key = testKey(e.t, 0)
	}
	if opts.Now == nil {
		opts.Now = e.clock.Now
	}
	c, err := e.srv.NewCredentials(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// signJWT signs a JWT for c against this emulator, expiring in 5 minutes.
func (e *env) signJWT(c *Credentials, extra map[string]any) string {
	e.t.Helper()
	tok, err := c.SignJWT(e.base, e.clock.Now().Add(5*time.Minute), extra)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) exchangeForm(c *Credentials, jwt string) url.Values {
	return url.Values{"client_id": {c.ClientID}, "client_secret": {c.ClientSecret}, "jwt_token": {jwt}}
}

// post sends a form and decodes the JSON answer.
func (e *env) post(path string, form url.Values) (int, map[string]any) {
	e.t.Helper()
	resp, err := http.PostForm(e.base+path, form)
	if err != nil {
		e.t.Fatal(err)
	}
	return decode(e.t, resp)
}

func decode(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("answer is not a JSON object: %v: %s", err, body)
		}
	}
	return resp.StatusCode, m
}

// token exchanges a JWT for c and returns the access token.
func (e *env) token(c *Credentials) string {
	e.t.Helper()
	status, body := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, nil)))
	if status != http.StatusOK {
		e.t.Fatalf("exchange: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// get sends a GET with headers (name → value) and returns status and body.
func (e *env) get(path string, headers map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodGet, path, headers, nil)
}

func (e *env) do(method, path string, headers map[string]string, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// stockHeaders are the headers of an anonymous Stock call of c; with a
// token, of an authenticated one.
func stockHeaders(c *Credentials, token string) map[string]string {
	h := map[string]string{"X-Api-Key": c.ClientID, "X-Product": "imsproxy-tests/1.0"}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return h
}

func mustJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	return m
}

// q builds a query string from name/value pairs (brackets escaped).
func q(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(pairs[i]) + "=" + url.QueryEscape(pairs[i+1]))
	}
	return b.String()
}

func decodeInto(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
