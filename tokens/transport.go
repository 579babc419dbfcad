package tokens

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// TokenSource is what a Transport needs of a Manager.
type TokenSource interface {
	// Token returns a valid token, waiting for one exchange at most.
	Token(ctx context.Context) (Token, error)
	// Invalidate drops the token the upstream rejected; false when a
	// new one may not be fetched yet (a forced refresh was made lately).
	Invalidate(ctx context.Context, value string) bool
}

var (
	_ TokenSource       = (*Manager)(nil)
	_ http.RoundTripper = (*Transport)(nil)
	_ http.RoundTripper = (*QueryTransport)(nil)
)

// Transport is an http.RoundTripper that adds a route's credentials to
// every request it carries, the way golang.org/x/oauth2's Transport adds
// its token: Authorization: Bearer with the current token, and x-api-key
// with the client the token was issued to (ClientID when it names none).
// When the upstream answers 401 to the token it carried, that token is
// invalidated and the request is sent once more with a new one, if its
// body can be sent again (no body, or GetBody).
//
// It sets the headers on the request it is given rather than on a copy,
// unlike what http.RoundTripper asks: the requests it carries are made for
// it (the reverse proxy's outgoing clone, the editorial lookup's own
// request), and copying every request's header map would cost the hot
// path several allocations. Because it runs after the reverse proxy has
// removed hop-by-hop headers, nothing a caller sends (Connection:
// Authorization) can strip the credentials.
type Transport struct {
	base     http.RoundTripper
	tokens   TokenSource // nil: no token, only x-api-key
	clientID []string    // nil: none

	// bearer caches the header values of the current token: they are
	// shared by every request that carries it.
	bearer atomic.Pointer[credentialHeaders]
}

// credentialHeaders are the header values of one token.
type credentialHeaders struct {
	token         string
	authorization []string
	apiKey        []string // nil: the Transport's clientID
}

// NewTransport returns a Transport sending through base with tokens from
// src (nil: none) and clientID as the default x-api-key ("" for none).
func NewTransport(base http.RoundTripper, src TokenSource, clientID string) *Transport {
	t := &Transport{base: base, tokens: src}
	if clientID != "" {
		t.clientID = []string{clientID}
	}
	return t
}

// RoundTrip implements http.RoundTripper. A token that cannot be had is
// an *UnavailableError.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := req.Header
	// Whatever the caller sent as credentials never travels upstream.
	delete(h, "Authorization")
	delete(h, "Proxy-Authorization")
	delete(h, "X-Api-Key")
	if t.tokens == nil {
		if t.clientID != nil {
			h["X-Api-Key"] = t.clientID
		}
		return t.base.RoundTrip(req)
	}
	tok, err := t.tokens.Token(req.Context())
	if err != nil {
		return nil, unavailable(err)
	}
	creds := t.headersFor(tok)
	h["Authorization"] = creds.authorization
	if apiKey := creds.apiKey; apiKey != nil {
		h["X-Api-Key"] = apiKey
	} else if t.clientID != nil {
		h["X-Api-Key"] = t.clientID
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	return t.retry(req, resp, tok)
}

// retry sends req once more with a new token after the upstream refused
// sent with 401. It returns the refusal when that cannot be done.
func (t *Transport) retry(req *http.Request, refused *http.Response, sent Token) (*http.Response, error) {
	if !t.tokens.Invalidate(req.Context(), sent.Value) {
		return refused, nil
	}
	// The new token is fetched even when this request cannot be sent
	// again: the next one should not meet the rejected token.
	fresh, err := t.tokens.Token(req.Context())
	if err != nil || fresh.Value == sent.Value {
		return refused, nil
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return refused, nil // a streamed body cannot be sent twice
	}
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		if again.Body, err = req.GetBody(); err != nil {
			return refused, nil
		}
	}
	creds := t.headersFor(fresh)
	again.Header["Authorization"] = creds.authorization
	if creds.apiKey != nil {
		again.Header["X-Api-Key"] = creds.apiKey // a reload may have changed the client
	}
	// Read a little of the refusal so that its connection can be reused.
	_, _ = io.CopyN(io.Discard, refused.Body, 4<<10)
	_ = refused.Body.Close()
	return t.base.RoundTrip(again)
}

func (t *Transport) headersFor(tok Token) *credentialHeaders {
	if c := t.bearer.Load(); c != nil && c.token == tok.Value {
		return c
	}
	c := &credentialHeaders{token: tok.Value, authorization: []string{"Bearer " + tok.Value}}
	if tok.ClientID != "" {
		c.apiKey = []string{tok.ClientID}
	}
	t.bearer.Store(c)
	return c
}

// unavailable makes any failure to get a token an *UnavailableError, so
// that the caller is told "no token" rather than "upstream unreachable".
func unavailable(err error) error {
	var u *UnavailableError
	if errors.As(err, &u) {
		return err
	}
	return &UnavailableError{Err: err}
}

// QueryTransport carries requests to Stock's download host, which takes
// the access token in the token query parameter and fails a download that
// carries an Authorization header: it removes every credential header,
// puts the current token in the query (replacing any the caller sent),
// refuses to pass on a redirect that carries the token, and invalidates a
// token the host refuses with 401 (the caller retries). Like Transport it
// edits the request it is given.
type QueryTransport struct {
	Base   http.RoundTripper
	Tokens TokenSource // nil: no token is added
}

// ErrTokenInRedirect is returned when the download host redirected to a
// URL that carries the access token: such a redirect is not passed on.
var ErrTokenInRedirect = errors.New("the download host redirected to a URL carrying the access token; the redirect was not passed on")

// RoundTrip implements http.RoundTripper.
func (t *QueryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := req.Header
	delete(h, "Authorization")
	delete(h, "Proxy-Authorization")
	delete(h, "X-Api-Key")
	if t.Tokens == nil {
		return t.Base.RoundTrip(req) // no credentials: the caller's own token, if any, goes on
	}
	tok, err := t.Tokens.Token(req.Context())
	if err != nil {
		return nil, unavailable(err)
	}
	req.URL.RawQuery = withToken(req.URL.RawQuery, tok.Value)
	resp, err := t.Base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	// The redirect goes to a signed URL that needs no token; one that
	// carries ours must not reach the caller.
	if loc := resp.Header.Get("Location"); loc != "" && strings.Contains(loc, url.QueryEscape(tok.Value)) {
		_ = resp.Body.Close()
		return nil, ErrTokenInRedirect
	}
	// The download host refused the token ("This download is expired"):
	// the next request gets a new one; this one cannot be sent again from
	// here, the caller retries.
	if resp.StatusCode == http.StatusUnauthorized {
		t.Tokens.Invalidate(req.Context(), tok.Value)
	}
	return resp, nil
}

// withToken returns rawQuery with any token parameter of the caller's
// replaced by token, the other parameters kept in their order.
func withToken(rawQuery, token string) string {
	var parts []string
	for _, p := range strings.Split(rawQuery, "&") {
		if p == "" {
			continue
		}
		k, _, _ := strings.Cut(p, "=")
		if key, err := url.QueryUnescape(k); err == nil && key == "token" || k == "token" {
			continue
		}
		parts = append(parts, p)
	}
	return strings.Join(append(parts, "token="+url.QueryEscape(token)), "&")
}
