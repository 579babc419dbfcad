package fakeadobe

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults used when the matching Options field is zero.
const (
	DefaultTokenLifetime  = 24 * time.Hour
	DefaultCatalogueSize  = 5000
	DefaultCatalogueSeed  = 20240601
	DefaultRequestLogSize = 1000
	DefaultQuota          = 100
	// ClockSkew is how far past its exp IMS still accepts a JWT.
	ClockSkew = 30 * time.Second
)

// Options configures a Server. The zero value is a working emulator.
type Options struct {
	// IMSBaseURL is the IMS base URL the JWTs must name in aud and in their
	// metascope claims, e.g. "http://127.0.0.1:8900". Empty: derived from
	// each request ("http://" + Host), which is right whenever the client
	// was configured with the address it connects to.
	IMSBaseURL string
	// DownloadBaseURL is the base of license download URLs (stock.adobe.com
	// in production). Empty: derived from each request, so the API and the
	// download host share one listener.
	DownloadBaseURL string
	// CDNBaseURL is the base of thumbnail URLs (*.ftcdn.net in production).
	// Empty: the download base.
	CDNBaseURL string
	// TokenLifetime is the lifetime of issued access tokens; 0 = 24 h.
	TokenLifetime time.Duration
	// Faults applies to every service from the start (see SetFaults).
	Faults Faults
	// Seed drives the fault-injection random numbers (ErrorRate).
	Seed uint64
	// CatalogueSize is the number of generated Stock assets; 0 = 5000.
	CatalogueSize int
	// CatalogueSeed seeds the catalogue generator; 0 = DefaultCatalogueSeed.
	// The same size and seed always give the same catalogue.
	CatalogueSeed uint64
	// RequestLogSize is how many requests Requests keeps; 0 = 1000.
	RequestLogSize int
	// Region is the IMS region named in tokens ("as" claim); "" = "ims-na1".
	Region string
	// SigningKey signs access tokens; nil = a fresh 2048-bit key.
	SigningKey *rsa.PrivateKey
	// DisableControl removes the /_fake/ control API.
	DisableControl bool
	// TLS makes every listener speak HTTPS, with a certificate for
	// 127.0.0.1, ::1 and localhost signed by a CA generated for this
	// emulator (CACertificatePEM), for clients that only speak HTTPS.
	TLS bool
	// BlobBaseURL is the base of the upload URIs of direct binary upload
	// (AEM's blob storage, another origin than AEM). Empty: Start gives
	// blob storage a listener of its own (see StartBlob).
	BlobBaseURL string
	// UploadMinPartSize and UploadMaxPartSize bound the parts of a direct
	// binary upload; 0 = DefaultUploadMinPartSize, DefaultUploadMaxPartSize.
	// Tests lower the minimum to split small files into parts.
	UploadMinPartSize, UploadMaxPartSize int64
	// Now is the clock; nil = time.Now. Tests inject one to expire tokens
	// without sleeping.
	Now func() time.Time
	// Logger receives one debug line per request; nil = discard.
	Logger *slog.Logger
}

// Server is the emulator. It is safe for concurrent use.
type Server struct {
	opts    Options
	now     func() time.Time
	log     *slog.Logger
	cat     *catalogue
	dam     *dam
	uploads *uploads
	gql     *graphQL
	tls     *serverTLS
	signKey *rsa.PrivateKey
	fileKey []byte // HMAC key of signed file URLs
	faults  *faultSet
	rec     *recorder
	handler http.Handler

	mu           sync.Mutex
	clients      map[string]*clientState
	orgs         map[string]*orgState
	tokens       map[string]*tokenRecord
	lifetime     time.Duration
	downloadBase string
	blobBase     string
	tokenSeq     uint64
	memberSeq    int

	srvMu   sync.Mutex
	serving sync.WaitGroup // the listeners' Serve loops, waited for by Shutdown and Close
	httpSrv []*http.Server
	url     string
}

var _ http.Handler = (*Server)(nil)

// New builds a Server. It panics only if the system random source fails.
func New(opts Options) *Server {
	s := &Server{
		opts:         opts,
		now:          opts.Now,
		log:          opts.Logger,
		clients:      map[string]*clientState{},
		orgs:         map[string]*orgState{},
		tokens:       map[string]*tokenRecord{},
		lifetime:     opts.TokenLifetime,
		downloadBase: strings.TrimSuffix(opts.DownloadBaseURL, "/"),
		blobBase:     strings.TrimSuffix(opts.BlobBaseURL, "/"),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.lifetime <= 0 {
		s.lifetime = DefaultTokenLifetime
	}
	if s.opts.Region == "" {
		s.opts.Region = "ims-na1"
	}
	s.signKey = opts.SigningKey
	if s.signKey == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Sprintf("fakeadobe: generate signing key: %v", err))
		}
		s.signKey = k
	}
	s.fileKey = make([]byte, 32)
	if _, err := rand.Read(s.fileKey); err != nil {
		panic(fmt.Sprintf("fakeadobe: random: %v", err))
	}
	size, seed := opts.CatalogueSize, opts.CatalogueSeed
	if size <= 0 {
		size = DefaultCatalogueSize
	}
	if seed == 0 {
		seed = DefaultCatalogueSeed
	}
	s.cat = newCatalogue(size, seed)
	s.dam = newDAM()
	s.uploads = newUploads(opts.UploadMinPartSize, opts.UploadMaxPartSize)
	s.gql = newGraphQL()
	if opts.TLS {
		t, err := newServerTLS()
		if err != nil {
			panic(fmt.Sprintf("fakeadobe: generate TLS certificates: %v", err))
		}
		s.tls = t
	}
	s.faults = newFaultSet(opts.Seed, opts.Faults)
	logSize := opts.RequestLogSize
	if logSize <= 0 {
		logSize = DefaultRequestLogSize
	}
	s.rec = newRecorder(logSize)
	s.handler = s.routes()
	return s
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ims/exchange/jwt", s.handleExchangeJWT)
	mux.HandleFunc("/ims/exchange/jwt/", s.handleExchangeJWT)
	mux.HandleFunc("/ims/token/v3", s.handleToken)
	mux.HandleFunc("/ims/token/v2", s.handleToken)
	mux.HandleFunc("/ims/", s.handleIMSNotFound)
	mux.HandleFunc("/Rest/", s.handleStock)
	mux.HandleFunc("/Rest/Libraries/Download/", s.handleDownload)
	mux.HandleFunc("/Rest/Libraries/Watermarked/Download/", s.handleDownload)
	mux.HandleFunc("/files/", s.handleFile)
	mux.HandleFunc("/jpg/", s.handleThumbnail)
	mux.HandleFunc("/videos/", s.handleThumbnail)
	mux.HandleFunc("/api/assets.json", s.handleAEMAPI)
	mux.HandleFunc("/api/assets/", s.handleAEMAPI)
	mux.HandleFunc("/content/dam/", s.handleAEMBinary)
	mux.HandleFunc("/content/dam.initiateUpload.json", s.handleAEMBinary)
	mux.HandleFunc("/content/dam.completeUpload.json", s.handleAEMBinary)
	mux.HandleFunc("/content/", s.handleAEMNotFound)
	mux.HandleFunc("/content/graphql/", s.handleGraphQLEndpoint)
	mux.HandleFunc("/content/cq:graphql/", s.handleGraphQLEndpoint)
	mux.HandleFunc("/graphql/", s.handlePersistedQueries)
	// Every other path: a JSON 404 as AEM's Sling answers it, not Go's
	// plain-text one, which no Adobe service sends.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
	})
	if !s.opts.DisableControl {
		s.controlRoutes(mux)
	}
	return mux
}

// ServeHTTP implements http.Handler: every request is recorded, then delayed
// or failed as the service's faults say, then answered (with the faults'
// headers and padding; Stock's answers gzip-encoded for a client that
// accepts gzip).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, s.handler)
}

// serve records, delays or fails, and answers one request with h.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, h http.Handler) {
	svc := serviceOf(r.URL.Path)
	if svc == serviceControl {
		h.ServeHTTP(w, r)
		return
	}
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	entry, r := s.observe(r, svc)
	defer func() {
		entry.Status = rw.status
		s.rec.add(*entry)
		s.log.Debug("fakeadobe request", "service", svc, "endpoint", entry.Endpoint,
			"method", r.Method, "path", r.URL.Path, "status", rw.status)
	}()
	var out http.ResponseWriter = rw
	if svc == ServiceStock {
		// Stock's answers are compressed for a client that asks, as API
		// gateways commonly do (the proxy's cache stores them so).
		out.Header().Set("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header) {
			gz := &gzipWriter{ResponseWriter: rw}
			defer gz.close()
			out = gz
		}
	}
	f := s.faults.decide(svc)
	for k, v := range f.header {
		out.Header().Set(k, v)
	}
	if f.padTo > 0 {
		pw := &padWriter{ResponseWriter: out, to: f.padTo}
		defer pw.finish()
		out = pw
	}
	if f.late > 0 {
		lw := &lateWriter{ResponseWriter: out, delay: f.late, gone: r.Context().Done()}
		defer lw.finish()
		out = lw
	}
	if f.echoTrace && (r.Method == http.MethodTrace || r.Method == "TRACK") {
		echoTrace(out, r)
		return
	}
	if f.delay > 0 || f.fail != 0 {
		if f.delay > 0 {
			t := time.NewTimer(f.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				rw.status = 499 // client went away, as nginx logs it
				return
			}
		}
		if f.fail != 0 {
			entry.Injected = true
			writeInjectedFailure(out, svc, f.fail, f.down)
			return
		}
	}
	h.ServeHTTP(out, r)
}

// DownloadHandler serves only the download host's paths (licensed and
// watermarked downloads, signed files, thumbnails) and 404s everything else,
// for a setup that gives the download host its own listener.
func (s *Server) DownloadHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch serviceOf(r.URL.Path) {
		case ServiceDownload, ServiceCDN:
			s.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// Start listens on addr (default "127.0.0.1:0") and serves in the
// background. The address must be a loopback address: the emulator hands out
// tokens to anyone who asks. Unless Options.BlobBaseURL or StartBlob gave
// blob storage its address, it also starts blob storage on a free port of
// the same host. It returns the base URL, also given by URL.
func (s *Server) Start(addr string) (string, error) {
	u, err := s.start(addr, s, false)
	if err != nil {
		return "", err
	}
	if s.BlobBaseURL() == "" {
		host := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
		host, _, _ = net.SplitHostPort(host)
		if _, err := s.StartBlob(net.JoinHostPort(host, "0")); err != nil {
			_ = s.Close()
			return "", err
		}
	}
	return u, nil
}

// StartDownload gives the download host its own loopback listener (serving
// DownloadHandler) and makes license answers point at it. It returns its
// base URL.
func (s *Server) StartDownload(addr string) (string, error) {
	u, err := s.start(addr, s.DownloadHandler(), true)
	if err != nil {
		return "", err
	}
	s.SetDownloadBaseURL(u)
	return u, nil
}

func (s *Server) start(addr string, h http.Handler, secondary bool) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fakeadobe: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		// A client that does not trust the TLS mode's CA is its own
		// business: its handshake errors go to the debug log.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	u := "http://" + ln.Addr().String()
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls.config)
		u = "https://" + ln.Addr().String()
	}
	s.srvMu.Lock()
	s.httpSrv = append(s.httpSrv, srv)
	if !secondary {
		s.url = u
	}
	s.srvMu.Unlock()
	s.serving.Go(func() { _ = srv.Serve(ln) })
	return u, nil
}

// checkLoopback refuses any listen address that is not on loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("fakeadobe: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("fakeadobe: listen address %q is not a loopback address (use 127.0.0.1)", addr)
	}
	return nil
}

// URL is the base URL of the listener started by Start ("" before).
func (s *Server) URL() string {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	return s.url
}

// Shutdown stops the listeners started by Start and StartDownload, letting
// in-flight requests finish until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.srvMu.Lock()
	srvs := s.httpSrv
	s.httpSrv = nil
	s.srvMu.Unlock()
	var errs []error
	for _, srv := range srvs {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.serving.Wait()
	return errors.Join(errs...)
}

// Close stops the listeners at once.
func (s *Server) Close() error {
	s.srvMu.Lock()
	srvs := s.httpSrv
	s.httpSrv = nil
	s.srvMu.Unlock()
	var errs []error
	for _, srv := range srvs {
		if err := srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.serving.Wait()
	return errors.Join(errs...)
}

// SetTokenLifetime sets the lifetime of tokens issued from now on; tokens
// already issued keep theirs. d <= 0 restores the 24 h default.
func (s *Server) SetTokenLifetime(d time.Duration) {
	if d <= 0 {
		d = DefaultTokenLifetime
	}
	s.mu.Lock()
	s.lifetime = d
	s.mu.Unlock()
}

// TokenLifetime is the lifetime given to new tokens.
func (s *Server) TokenLifetime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lifetime
}

// SetDownloadBaseURL sets the base of license download URLs; "" derives it
// from each request.
func (s *Server) SetDownloadBaseURL(u string) {
	s.mu.Lock()
	s.downloadBase = strings.TrimSuffix(u, "/")
	s.mu.Unlock()
}

// baseOf is the scheme and host the request was addressed to.
func baseOf(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) imsBase(r *http.Request) string {
	if s.opts.IMSBaseURL != "" {
		return strings.TrimSuffix(s.opts.IMSBaseURL, "/")
	}
	return baseOf(r)
}

func (s *Server) downloadBaseFor(r *http.Request) string {
	s.mu.Lock()
	b := s.downloadBase
	s.mu.Unlock()
	if b != "" {
		return b
	}
	return baseOf(r)
}

func (s *Server) cdnBase(r *http.Request) string {
	if s.opts.CDNBaseURL != "" {
		return strings.TrimSuffix(s.opts.CDNBaseURL, "/")
	}
	return s.downloadBaseFor(r)
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
