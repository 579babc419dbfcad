package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// The tests below check what NewTransport promises an operator: HTTP/2 when
// the upstream offers it, CA_FILE as the trust for the upstream's
// certificate, and HTTPS_PROXY. Each builds its route from the environment
// with config.Load, as the binary does.

// protoRecorder answers 200 "ok" and remembers the protocol of every request.
type protoRecorder struct {
	mu     sync.Mutex
	protos []string
}

func (p *protoRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.protos = append(p.protos, r.Proto)
	p.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

func (p *protoRecorder) All() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.protos)
}

// newTLSUpstream starts an HTTPS upstream that offers HTTP/2, with cert (nil
// = httptest's certificate for 127.0.0.1), and writes that certificate to a
// PEM file fit for CA_FILE, whose path it returns.
func newTLSUpstream(t *testing.T, h http.Handler, cert *tls.Certificate) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	// Some tests expect the proxy to refuse the certificate: the server's
	// "TLS handshake error" lines would only be noise.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	block := &pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}
	if err := os.WriteFile(caFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// selfSignedCert returns a certificate for the DNS name host that signs
// itself, as an internal CA would hand out: trusted only through CA_FILE.
func selfSignedCert(t *testing.T, host string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// loadRoute loads the generic route "api" in front of upstream through
// config.Load, without credentials so that only the transport is under
// test; more adds variables such as IMSPROXY_API_CA_FILE.
func loadRoute(t *testing.T, upstream string, more ...string) *config.Route {
	t.Helper()
	cfg, err := config.Load(append([]string{
		"IMSPROXY_ROUTES=api",
		"IMSPROXY_ADMIN_LISTEN=127.0.0.1:0",
		"IMSPROXY_API_LISTEN=127.0.0.1:0",
		"IMSPROXY_API_UPSTREAM=" + upstream,
		"IMSPROXY_API_AUTH=none",
		"IMSPROXY_API_TIMEOUT=10s",
	}, more...))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Routes[0]
}

// serveRoute serves route rc on the transport NewTransport builds for it and
// returns a client for it whose requests are bounded in time.
func serveRoute(t *testing.T, rc *config.Route) (*httptest.Server, *http.Client) {
	t.Helper()
	transport := NewTransport(rc)
	t.Cleanup(transport.CloseIdleConnections)
	front := httptest.NewServer(NewRoute(rc, nil, RouteOptions{Transport: transport}))
	t.Cleanup(front.Close)
	// front.Client has no Proxy: the test's own call must go straight to
	// the route.
	client := front.Client()
	client.Timeout = 20 * time.Second
	return front, client
}

// getStatus returns the status of GET url and the proxy's error code, if any.
func getStatus(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(route.ErrorHeader)
}

func TestRoute_UsesHTTP2WithTLSUpstreamThatOffersIt(t *testing.T) {
	up := &protoRecorder{}
	upstream, caFile := newTLSUpstream(t, up, nil)
	front, client := serveRoute(t, loadRoute(t, upstream.URL, "IMSPROXY_API_CA_FILE="+caFile))

	if status, code := getStatus(t, client, front.URL+"/v1/items"); status != http.StatusOK {
		t.Fatalf("status = %d %q, want 200", status, code)
	}
	if got := up.All(); !slices.Equal(got, []string{"HTTP/2.0"}) {
		t.Errorf("upstream saw protocols %q, want [HTTP/2.0]", got)
	}
}

func TestRoute_TrustsUpstreamCertificateOnlyThroughCAFile(t *testing.T) {
	tests := []struct {
		name       string
		withCAFile bool
		wantStatus int
		wantCode   string // X-Imsproxy-Error, "" for the upstream's answer
		wantSeen   int    // requests the upstream received
	}{
		{"without CA_FILE the self-signed upstream is refused", false, http.StatusBadGateway, route.CodeUpstreamUnreachable, 0},
		{"with CA_FILE the upstream is reached", true, http.StatusOK, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &protoRecorder{}
			upstream, caFile := newTLSUpstream(t, up, nil)
			var more []string
			if tt.withCAFile {
				more = append(more, "IMSPROXY_API_CA_FILE="+caFile)
			}
			front, client := serveRoute(t, loadRoute(t, upstream.URL, more...))

			status, code := getStatus(t, client, front.URL+"/v1/items")
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("answer %d %q, want %d %q", status, code, tt.wantStatus, tt.wantCode)
			}
			if got := len(up.All()); got != tt.wantSeen {
				t.Errorf("upstream received %d requests, want %d", got, tt.wantSeen)
			}
		})
	}
}

// connectProxy is an HTTPS_PROXY as a corporate network runs one: it
// answers CONNECT with a tunnel. It dials target whatever host it is asked
// for, so the upstream can carry a name that is not loopback (Go never sends
// a loopback host to a proxy) and that resolves nowhere (so reaching the
// upstream at all shows the proxy carried the request).
type connectProxy struct {
	target  string
	mu      sync.Mutex
	asked   []string   // the host:port of every CONNECT
	conns   []net.Conn // both ends of every tunnel, closed at cleanup
	tunnels sync.WaitGroup
}

func newConnectProxy(t *testing.T, target string) (*connectProxy, *httptest.Server) {
	t.Helper()
	p := &connectProxy{target: target}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close() // no handler runs after this, so conns is complete
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.tunnels.Wait()
	})
	return p, srv
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "this proxy only tunnels (CONNECT)", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.asked = append(p.asked, r.Host)
	p.mu.Unlock()
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	caller, buffered, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = upstream.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, caller, upstream)
	p.mu.Unlock()
	if _, err := io.WriteString(caller, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = caller.Close()
		_ = upstream.Close()
		return
	}
	// Either side hanging up ends the tunnel in both directions.
	pipe := func(dst io.Writer, src io.Reader) {
		defer p.tunnels.Done()
		_, _ = io.Copy(dst, src)
		_ = caller.Close()
		_ = upstream.Close()
	}
	p.tunnels.Add(2)
	go pipe(upstream, buffered)
	go pipe(caller, upstream)
}

func (p *connectProxy) connects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}

// Set in the environment of the child process of
// TestRoute_ReachesHTTPSUpstreamThroughHTTPSProxy.
const (
	proxyChildUpstreamVar = "TRANSPORT_TEST_CHILD_UPSTREAM"
	proxyChildCAFileVar   = "TRANSPORT_TEST_CHILD_CA_FILE"
	proxyChildStatusVar   = "TRANSPORT_TEST_CHILD_STATUS" // the status the child must get
)

// HTTPS_PROXY cannot be set with t.Setenv: http.ProxyFromEnvironment reads
// the environment once per process (see envProxyFunc in net/http), and any
// earlier test's request has already done so. The test therefore runs
// itself again as a child process whose environment names the proxy; the
// child makes the request, the parent checks what the proxy and the
// upstream saw.
func TestRoute_ReachesHTTPSUpstreamThroughHTTPSProxy(t *testing.T) {
	if upstreamURL := os.Getenv(proxyChildUpstreamVar); upstreamURL != "" {
		front, client := serveRoute(t, loadRoute(t, upstreamURL, "IMSPROXY_API_CA_FILE="+os.Getenv(proxyChildCAFileVar)))
		want, _ := strconv.Atoi(os.Getenv(proxyChildStatusVar))
		if status, code := getStatus(t, client, front.URL+"/v1/items"); status != want {
			t.Fatalf("status = %d %q, want %d", status, code, want)
		}
		return
	}

	const upstreamHost = "upstream.test" // RFC 6761: never resolves
	tests := []struct {
		name     string
		noProxy  string
		status   int // the route's answer in the child
		connects int // CONNECTs the proxy was asked for
	}{
		{"HTTPS_PROXY carries the request", "", http.StatusOK, 1},
		// Without the proxy the name does not resolve: the route's 502.
		{"NO_PROXY names the upstream", "example.org," + upstreamHost, http.StatusBadGateway, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := selfSignedCert(t, upstreamHost)
			up := &protoRecorder{}
			upstream, caFile := newTLSUpstream(t, up, &cert)
			_, port, err := net.SplitHostPort(upstream.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			proxy, proxySrv := newConnectProxy(t, upstream.Listener.Addr().String())

			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRoute_ReachesHTTPSUpstreamThroughHTTPSProxy$", "-test.count=1", "-test.v")
			child.Env = append(withoutProxyVariables(os.Environ()),
				"HTTPS_PROXY="+proxySrv.URL,
				"NO_PROXY="+tt.noProxy,
				proxyChildUpstreamVar+"=https://"+net.JoinHostPort(upstreamHost, port),
				proxyChildCAFileVar+"="+caFile,
				proxyChildStatusVar+"="+strconv.Itoa(tt.status))
			if out, err := child.CombinedOutput(); err != nil {
				t.Fatalf("child process: %v\n%s", err, out)
			}

			if got := len(proxy.connects()); got != tt.connects {
				t.Errorf("proxy was asked for %d CONNECTs (%q), want %d", got, proxy.connects(), tt.connects)
			}
			if got := len(up.All()); got != tt.connects {
				t.Errorf("upstream received %d requests, want %d", got, tt.connects)
			}
		})
	}
}

// withoutProxyVariables drops the proxy settings of the test's own
// environment, which would change where the child's requests go
// (REQUEST_METHOD, a CGI variable, makes Go ignore HTTP_PROXY).
func withoutProxyVariables(environ []string) []string {
	return slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUEST_METHOD":
			return true
		}
		return false
	})
}
