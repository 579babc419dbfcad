package fakeadobe

import (
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Service names one emulated Adobe service, for faults and statistics.
type Service string

// The emulated services.
const (
	ServiceIMS      Service = "ims"      // ims-na1.adobelogin.com
	ServiceStock    Service = "stock"    // stock.adobe.io
	ServiceDownload Service = "download" // stock.adobe.com downloads and signed files
	ServiceCDN      Service = "cdn"      // thumbnails (*.ftcdn.net)
	ServiceAEM      Service = "aem"      // an AEM author instance
	ServiceBlob     Service = "blob"     // AEM's blob storage (direct binary upload)
	serviceControl  Service = "control"
	serviceOther    Service = "other"
)

// Services lists the services faults can be set on.
var Services = []Service{ServiceIMS, ServiceStock, ServiceDownload, ServiceCDN, ServiceAEM, ServiceBlob}

func serviceOf(path string) Service {
	switch {
	case strings.HasPrefix(path, "/_fake/") || path == "/_fake":
		return serviceControl
	case strings.HasPrefix(path, "/ims/"):
		return ServiceIMS
	case strings.HasPrefix(path, "/Rest/Libraries/Download/"),
		strings.HasPrefix(path, "/Rest/Libraries/Watermarked/Download/"),
		strings.HasPrefix(path, "/files/"):
		return ServiceDownload
	case strings.HasPrefix(path, "/Rest/"):
		return ServiceStock
	case strings.HasPrefix(path, "/jpg/"), strings.HasPrefix(path, "/videos/"):
		return ServiceCDN
	case strings.HasPrefix(path, "/api/assets"), strings.HasPrefix(path, "/content/"),
		strings.HasPrefix(path, "/graphql/"):
		return ServiceAEM
	case strings.HasPrefix(path, "/blob/"):
		return ServiceBlob
	}
	return serviceOther
}

// Faults is what goes wrong with one service, or is unusual in its answers.
type Faults struct {
	// Down makes every request fail with 503 (an outage).
	Down bool `json:"down"`
	// Latency delays every answer, before the service does anything: a
	// caller that gives up meanwhile changes nothing (IMS that hangs).
	Latency Duration `json:"latency"`
	// AnswerLatency delays every answer after the service has done its
	// work: a license is sold, then its answer is late, as when Stock
	// commits a purchase before the answer crosses the internet. A caller
	// that gives up meanwhile does not undo it.
	AnswerLatency Duration `json:"answer_latency,omitempty"`
	// EchoTrace answers TRACE (and TRACK) with the request as received,
	// headers and all, as Apache httpd does by default (TraceEnable On):
	// an AEM 6.5 dispatcher in front of AEM, for instance.
	EchoTrace bool `json:"echo_trace,omitempty"`
	// ErrorEvery makes every Nth request fail (deterministic); 0 = never.
	ErrorEvery int `json:"error_every"`
	// ErrorRate makes a request fail with this probability, drawn from
	// a random source seeded by Options.Seed; 0 = never.
	ErrorRate float64 `json:"error_rate"`
	// ErrorStatus is the status of injected failures: 0 = 500 for IMS
	// (its documented internal_error), 503 elsewhere. 429 adds
	// Retry-After: 1, as Stock's gateway does.
	ErrorStatus int `json:"error_status"`
	// Header is set on every answer before the service writes its own
	// headers (which win): {"Cache-Control":"no-store"}, an ETag... Over
	// the control API, fields merge into it; "header":null clears it.
	Header map[string]string `json:"header,omitempty"`
	// PadTo pads every JSON answer shorter than this many bytes with
	// trailing spaces up to it: still valid JSON with the same content,
	// for answers bigger than the service's own (a Stock search answer
	// is at most about 330 KB); 0 = never. The padding is compressed
	// with the answer when the client accepts gzip.
	PadTo int `json:"pad_to,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as "1.5s" (a
// number is taken as milliseconds).
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if v, err := time.ParseDuration(s); err == nil {
		*d = Duration(v)
		return nil
	}
	var ms int64
	if _, err := fmt.Sscanf(s, "%d", &ms); err == nil && fmt.Sprint(ms) == s {
		*d = Duration(time.Duration(ms) * time.Millisecond)
		return nil
	}
	return fmt.Errorf("invalid duration %q", s)
}

// UnmarshalJSON accepts "1.5s" and plain milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	return d.UnmarshalText([]byte(strings.Trim(string(b), `"`)))
}

type faultSet struct {
	mu     sync.Mutex
	rng    *rand.Rand
	faults map[Service]Faults
	count  map[Service]int
}

func newFaultSet(seed uint64, initial Faults) *faultSet {
	fs := &faultSet{
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		faults: map[Service]Faults{},
		count:  map[Service]int{},
	}
	for _, svc := range Services {
		fs.faults[svc] = initial.clone()
	}
	return fs
}

// clone copies f with a Header of its own: a stored Header is never
// changed in place, so decide may hand it out.
func (f Faults) clone() Faults {
	f.Header = maps.Clone(f.Header)
	return f
}

type faultDecision struct {
	delay     time.Duration
	late      time.Duration // AnswerLatency
	echoTrace bool
	fail      int // status, 0 = none
	down      bool
	header    map[string]string // read only
	padTo     int
}

func (fs *faultSet) decide(svc Service) faultDecision {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.faults[svc]
	if !ok {
		return faultDecision{}
	}
	fs.count[svc]++
	d := faultDecision{delay: time.Duration(f.Latency), late: time.Duration(f.AnswerLatency), echoTrace: f.EchoTrace,
		header: f.Header, padTo: f.PadTo}
	status := f.ErrorStatus
	if status == 0 {
		status = http.StatusServiceUnavailable
		if svc == ServiceIMS {
			status = http.StatusInternalServerError
		}
	}
	switch {
	case f.Down:
		d.fail, d.down = http.StatusServiceUnavailable, true
	case f.ErrorEvery > 0 && fs.count[svc]%f.ErrorEvery == 0:
		d.fail = status
	case f.ErrorRate > 0 && fs.rng.Float64() < f.ErrorRate:
		d.fail = status
	}
	return d
}

func (fs *faultSet) set(svc Service, f Faults) {
	fs.mu.Lock()
	fs.faults[svc] = f.clone()
	fs.count[svc] = 0
	fs.mu.Unlock()
}

func (fs *faultSet) get(svc Service) Faults {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.faults[svc].clone()
}

func (fs *faultSet) update(svc Service, fn func(*Faults)) {
	fs.mu.Lock()
	f := fs.faults[svc].clone()
	fn(&f)
	fs.faults[svc] = f
	fs.mu.Unlock()
}

// SetFaults replaces the faults of one service (and restarts its ErrorEvery
// count). Unknown services are ignored.
func (s *Server) SetFaults(svc Service, f Faults) {
	for _, known := range Services {
		if known == svc {
			s.faults.set(svc, f)
		}
	}
}

// Faults returns the faults of one service.
func (s *Server) Faults(svc Service) Faults { return s.faults.get(svc) }

// SetIMSDown starts or ends an IMS outage: both token endpoints answer 503.
func (s *Server) SetIMSDown(down bool) {
	s.faults.update(ServiceIMS, func(f *Faults) { f.Down = down })
}

// SetStockDown starts or ends an outage of the Stock API host (not of the
// download host, which is ServiceDownload).
func (s *Server) SetStockDown(down bool) {
	s.faults.update(ServiceStock, func(f *Faults) { f.Down = down })
}

// SetAEMDown starts or ends an AEM outage.
func (s *Server) SetAEMDown(down bool) {
	s.faults.update(ServiceAEM, func(f *Faults) { f.Down = down })
}

// SetLatency delays every answer of every service by d.
func (s *Server) SetLatency(d time.Duration) {
	for _, svc := range Services {
		s.faults.update(svc, func(f *Faults) { f.Latency = Duration(d) })
	}
}

// writeInjectedFailure answers a fault in the service's own error shape.
func writeInjectedFailure(w http.ResponseWriter, svc Service, status int, down bool) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	switch svc {
	case ServiceIMS:
		code, desc := "internal_error", "Please try again later"
		if down {
			code, desc = "temporarily_unavailable", "The service is temporarily unavailable"
		}
		writeIMSError(w, status, code, desc)
	case ServiceStock, ServiceDownload:
		switch status {
		case http.StatusTooManyRequests:
			writeGatewayError(w, status, "429050", "Too many requests")
		default:
			writeGatewayError(w, status, fmt.Sprintf("%d000", status), http.StatusText(status))
		}
	default:
		http.Error(w, http.StatusText(status), status)
	}
}

// lateWriter holds the answer back by delay once the service starts to
// write it (AnswerLatency): whatever the service did is done, whether or
// not the client is still there when the answer leaves.
type lateWriter struct {
	http.ResponseWriter
	delay  time.Duration
	gone   <-chan struct{} // the client went away: stop waiting
	waited bool
}

func (l *lateWriter) wait() {
	if l.waited {
		return
	}
	l.waited = true
	t := time.NewTimer(l.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.gone:
	}
}

func (l *lateWriter) WriteHeader(code int) {
	if code >= 200 {
		l.wait()
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *lateWriter) Write(b []byte) (int, error) {
	l.wait()
	return l.ResponseWriter.Write(b)
}

// finish holds back an answer that wrote nothing at all.
func (l *lateWriter) finish() { l.wait() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (l *lateWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// echoTrace answers a TRACE as Apache httpd does with TraceEnable On: 200,
// message/http, the request line and headers as received.
func echoTrace(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	b.WriteString(r.Method + " " + r.RequestURI + " " + r.Proto + "\r\n")
	b.WriteString("Host: " + r.Host + "\r\n")
	_ = r.Header.Write(&b)
	b.WriteString("\r\n")
	w.Header().Set("Content-Type", "message/http")
	_, _ = io.WriteString(w, b.String())
}

// padWriter pads a JSON answer with trailing spaces to Faults.PadTo bytes
// once the service has written it.
type padWriter struct {
	http.ResponseWriter
	to, n int
}

func (p *padWriter) Write(b []byte) (int, error) {
	n, err := p.ResponseWriter.Write(b)
	p.n += n
	return n, err
}

// finish writes the padding: only after a JSON body, and never past a
// Content-Length the service set.
func (p *padWriter) finish() {
	h := p.Header()
	if p.n == 0 || p.n >= p.to || h.Get("Content-Length") != "" ||
		!strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		return
	}
	spaces := []byte(strings.Repeat(" ", 64<<10))
	for p.n < p.to {
		if _, err := p.Write(spaces[:min(len(spaces), p.to-p.n)]); err != nil {
			return
		}
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (p *padWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
