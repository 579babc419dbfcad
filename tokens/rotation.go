package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// Rotation without downtime: a changed credential file, or SIGHUP, reloads
// a route's credentials; the new ones replace the old only once they have
// produced a token (Manager.Replace), so a certificate or client secret is
// rotated without dropping a request.

const (
	// pollInterval is how often the credential files are read. Polling
	// rather than inotify: Kubernetes updates a mounted secret by swapping
	// the ..data symlink of its directory, which a watch on the file never
	// sees, and reading a few small files a second costs nothing measurable.
	pollInterval = time.Second
	// A reload whose exchange failed (IMS down, new certificate not yet
	// uploaded) is retried with backoff while the files stay as they are;
	// one the configuration rejected waits for the files to change again.
	minReloadRetry = 30 * time.Second
	maxReloadRetry = 5 * time.Minute
	// certificateCheckInterval is how often expiry warnings are repeated.
	certificateCheckInterval = 24 * time.Hour
	// CertificateWarningPeriod is how long before its expiry a certificate
	// is warned about.
	CertificateWarningPeriod = 30 * 24 * time.Hour
)

// CertificateWarning returns the warning due for a certificate expiring at
// expiry, seen at now: "" while more than CertificateWarningPeriod is left
// (or the expiry is unknown).
func CertificateWarning(expiry, now time.Time) string {
	if expiry.IsZero() {
		return ""
	}
	left := expiry.Sub(now)
	date := expiry.UTC().Format(time.RFC3339)
	switch {
	case left <= 0:
		return "the certificate expired on " + date + ": IMS refuses every exchange signed by its key; " +
			"add a new certificate in the Adobe Developer Console and install the new credentials"
	case left <= CertificateWarningPeriod:
		in := "less than a day"
		switch days := int(left.Hours() / 24); days {
		case 0:
		case 1:
			in = "1 day"
		default:
			in = strconv.Itoa(days) + " days"
		}
		return "the certificate expires on " + date + " (in " + in + "): add a new certificate in the Adobe Developer Console " +
			"and install the new credentials before then; the proxy picks them up without a restart"
	}
	return ""
}

// ReloadStatus is what /readyz shows of a route's credential reloads.
type ReloadStatus struct {
	Reloaded    time.Time `json:"reloaded_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// LiveCredentials is one route's credential state as reloads change it.
type LiveCredentials struct {
	cfg    *config.Route // as loaded; never written, so readers need no lock
	mgr    *Manager      // nil for AUTH=none: nothing to reload
	client *http.Client  // the route's IMS client
	count  func(outcome string)

	certExpiry atomic.Int64 // Unix nanoseconds; 0 when unknown

	// onReplaced, when set, runs once new credentials have replaced the
	// old: the server empties the route's search cache there, since search
	// answers carry the old organisation's is_licensed. A reload of the
	// very files in use (a SIGHUP sent to reload the admin token) keeps it.
	onReplaced func()
	wrap       func(rc *config.Route, src Source) (Source, error)

	mu     sync.Mutex // guards status
	status ReloadStatus

	// Only the watcher's goroutine touches these.
	seen     string    // fingerprint of the files last acted on
	pending  string    // a new fingerprint waiting one poll for writes to settle
	retryAt  time.Time // when to retry a reload whose exchange failed; zero: none
	failures int
	inUse    string // fingerprint of the files of the credentials in use
}

// CertificateExpiry is when the route's certificate expires (zero: unknown).
func (l *LiveCredentials) CertificateExpiry() time.Time {
	if l == nil {
		return time.Time{}
	}
	if n := l.certExpiry.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (l *LiveCredentials) setCertificateExpiry(t time.Time) {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	l.certExpiry.Store(n)
}

// ReloadStatus returns the reload state for /readyz; nil before any reload.
func (l *LiveCredentials) ReloadStatus() *ReloadStatus {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.status == (ReloadStatus{}) {
		return nil
	}
	s := l.status
	return &s
}

// Rotator reloads the routes' credentials when their files change or on
// Reload, and warns of certificates about to expire.
type Rotator struct {
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	routes   []*LiveCredentials
	hup      chan struct{} // a pending Reload; buffered 1
}

// NewRotator returns a Rotator logging to log, on the clock now (nil:
// time.Now).
func NewRotator(log *slog.Logger, now func() time.Time) *Rotator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Rotator{log: log, now: clock(now), interval: pollInterval, hup: make(chan struct{}, 1)}
}

// RotateOptions are the hooks of one route's rotation.
type RotateOptions struct {
	// Count, when set, counts each reload by outcome ("success",
	// "failure").
	Count func(outcome string)
	// OnReplaced, when set, runs once new credentials have replaced the
	// old.
	OnReplaced func()
	// Wrap, when set, wraps the Source made of reloaded credentials as
	// the route's first one was (a shared token).
	Wrap func(rc *config.Route, src Source) (Source, error)
}

// Add starts tracking route rc, whose tokens mgr (nil for AUTH=none) gets
// from IMS through client. The files are fingerprinted now, so that a
// change made from here on is noticed. Add every route before Run.
func (w *Rotator) Add(rc *config.Route, mgr *Manager, client *http.Client, opts RotateOptions) *LiveCredentials {
	fp := fingerprint(rc.Files)
	l := &LiveCredentials{cfg: rc, mgr: mgr, client: client, seen: fp, inUse: fp,
		count: opts.Count, onReplaced: opts.OnReplaced, wrap: opts.Wrap}
	if l.count == nil {
		l.count = func(string) {}
	}
	l.setCertificateExpiry(rc.Credentials.CertificateExpiry)
	w.routes = append(w.routes, l)
	return l
}

// Reload asks Run to read every route's credentials again, as SIGHUP
// does: the new ones replace the old once they have produced a token. It
// returns at once; a Reload asked for while one is pending is merged with
// it.
func (w *Rotator) Reload() {
	select {
	case w.hup <- struct{}{}:
	default:
	}
}

// Run polls the files and serves Reload until ctx is done.
func (w *Rotator) Run(ctx context.Context) {
	poll := time.NewTicker(w.interval)
	defer poll.Stop()
	daily := time.NewTicker(certificateCheckInterval)
	defer daily.Stop()
	for _, l := range w.routes {
		w.warnCertificate(l)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.hup:
			for _, l := range w.routes {
				if l.mgr != nil {
					w.reload(ctx, l, "SIGHUP", fingerprint(l.cfg.Files))
				}
			}
		case <-poll.C:
			w.poll(ctx)
		case <-daily.C:
			for _, l := range w.routes {
				w.warnCertificate(l)
			}
		}
	}
}

// poll reloads each route whose files changed and have stayed the same for
// one interval since (a file copied in place is read whole, not half
// written), and retries failed exchanges that are due.
func (w *Rotator) poll(ctx context.Context) {
	for _, l := range w.routes {
		if l.mgr == nil || len(l.cfg.Files) == 0 {
			continue
		}
		fp := fingerprint(l.cfg.Files)
		switch {
		case fp == l.seen:
			l.pending = ""
			if !l.retryAt.IsZero() && !w.now().Before(l.retryAt) {
				w.reload(ctx, l, "retry", fp)
			}
		case fp != l.pending:
			l.pending = fp
		default:
			w.reload(ctx, l, "file change", fp)
		}
	}
}

// reload reads route l's credentials again and hands them to its Manager,
// which swaps them in only once they have produced a token. fp is the
// fingerprint of the files being acted on.
func (w *Rotator) reload(ctx context.Context, l *LiveCredentials, trigger, fp string) {
	l.seen, l.pending, l.retryAt = fp, "", time.Time{}
	name := l.cfg.Name
	creds, _, err := l.cfg.ReloadCredentials()
	var src Source
	if err == nil {
		next := *l.cfg
		next.Credentials = creds
		src, err = NewSource(&next, l.client)
		if err == nil && src != nil && l.wrap != nil {
			src, err = l.wrap(&next, src)
		}
	}
	if err != nil {
		// A configuration problem: retrying the same files cannot help.
		w.failed(l, trigger, err)
		return
	}
	if err := l.mgr.Replace(ctx, src); err != nil {
		if ctx.Err() != nil {
			return // shutting down
		}
		l.failures++
		l.retryAt = w.now().Add(min(minReloadRetry<<min(l.failures-1, 10), maxReloadRetry))
		w.failed(l, trigger, err, "retry_at", l.retryAt.UTC().Format(time.RFC3339))
		return
	}
	l.failures = 0
	if fp != l.inUse && l.onReplaced != nil {
		l.onReplaced()
	}
	l.inUse = fp
	l.setCertificateExpiry(creds.CertificateExpiry)
	l.mu.Lock()
	l.status = ReloadStatus{Reloaded: w.now()}
	l.mu.Unlock()
	l.count("success")
	attrs := []any{"route", name, "trigger", trigger, "client_id", creds.ClientID}
	if !creds.CertificateExpiry.IsZero() {
		attrs = append(attrs, "certificate_expiry", creds.CertificateExpiry.UTC().Format(time.RFC3339))
	}
	w.log.Info("credentials reloaded", attrs...)
	w.warnCertificate(l)
}

// failed records and logs a reload that left the old credentials in use.
// err never holds a secret: configuration problems name variables, and IMS
// errors are scrubbed by the tokens package.
func (w *Rotator) failed(l *LiveCredentials, trigger string, err error, extra ...any) {
	now := w.now()
	l.mu.Lock()
	l.status.LastError, l.status.LastErrorAt = err.Error(), now
	l.mu.Unlock()
	l.count("failure")
	attrs := []any{"route", l.cfg.Name, "trigger", trigger, "error", err}
	var ie *IMSError
	if errors.As(err, &ie) {
		attrs = append(attrs, "ims_error", ErrorCode(err), "hint", ie.Hint())
	}
	w.log.Error("credentials reload failed; the old credentials stay in use", append(attrs, extra...)...)
}

// warnCertificate logs the route's certificate warning, if one is due.
func (w *Rotator) warnCertificate(l *LiveCredentials) {
	exp := l.CertificateExpiry()
	msg := CertificateWarning(exp, w.now())
	if msg == "" {
		return
	}
	level := slog.LevelWarn
	if !exp.After(w.now()) {
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, msg, "route", l.cfg.Name,
		"certificate_expiry", exp.UTC().Format(time.RFC3339))
}

// fingerprint hashes the contents of files, following symlinks, so that a
// Kubernetes secret update (a new ..data directory swapped in) counts as a
// change of every file in it. A file that cannot be read has a fingerprint
// too: its reappearance is a change.
func fingerprint(files []string) string {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte("\x00unreadable: " + err.Error())
		}
		fmt.Fprintf(h, "%d:%s\x00%d:", len(f), f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
