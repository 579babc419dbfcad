package proxy

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/route"
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

// observed times every round trip to its response headers (the upstream
// latency histogram).
type observed struct {
	base    http.RoundTripper
	observe func(time.Duration)
}

func (o observed) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := o.base.RoundTrip(req)
	o.observe(time.Since(start))
	return resp, err
}

// copyBuffers is shared by all routes: at most 128 idle buffers (4 MiB).
var copyBuffers = newBufferPool(128)

// reverseProxy forwards to target, the route's variable upstream
// (UPSTREAM, DOWNLOAD_UPSTREAM), through transport (which adds the
// credentials), paths and queries unchanged. product, when not "", is the
// X-Product sent when the caller sent none: it is set after hop-by-hop
// headers are removed, so that "Connection: X-Product" cannot strip it.
func reverseProxy(target *url.URL, upstream string, transport http.RoundTripper, product string) *httputil.ReverseProxy {
	var productHeader []string
	if product != "" {
		productHeader = []string{product}
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// ReverseProxy drops the query parameters Go cannot parse
			// (a ";" in one) before Rewrite; the query is the caller's.
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			if productHeader != nil && len(pr.Out.Header["X-Product"]) == 0 {
				pr.Out.Header["X-Product"] = productHeader
			}
		},
		Transport:  transport,
		BufferPool: copyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			route.HostError(w, r, err, upstream)
		},
		// The reverse proxy logs one thing, an upstream body that broke
		// off, without the request's fields: WatchBody notes it in the
		// request's error line instead.
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),

		// The answer already carries the request's id; an upstream that
		// echoes it, as Stock does, would make it appear twice.
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del(route.RequestIDHeader)
			route.WatchBody(resp)
			return nil
		},
	}
}

// bufferPool lends the reverse proxy its 32 KiB copy buffers. A bounded
// channel rather than a sync.Pool: the BufferPool interface passes bare
// slices, which a sync.Pool could only hold by allocating a pointer per Put.
type bufferPool struct{ free chan []byte }

func newBufferPool(size int) bufferPool { return bufferPool{free: make(chan []byte, size)} }

func (p bufferPool) Get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (p bufferPool) Put(b []byte) {
	select {
	case p.free <- b:
	default: // enough are idle already; let this one go
	}
}
