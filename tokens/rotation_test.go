package tokens

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// rotationEnv is a route whose credential files live in a directory,
// against the emulator, with its watcher driven by hand: a JWT route with
// key and certificate files (newRotationEnv), or an OAuth route with a
// client secret file (newSecretRotationEnv).
type rotationEnv struct {
	t          *testing.T
	adobe      *fakeadobe.Server
	imsURL     string
	creds      *fakeadobe.Credentials
	keyFile    string
	certFile   string
	secretFile string
	cfg        *config.Config
	logs       *testutil.Buffer
	now        atomic.Pointer[time.Time]

	mu      sync.Mutex
	outcome map[string]int // reloads counted by outcome
}

// count counts a reload, as the server's metric does.
func (e *rotationEnv) count(outcome string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.outcome == nil {
		e.outcome = map[string]int{}
	}
	e.outcome[outcome]++
}

// reloads is how many reloads ended with outcome.
func (e *rotationEnv) reloads(outcome string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.outcome[outcome]
}

// newRotationEmulator starts the emulator with a registered client; the
// caller writes the files and loads the configuration.
func newRotationEmulator(t *testing.T) *rotationEnv {
	t.Helper()
	adobe := fakeadobe.New(fakeadobe.Options{SigningKey: testutil.RSA(0)})
	ims := httptest.NewServer(adobe)
	t.Cleanup(ims.Close)
	creds, err := adobe.NewCredentials(fakeadobe.CredentialOptions{Key: testutil.RSA(1), Metascopes: []string{"ent_aem_cloud_api"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &rotationEnv{t: t, adobe: adobe, imsURL: ims.URL, creds: creds, logs: &testutil.Buffer{}}
	now := time.Now()
	e.now.Store(&now)
	return e
}

func newRotationEnv(t *testing.T) *rotationEnv {
	t.Helper()
	e := newRotationEmulator(t)
	creds := e.creds
	dir := t.TempDir()
	e.keyFile, e.certFile = filepath.Join(dir, "private.key"), filepath.Join(dir, "certificate.crt")
	e.write(e.keyFile, creds.PrivateKeyPEM())
	e.write(e.certFile, creds.CertificatePEM())
	e.load("aem",
		"CLIENT_ID="+creds.ClientID,
		"CLIENT_SECRET="+creds.ClientSecret,
		"ORG_ID="+creds.OrgID,
		"TECHNICAL_ACCOUNT_ID="+creds.TechnicalAccountID,
		"PRIVATE_KEY_FILE="+e.keyFile,
		"CERTIFICATE_FILE="+e.certFile)
	return e
}

// load configures the single route named route in front of the emulator,
// with vars (NAME=value, without the IMSPROXY_<ROUTE>_ prefix) for its
// credentials.
func (e *rotationEnv) load(route string, vars ...string) {
	e.t.Helper()
	prefix := "IMSPROXY_" + strings.ToUpper(route) + "_"
	env := []string{
		"IMSPROXY_ROUTES=" + route,
		"IMSPROXY_IMS_URL=" + e.imsURL,
		"IMSPROXY_ADMIN_LISTEN=127.0.0.1:0",
		prefix + "LISTEN=127.0.0.1:0",
		prefix + "UPSTREAM=" + e.imsURL,
	}
	for _, v := range vars {
		env = append(env, prefix+v)
	}
	cfg, err := config.Load(env)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cfg = cfg
}

func (e *rotationEnv) clock() time.Time { return *e.now.Load() }

func (e *rotationEnv) advance(d time.Duration) {
	next := e.clock().Add(d)
	e.now.Store(&next)
}

// write replaces a file atomically, as a careful operator (or a secret
// manager) does.
func (e *rotationEnv) write(path string, data []byte) {
	e.t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		e.t.Fatal(err)
	}
}

// newKey binds a certificate for key 2, valid for validity, to the client
// when register is set, and returns it.
func (e *rotationEnv) newKey(validity time.Duration, register bool) *fakeadobe.Credentials {
	e.t.Helper()
	c, err := fakeadobe.GenerateCredentials(fakeadobe.CredentialOptions{Key: testutil.RSA(2), Validity: validity})
	if err != nil {
		e.t.Fatal(err)
	}
	if register {
		if err := e.adobe.AddCertificate(e.creds.ClientID, c.Certificate); err != nil {
			e.t.Fatal(err)
		}
	}
	return c
}

// watcher builds the route's Manager, fetches its first token, and a
// Rotator of the route driven by the test (poll, reload).
func (e *rotationEnv) watcher() (*Rotator, *LiveCredentials, *Manager) {
	e.t.Helper()
	rc := &e.cfg.Routes[0]
	client := &http.Client{Timeout: 5 * time.Second}
	src, err := NewSource(rc, client)
	if err != nil {
		e.t.Fatal(err)
	}
	mgr := NewManager(rc.Name, src, Options{Kind: string(rc.Auth)})
	if _, err := mgr.Token(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	w := NewRotator(slog.New(slog.NewJSONHandler(e.logs, nil)), e.clock)
	return w, w.Add(rc, mgr, client, RotateOptions{Count: e.count}), mgr
}

// certificateOf is the fingerprint of the certificate that signed the JWT
// behind mgr's current token.
func (e *rotationEnv) certificateOf(mgr *Manager) string {
	e.t.Helper()
	tok, err := mgr.Token(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return e.adobe.LookupToken(tok.Value).Certificate
}

func TestCertificateWarning(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		expiry time.Time
		want   string // "" = no warning
	}{
		{"unknown", time.Time{}, ""},
		{"31 days left", now.Add(31 * 24 * time.Hour), ""},
		{"30 days left", now.Add(30 * 24 * time.Hour), "expires on 2026-05-31T12:00:00Z (in 30 days)"},
		{"a day and a bit left", now.Add(25 * time.Hour), "(in 1 day)"},
		{"a few hours left", now.Add(3 * time.Hour), "(in less than a day)"},
		{"expired", now.Add(-time.Hour), "expired on 2026-05-01T11:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CertificateWarning(tt.expiry, now)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("CertificateWarning = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestRotator_ReloadsARotatedKeyOnceTheFilesSettle(t *testing.T) {
	e := newRotationEnv(t)
	w, live, mgr := e.watcher()
	var replaced atomic.Int64
	live.onReplaced = func() { replaced.Add(1) }
	ctx := context.Background()
	oldCert := fakeadobe.Fingerprint(e.creds.Certificate)

	w.poll(ctx)
	if got := e.certificateOf(mgr); got != oldCert {
		t.Fatalf("before rotation the token comes from %s, want the old certificate %s", got, oldCert)
	}
	next := e.newKey(200*24*time.Hour, true)
	e.write(e.keyFile, next.PrivateKeyPEM())
	w.poll(ctx) // the key changed, the certificate not yet: wait
	if got := e.certificateOf(mgr); got != oldCert {
		t.Fatalf("reloaded before the files settled (token from %s)", got)
	}
	e.write(e.certFile, next.CertificatePEM())
	w.poll(ctx) // changed again: still settling
	w.poll(ctx) // unchanged for one interval: reload
	if got, want := e.certificateOf(mgr), fakeadobe.Fingerprint(next.Certificate); got != want {
		t.Fatalf("after rotation the token comes from %s, want the new certificate %s\nlogs:\n%s", got, want, e.logs)
	}
	if got := live.CertificateExpiry(); !got.Equal(next.Certificate.NotAfter) {
		t.Errorf("certificate expiry = %v, want the new certificate's %v", got, next.Certificate.NotAfter)
	}
	if st := live.ReloadStatus(); st == nil || st.Reloaded.IsZero() || st.LastError != "" {
		t.Errorf("reload status = %+v, want a successful reload", st)
	}
	if n := e.reloads("success"); n != 1 {
		t.Errorf("successful reloads = %v, want 1", n)
	}
	if n := replaced.Load(); n != 1 {
		t.Errorf("onReplaced (the cache purge) ran %d times, want 1", n)
	}
	if !strings.Contains(e.logs.String(), `"msg":"credentials reloaded"`) {
		t.Errorf("no reload logged:\n%s", e.logs)
	}
	if strings.Contains(e.logs.String(), "reload failed") {
		t.Errorf("a reload failed on the way (half-rotated files were read):\n%s", e.logs)
	}
	// Nothing changes: no further exchange.
	before := e.adobe.Stats().Exchanges["success"]
	w.poll(ctx)
	w.poll(ctx)
	if after := e.adobe.Stats().Exchanges["success"]; after != before {
		t.Errorf("unchanged files caused %d exchanges", after-before)
	}
	// A SIGHUP with the files unchanged (sent to reload the admin token)
	// reloads the same credentials: the search cache is kept.
	w.reload(ctx, live, "SIGHUP", fingerprint(live.cfg.Files))
	if n := e.reloads("success"); n != 2 {
		t.Errorf("successful reloads = %v, want 2", n)
	}
	if n := replaced.Load(); n != 1 {
		t.Errorf("a reload of the files in use emptied the cache (onReplaced ran %d times, want 1)", n)
	}
}

func TestRotator_BrokenFileKeepsTheOldCredentials(t *testing.T) {
	e := newRotationEnv(t)
	w, live, mgr := e.watcher()
	var replaced atomic.Int64
	live.onReplaced = func() { replaced.Add(1) }
	ctx := context.Background()
	before, err := mgr.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	garbage := "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LXNlY3JldC1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
	e.write(e.keyFile, []byte(garbage))
	w.poll(ctx)
	w.poll(ctx)
	after, err := mgr.Token(ctx)
	if err != nil || after.Value != before.Value {
		t.Fatalf("token after a broken reload: changed=%v err=%v; want the old one kept", after.Value != before.Value, err)
	}
	st := live.ReloadStatus()
	if st == nil || !strings.Contains(st.LastError, "IMSPROXY_AEM_PRIVATE_KEY_FILE") || st.LastErrorAt.IsZero() {
		t.Fatalf("reload status = %+v, want the error naming the variable", st)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "credentials reload failed; the old credentials stay in use") ||
		!strings.Contains(logs, "IMSPROXY_AEM_PRIVATE_KEY_FILE") {
		t.Errorf("reload failure not logged with the variable:\n%s", logs)
	}
	if strings.Contains(logs, "bm90LWEta2V5") {
		t.Errorf("the file's content reached the log:\n%s", logs)
	}
	if n := replaced.Load(); n != 0 {
		t.Errorf("onReplaced (the cache purge) ran after a failed reload")
	}
	// A configuration problem is not retried until the file changes.
	w.poll(ctx)
	e.advance(time.Hour)
	w.poll(ctx)
	if n := strings.Count(e.logs.String(), "reload failed"); n != 1 {
		t.Errorf("%d failures logged for one broken file, want 1", n)
	}
	// Fixing the file recovers.
	e.write(e.keyFile, e.creds.PrivateKeyPEM())
	w.poll(ctx)
	w.poll(ctx)
	if st := live.ReloadStatus(); st == nil || st.LastError != "" || st.Reloaded.IsZero() {
		t.Errorf("reload status after the fix = %+v, want the error cleared", st)
	}
}

func TestRotator_RetriesAReloadIMSRefused(t *testing.T) {
	e := newRotationEnv(t)
	w, live, mgr := e.watcher()
	ctx := context.Background()
	// The operator installs the new key before uploading its certificate.
	next := e.newKey(365*24*time.Hour, false)
	e.write(e.keyFile, next.PrivateKeyPEM())
	e.write(e.certFile, next.CertificatePEM())
	w.poll(ctx)
	w.poll(ctx)
	st := live.ReloadStatus()
	if st == nil || !strings.Contains(st.LastError, "invalid_signature") {
		t.Fatalf("reload status = %+v, want invalid_signature", st)
	}
	if !strings.Contains(e.logs.String(), `"hint":"the private key does not match any certificate`) {
		t.Errorf("the failure is logged without the IMS hint:\n%s", e.logs)
	}
	if got := e.certificateOf(mgr); got != fakeadobe.Fingerprint(e.creds.Certificate) {
		t.Fatalf("the refused key replaced the old one (token from %s)", got)
	}
	if err := e.adobe.AddCertificate(e.creds.ClientID, next.Certificate); err != nil {
		t.Fatal(err)
	}
	w.poll(ctx) // the retry is not due yet
	if got := e.certificateOf(mgr); got == fakeadobe.Fingerprint(next.Certificate) {
		t.Fatal("retried before the backoff")
	}
	e.advance(minReloadRetry)
	w.poll(ctx)
	if got := e.certificateOf(mgr); got != fakeadobe.Fingerprint(next.Certificate) {
		t.Fatalf("after the retry the token comes from %s, want the new certificate\nlogs:\n%s", got, e.logs)
	}
}

func TestRotator_WarnsOfACertificateAboutToExpire(t *testing.T) {
	e := newRotationEnv(t)
	w, _, _ := e.watcher()
	ctx, cancel := context.WithCancel(context.Background())
	e.advance(time.Until(e.creds.Certificate.NotAfter) - 10*24*time.Hour - time.Hour)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.logs.String(), "the certificate expires on") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if logs := e.logs.String(); !strings.Contains(logs, `"level":"WARN","msg":"the certificate expires on`) ||
		!strings.Contains(logs, "(in 10 days)") {
		t.Errorf("no expiry warning at start:\n%s", logs)
	}
}
