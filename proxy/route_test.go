package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// countingSource hands out token-1, token-2, ... valid for an hour.
type countingSource struct {
	calls atomic.Int64
	err   atomic.Pointer[error]
}

func (s *countingSource) Fetch(context.Context) (tokens.Token, error) {
	n := s.calls.Add(1)
	if err := s.err.Load(); err != nil {
		return tokens.Token{}, *err
	}
	now := time.Now()
	return tokens.Token{Value: fmt.Sprintf("token-%d", n), Obtained: now, Expiry: now.Add(time.Hour)}, nil
}

func (s *countingSource) failWith(err error) { s.err.Store(&err) }

// newTestRoute serves a Route in front of up, with tokens from src.
func newTestRoute(t *testing.T, up http.Handler, src tokens.Source, mutate func(*config.Route)) (*httptest.Server, *tokens.Manager) {
	t.Helper()
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	rc := testroute.Stock(t, upstream.URL)
	if mutate != nil {
		mutate(rc)
	}
	mgr := tokens.NewManager(rc.Name, src, tokens.Options{Kind: "oauth"})
	front := httptest.NewServer(NewRoute(rc, mgr, RouteOptions{}))
	t.Cleanup(front.Close)
	return front, mgr
}

// TestRoute_RawQueryUntouched: the upstream gets the caller's query byte for
// byte, including what Go's query parser would drop or re-encode.
func TestRoute_RawQueryUntouched(t *testing.T) {
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)
	for _, query := range []string{
		"b=2&a=1&b=1",
		"x=1&b=%5B&a=2;z",
		"a=%zz&b=1",
		"search_parameters[words]=caf%C3%A9&search_parameters%5Blimit%5D=3",
		"flag&empty=&=noname",
		"a=1+2&c=%2B",
	} {
		resp, err := http.Get(front.URL + "/Rest/Media/1/Search/Files?" + query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		all := up.All()
		if got := all[len(all)-1].RawQuery; got != query {
			t.Errorf("query %q reached the upstream as %q", query, got)
		}
	}
}

func TestRoute_ReplacesCallerCredentialsWithRouteOnes(t *testing.T) {
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)

	const query = "search_parameters%5Bwords%5D=cat+dog&result_columns[]=id&result_columns[]=title&locale=en_US"
	req, _ := http.NewRequest("GET", front.URL+"/Rest/Media/1/Search/Files?"+query, nil)
	req.Header.Set("Authorization", "Bearer caller-secret-token")
	req.Header.Set("X-Api-Key", "caller-api-key")
	req.Header.Set("Proxy-Authorization", "Basic caller-proxy-creds")
	req.Header.Set("X-Custom", "kept")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	got := up.All()[0]
	frontURL, _ := url.Parse(front.URL)
	checks := []struct{ what, got, want string }{
		{"Authorization", got.Header.Get("Authorization"), "Bearer token-1"},
		{"X-Api-Key", got.Header.Get("X-Api-Key"), "client-id-1"},
		{"Proxy-Authorization", got.Header.Get("Proxy-Authorization"), ""},
		{"X-Product", got.Header.Get("X-Product"), "imsproxy/test"},
		{"X-Custom", got.Header.Get("X-Custom"), "kept"},
		{"path", got.Path, "/Rest/Media/1/Search/Files"},
		{"raw query", got.RawQuery, query},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if got.Host == frontURL.Host {
		t.Errorf("Host = %q is the proxy's, want the upstream's", got.Host)
	}
	for name, values := range got.Header {
		for _, v := range values {
			if strings.Contains(v, "caller-") {
				t.Errorf("caller credential reached the upstream in %s: %q", name, v)
			}
		}
	}
}

func TestRoute_KeepsCallersXProductAndAddsNoneOffStock(t *testing.T) {
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)
	req, _ := http.NewRequest("GET", front.URL+"/x", nil)
	req.Header.Set("X-Product", "LegacyApp/2.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := up.All()[0].Header.Get("X-Product"); got != "LegacyApp/2.1" {
		t.Fatalf("X-Product = %q, want the caller's", got)
	}

	aemUp := &testutil.Upstream{}
	aem, _ := newTestRoute(t, aemUp, &countingSource{}, func(rc *config.Route) { rc.Name, rc.Type = "aem", config.TypeAEM })
	resp, err = http.Get(aem.URL + "/api/assets.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := aemUp.All()[0].Header.Get("X-Product"); got != "" {
		t.Fatalf("aem route sent X-Product %q", got)
	}
}

func TestRoute_RequestID(t *testing.T) {
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)

	req, _ := http.NewRequest("GET", front.URL+"/x", nil)
	req.Header.Set("X-Request-Id", "trace-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "trace-42" {
		t.Errorf("answer X-Request-Id = %q, want the caller's", got)
	}
	if got := up.All()[0].Header.Get("X-Request-Id"); got != "trace-42" {
		t.Errorf("upstream X-Request-Id = %q, want the caller's", got)
	}

	resp, err = http.Get(front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	generated := resp.Header.Get("X-Request-Id")
	if generated == "" || up.All()[1].Header.Get("X-Request-Id") != generated {
		t.Errorf("generated id %q not sent upstream (%q)", generated, up.All()[1].Header.Get("X-Request-Id"))
	}
}

// decodeProxyError checks the shape of a proxy-made error and returns the body.
func decodeProxyError(t *testing.T, resp *http.Response, status int, code string) errorBody {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d", resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := resp.Header.Get(route.ErrorHeader); got != code {
		t.Errorf("%s = %q, want %q", route.ErrorHeader, got, code)
	}
	var body errorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Error != code || body.Message == "" || body.Route == "" {
		t.Errorf("body = %+v, want error %q with a message and the route", body, code)
	}
	return body
}

func TestRoute_TokenUnavailable(t *testing.T) {
	src := &countingSource{}
	src.failWith(&tokens.IMSError{StatusCode: 400, Code: "invalid_signature"})
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, src, nil)
	resp, err := http.Get(front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on 503")
	}
	body := decodeProxyError(t, resp, 503, route.CodeTokenUnavailable)
	if !strings.Contains(body.Message, "invalid_signature") {
		t.Errorf("message %q does not carry the IMS error code", body.Message)
	}
	if n := len(up.All()); n != 0 {
		t.Errorf("%d requests reached the upstream without a token", n)
	}
}

func TestRoute_Upstream401RefreshesAndRetriesOnce(t *testing.T) {
	smallBody := strings.Repeat("s", 1000)
	largeBody := strings.Repeat("L", 1<<20+10 /* over what is kept to replay */)
	tests := []struct {
		name        string
		body        string
		chunked     bool
		wantStatus  int
		wantUpCalls int
	}{
		{"no body", "", false, 200, 2},
		{"small body", smallBody, false, 200, 2},
		{"small chunked body", smallBody, true, 200, 2},
		{"body over 1 MiB is not replayed", largeBody, false, 401, 1},
		{"chunked body over 1 MiB is not replayed", largeBody, true, 401, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &testutil.Upstream{Handler: func(w http.ResponseWriter, r *http.Request, _ []byte) {
				if r.Header.Get("Authorization") == "Bearer token-1" {
					w.WriteHeader(401)
					_, _ = io.WriteString(w, `{"error_code":"401013","message":"Oauth token is not valid"}`)
					return
				}
				_, _ = io.WriteString(w, "ok")
			}}
			src := &countingSource{}
			front, _ := newTestRoute(t, up, src, nil)
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			resp, err := http.Post(front.URL+"/Rest/Libraries/1/Content/Info", "text/plain", body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			reqs := up.All()
			if len(reqs) != tt.wantUpCalls {
				t.Fatalf("upstream saw %d requests, want %d", len(reqs), tt.wantUpCalls)
			}
			for i, r := range reqs {
				if string(r.Body) != tt.body {
					t.Errorf("request %d body: %d bytes, want %d", i, len(r.Body), len(tt.body))
				}
			}
			if tt.wantUpCalls == 2 && reqs[1].Header.Get("Authorization") != "Bearer token-2" {
				t.Errorf("retry used %q", reqs[1].Header.Get("Authorization"))
			}
			if got := src.calls.Load(); got != 2 {
				t.Errorf("exchanges = %d, want 2 (one forced refresh)", got)
			}
		})
	}
}

func TestRoute_Repeated401sForceAtMostOneRefresh(t *testing.T) {
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(401) }}
	src := &countingSource{}
	front, _ := newTestRoute(t, up, src, nil)
	for range 5 {
		resp, err := http.Get(front.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status = %d, want the upstream's 401 passed through", resp.StatusCode)
		}
	}
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("exchanges = %d, want 2 (first token, one forced refresh per 10 s)", got)
	}
}

func TestRoute_BodyTooLarge(t *testing.T) {
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, &countingSource{}, func(rc *config.Route) { rc.MaxBodyBytes = 2 << 20 })
	big := strings.Repeat("x", 2<<20+1)

	resp, err := http.Post(front.URL+"/x", "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	decodeProxyError(t, resp, 413, route.CodeBodyTooLarge)

	resp, err = http.Post(front.URL+"/x", "text/plain", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	decodeProxyError(t, resp, 413, route.CodeBodyTooLarge)

	resp, err = http.Post(front.URL+"/x", "text/plain", strings.NewReader(big[1:]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("body of exactly MAX_BODY_BYTES: status %d", resp.StatusCode)
	}
}

// closedPort returns an address on which nothing listens: a port bound and
// closed again, for a guaranteed connection refusal.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRoute_UpstreamUnreachable(t *testing.T) {
	front, _ := newTestRoute(t, &testutil.Upstream{}, &countingSource{}, func(rc *config.Route) {
		rc.Upstream = &url.URL{Scheme: "http", Host: closedPort(t)}
	})
	resp, err := http.Get(front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	decodeProxyError(t, resp, 502, route.CodeUpstreamUnreachable)
}

func TestRoute_UpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	up := &testutil.Upstream{Handler: func(http.ResponseWriter, *http.Request, []byte) { <-release }}
	front, _ := newTestRoute(t, up, &countingSource{}, func(rc *config.Route) { rc.Timeout = 50 * time.Millisecond })
	defer close(release)
	resp, err := http.Get(front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	decodeProxyError(t, resp, 504, route.CodeUpstreamTimeout)
}

func TestRoute_UpstreamErrorsPassThroughUnchanged(t *testing.T) {
	const stockError = `{"error_code":"403003","message":"Api Key is invalid"}`
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(403)
		_, _ = io.WriteString(w, stockError)
	}}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)
	resp, err := http.Get(front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || string(body) != stockError || resp.Header.Get("X-Upstream") != "yes" || resp.Header.Get(route.ErrorHeader) != "" {
		t.Fatalf("got %d %q (%v), want the upstream's answer unchanged", resp.StatusCode, body, resp.Header)
	}
}

func TestRoute_StreamsAnswers(t *testing.T) {
	finish := make(chan struct{})
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-finish
		_, _ = io.WriteString(w, "second\n")
	}}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)
	resp, err := http.Get(front.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line = %q, %v: the answer was buffered", line, err)
	}
	close(finish)
	rest, _ := io.ReadAll(r)
	if string(rest) != "second\n" {
		t.Fatalf("rest = %q", rest)
	}
}

func TestRoute_PassesArbitraryMethodsAndHeaders(t *testing.T) {
	up := &testutil.Upstream{}
	front, _ := newTestRoute(t, up, &countingSource{}, func(rc *config.Route) { rc.Type = config.TypeAEM })
	req, _ := http.NewRequest("MOVE", front.URL+"/api/assets/a/b.jpg", bytes.NewReader(nil))
	req.Header.Set("X-Destination", "/api/assets/c/b.jpg")
	req.Header.Set("X-Overwrite", "F")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := up.All()[0]
	if got.Method != "MOVE" || got.Header.Get("X-Destination") != "/api/assets/c/b.jpg" || got.Header.Get("X-Overwrite") != "F" {
		t.Fatalf("upstream saw %s %v", got.Method, got.Header)
	}
}
