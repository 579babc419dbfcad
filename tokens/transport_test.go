package tokens

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestWithToken(t *testing.T) {
	tests := map[string]string{
		"":                         "token=t%2Bk",
		"size=1600":                "size=1600&token=t%2Bk",
		"token=callers&size=1600":  "size=1600&token=t%2Bk",
		"size=1&%74oken=x&token=y": "size=1&token=t%2Bk",
		"a=1&&b=2":                 "a=1&b=2&token=t%2Bk",
	}
	for in, want := range tests {
		if got := withToken(in, "t+k"); got != want {
			t.Errorf("withToken(%q) = %q, want %q", in, got, want)
		}
	}
}

// scriptedTokens hands out tok-1, tok-2, ... one per Token call after an
// Invalidate, as a Manager does, and records the invalidations.
type scriptedTokens struct {
	mu          sync.Mutex
	n           int
	clientID    string
	err         error
	invalidated []string
	refuse      bool // Invalidate reports that no new token may be fetched
}

func (s *scriptedTokens) Token(context.Context) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return Token{}, s.err
	}
	if s.n == 0 {
		s.n = 1
	}
	return Token{Value: fmt.Sprintf("tok-%d", s.n), ClientID: s.clientID}, nil
}

func (s *scriptedTokens) Invalidate(_ context.Context, value string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidated = append(s.invalidated, value)
	if s.refuse {
		return false
	}
	s.n++
	return true
}

// seenHeaders is an upstream that records the credentials of each request
// and answers 401 to the tokens in reject.
type seenHeaders struct {
	mu      sync.Mutex
	auth    []string
	apiKeys []string
	bodies  []string
	reject  map[string]bool
}

func (u *seenHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	body := ""
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		body = string(b)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	a := req.Header.Get("Authorization")
	u.auth = append(u.auth, a)
	u.apiKeys = append(u.apiKeys, strings.Join(req.Header.Values("X-Api-Key"), ","))
	u.bodies = append(u.bodies, body)
	status := http.StatusOK
	if u.reject[strings.TrimPrefix(a, "Bearer ")] {
		status = http.StatusUnauthorized
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("answer")), Request: req}, nil
}

func newRequest(t *testing.T, body string, replayable bool) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://upstream.example/x", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if !replayable {
		req.GetBody = nil
	}
	req.Header.Set("Authorization", "Bearer callers-own")
	req.Header.Set("Proxy-Authorization", "Basic callers-own")
	req.Header.Set("X-Api-Key", "callers-key")
	return req
}

func TestTransport_SetsTheRoutesCredentialsOnly(t *testing.T) {
	for _, tt := range []struct {
		name     string
		src      TokenSource
		wantAuth string
		wantKey  string
	}{
		{"the token and the route's client", &scriptedTokens{}, "Bearer tok-1", "route-client"},
		{"the client the token was issued to", &scriptedTokens{clientID: "token-client"}, "Bearer tok-1", "token-client"},
		{"no token (AUTH=none)", nil, "", "route-client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := &seenHeaders{}
			req := newRequest(t, "", true)
			resp, err := NewTransport(up, tt.src, "route-client").RoundTrip(req)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("RoundTrip: %v, %v", resp, err)
			}
			if up.auth[0] != tt.wantAuth || up.apiKeys[0] != tt.wantKey || req.Header.Get("Proxy-Authorization") != "" {
				t.Errorf("sent Authorization %q, x-api-key %q, Proxy-Authorization %q; want %q, %q and none",
					up.auth[0], up.apiKeys[0], req.Header.Get("Proxy-Authorization"), tt.wantAuth, tt.wantKey)
			}
		})
	}
}

func TestTransport_RetriesA401OnceWithANewToken(t *testing.T) {
	for _, tt := range []struct {
		name       string
		replayable bool
		refuse     bool // a forced refresh was made lately
		rejectAll  bool
		wantSent   int
		wantStatus int
	}{
		{"replayable body: sent again with the new token", true, false, false, 2, 200},
		{"streamed body: not sent twice, the next request has the new token", false, false, false, 1, 401},
		{"no new token allowed yet: the 401 goes back", true, true, false, 1, 401},
		{"the new token is refused too: no third try", true, false, true, 2, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := &seenHeaders{reject: map[string]bool{"tok-1": true, "tok-2": tt.rejectAll}}
			src := &scriptedTokens{refuse: tt.refuse}
			resp, err := NewTransport(up, src, "c").RoundTrip(newRequest(t, "the body", tt.replayable))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || len(up.auth) != tt.wantSent {
				t.Fatalf("status %d after %d requests (%q), want %d after %d", resp.StatusCode, len(up.auth), up.auth, tt.wantStatus, tt.wantSent)
			}
			if len(src.invalidated) != 1 || src.invalidated[0] != "tok-1" {
				t.Errorf("invalidated %q, want tok-1 once", src.invalidated)
			}
			if tt.wantSent == 2 && (up.auth[1] != "Bearer tok-2" || up.bodies[1] != "the body") {
				t.Errorf("retry sent %q with body %q, want the new token and the same body", up.auth[1], up.bodies[1])
			}
		})
	}
}

func TestTransport_NoTokenIsUnavailable(t *testing.T) {
	up := &seenHeaders{}
	_, err := NewTransport(up, &scriptedTokens{err: context.DeadlineExceeded}, "c").RoundTrip(newRequest(t, "", true))
	var unavailable *UnavailableError
	if !errors.As(err, &unavailable) || !errors.Is(err, context.DeadlineExceeded) || len(up.auth) != 0 {
		t.Fatalf("error %v after %d requests, want an *UnavailableError and nothing sent", err, len(up.auth))
	}
}

func TestQueryTransport_TokenInTheQueryOnly(t *testing.T) {
	var seen *http.Request
	redirect := "https://cdn.example/f?sig=1"
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		seen = req
		status := http.StatusFound
		if strings.Contains(req.URL.Path, "expired") {
			status = http.StatusUnauthorized
		}
		h := http.Header{"Location": {redirect}}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(""))}, nil
	})
	src := &scriptedTokens{}
	qt := &QueryTransport{Base: base, Tokens: src}
	get := func(path string) (*http.Response, error) {
		req := newRequest(t, "", true)
		req.Method, req.URL.Path, req.URL.RawQuery = http.MethodGet, path, "size=1600&token=callers"
		return qt.RoundTrip(req)
	}
	resp, err := get("/Rest/Libraries/Download/1/1")
	if err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != redirect {
		t.Fatalf("download: %v, %v", resp, err)
	}
	if seen.URL.RawQuery != "size=1600&token=tok-1" || seen.Header.Get("Authorization") != "" || seen.Header.Get("X-Api-Key") != "" {
		t.Errorf("sent query %q, Authorization %q, x-api-key %q; want only the route's token, in the query",
			seen.URL.RawQuery, seen.Header.Get("Authorization"), seen.Header.Get("X-Api-Key"))
	}
	redirect = "https://cdn.example/f?token=tok-1"
	if _, err := get("/Rest/Libraries/Download/1/1"); !errors.Is(err, ErrTokenInRedirect) {
		t.Errorf("a redirect carrying the token: error %v, want ErrTokenInRedirect", err)
	}
	redirect = ""
	if resp, err := get("/expired"); err != nil || resp.StatusCode != 401 || len(src.invalidated) != 1 {
		t.Errorf("a refused token: %v, %v, invalidated %q; want the 401 passed on and the token dropped", resp, err, src.invalidated)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
