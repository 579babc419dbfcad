package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// NewTransport returns the HTTP transport for one route's upstream (and its
// IMS): a keep-alive pool sized for a busy sidecar, HTTP/2 when the upstream
// offers it, TIMEOUT as the response-header timeout, CA_FILE roots and the
// standard HTTPS_PROXY/NO_PROXY variables.
func NewTransport(rc *config.Route) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:       http.ProxyFromEnvironment,
		DialContext: dialer.DialContext,
		// A custom TLS config turns automatic HTTP/2 off unless forced.
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: rc.RootCAs, MinVersion: tls.VersionTLS12},
		// The default of 2 idle connections per host makes a busy sidecar
		// open and close connections to its single upstream all the time.
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: rc.Timeout,
		// Pass the caller's Accept-Encoding through and the body back as it
		// came: transparent decompression would cost CPU for nothing.
		DisableCompression: true,
	}
}

// retryingTransport resends a request once with a new token when the
// upstream rejects the one it carried (SPEC §4): the token is invalidated
// (at most one forced refresh per interval) and the request is replayed if
// its body can be (none, or buffered by bufferBody).
type retryingTransport struct {
	base   http.RoundTripper
	tokens TokenSource
	// observe, when set, receives the time to response headers of every
	// round trip (the upstream latency histogram).
	observe func(time.Duration)
}

func (t *retryingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || t.tokens == nil {
		return resp, err
	}
	sent, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || !t.tokens.Invalidate(sent) {
		return resp, nil
	}
	// Fetch the new token even when this request cannot be replayed: the
	// next one should not meet the rejected token again.
	fresh, err := t.tokens.Token(req.Context())
	if err != nil || fresh.Value == sent {
		return resp, nil
	}
	if req.Body != nil && req.GetBody == nil {
		return resp, nil // streamed body: cannot be sent twice
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	retry.Header.Set("Authorization", "Bearer "+fresh.Value)
	if fresh.ClientID != "" {
		retry.Header.Set("X-Api-Key", fresh.ClientID) // a reload may have changed the client
	}
	// Read a little of the rejected answer so its connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
	return t.roundTrip(retry)
}

func (t *retryingTransport) roundTrip(req *http.Request) (*http.Response, error) {
	if t.observe == nil {
		return t.base.RoundTrip(req)
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	t.observe(time.Since(start))
	return resp, err
}
