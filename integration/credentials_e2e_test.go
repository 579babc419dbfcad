package integration

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// Credential operations end to end (issue 4): rotation under load, the
// Kubernetes secret update, a broken file, SIGHUP, and the check, keygen
// and token commands, all against the emulator.

// writeAtomic replaces path by a rename, as a careful operator or a secret
// manager does.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// jwtEnv configures one aem route with JWT credentials against a, the key
// in keyFile.
func (a *adobe) jwtEnv(c *fakeadobe.Credentials, keyFile string) map[string]string {
	return map[string]string{
		"IMSPROXY_ROUTES":                   "aem",
		"IMSPROXY_IMS_URL":                  a.URL,
		"IMSPROXY_AEM_UPSTREAM":             a.URL,
		"IMSPROXY_AEM_CLIENT_ID":            c.ClientID,
		"IMSPROXY_AEM_CLIENT_SECRET":        c.ClientSecret,
		"IMSPROXY_AEM_ORG_ID":               c.OrgID,
		"IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID": c.TechnicalAccountID,
		"IMSPROXY_AEM_PRIVATE_KEY_FILE":     keyFile,
	}
}

// newKey is a key other than the shared one (the old key of a rotation).
func newKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	return testutil.RSA(1)
}

// load is callers sending requests continuously through the proxy.
type load struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	ok     atomic.Int64
	failed atomic.Int64

	mu       sync.Mutex
	failures []string // the first few, for the report
}

// startLoad starts clients callers each sending GET url in a loop (at most
// 20000 each, so a test that forgets to stop them still ends).
func startLoad(t *testing.T, url string, clients int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for range clients {
		l.wg.Go(func() {
			for range 20000 {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(url)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.fail(fmt.Sprintf("%d %s", resp.StatusCode, body))
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 5 {
		l.failures = append(l.failures, msg)
	}
}

// waitOK waits until n more requests have succeeded, failing after 30 s.
func (l *load) waitOK(t *testing.T, n int64) {
	t.Helper()
	want := l.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.ok.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests succeeded within 30 s (%d failed: %v)", l.ok.Load(), want, l.failed.Load(), l.failures)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// finish stops the callers and fails the test if any request failed.
func (l *load) finish(t *testing.T) {
	t.Helper()
	l.end()
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed, e.g. %v", n, n+l.ok.Load(), l.failures)
	}
	t.Logf("%d requests, none failed", l.ok.Load())
}

// readyzRoute is the part of a route's /readyz entry these tests read.
type readyzRoute struct {
	Ready             bool      `json:"ready"`
	CertificateExpiry time.Time `json:"certificate_expiry"`
	Reload            *struct {
		Reloaded  time.Time `json:"reloaded_at"`
		LastError string    `json:"last_error"`
	} `json:"credentials_reload"`
}

func (p *proxyProcess) readyzRoute(route string) (int, readyzRoute) {
	p.t.Helper()
	status, body, err := getBody(p.AdminURL() + "/readyz")
	if err != nil {
		p.t.Fatal(err)
	}
	var r struct {
		Routes map[string]readyzRoute `json:"routes"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		p.t.Fatalf("/readyz: %v: %s", err, body)
	}
	return status, r.Routes[route]
}

// getBody is a GET without t, for use from any goroutine.
func getBody(url string) (int, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestE2E_RotateKeyUnderLoadThenRevokeTheOldCertificate follows the certificate rotation AEM documents
// ("Refresh Credentials"): a new certificate is added, the new key is
// installed, and once it is in use the old certificate is revoked, while
// 20 callers send requests all along.
func TestE2E_RotateKeyUnderLoadThenRevokeTheOldCertificate(t *testing.T) {
	// Short-lived tokens, so that many exchanges happen after the switch.
	a := startAdobe(t, fakeadobe.Options{TokenLifetime: 4 * time.Second})
	old := a.newCredentials(t, fakeadobe.CredentialOptions{})
	keyFile := filepath.Join(t.TempDir(), "private.key")
	writeAtomic(t, keyFile, old.PrivateKeyPEM())
	p := startProxy(t, a.jwtEnv(old, keyFile))
	p.waitReady()

	l := startLoad(t, p.URL("aem")+"/api/assets.json", 20)
	l.waitOK(t, 200)

	next, err := fakeadobe.GenerateCredentials(fakeadobe.CredentialOptions{Key: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.AddCertificate(old.ClientID, next.Certificate); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, keyFile, next.PrivateKeyPEM())
	p.waitLog(`"msg":"credentials reloaded"`)
	l.waitOK(t, 200)

	revokedAt := time.Now()
	if err := a.RevokeCertificate(old.ClientID, fakeadobe.Fingerprint(old.Certificate)); err != nil {
		t.Fatal(err)
	}
	after := a.Stats().Exchanges["success"]
	waitFor(t, 30*time.Second, "three exchanges after the revocation", func() bool { return a.Stats().Exchanges["success"] >= after+3 })
	l.waitOK(t, 200)
	l.finish(t)

	if st := a.Stats(); st.Exchanges["invalid_signature"] != 0 {
		t.Errorf("the proxy signed %d exchanges with the revoked key: %v", st.Exchanges["invalid_signature"], st.Exchanges)
	}
	newFP := fakeadobe.Fingerprint(next.Certificate)
	checked := 0
	for _, rec := range a.Requests(200) {
		if rec.Endpoint != "aem.api" {
			continue
		}
		checked++
		if rec.Token.Certificate != newFP || !rec.Token.IssuedAt.After(revokedAt) {
			t.Fatalf("a late request carried a token from certificate %q issued %v; want the new certificate's, issued after the revocation at %v",
				rec.Token.Certificate, rec.Token.IssuedAt, revokedAt)
		}
	}
	if checked == 0 {
		t.Fatal("the emulator recorded no late AEM request")
	}
	if strings.Contains(p.stderr.String(), "reload failed") {
		t.Errorf("a reload failed:\n%s", p.stderr.String())
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d", code)
	}
}

// k8sSecret is a directory laid out as Kubernetes mounts a secret: the
// files are symlinks through ..data, a symlink to a timestamped directory
// that an update replaces in one rename.
type k8sSecret struct {
	t   *testing.T
	dir string
	gen int
}

func newK8sSecret(t *testing.T, files map[string][]byte) *k8sSecret {
	s := &k8sSecret{t: t, dir: t.TempDir()}
	s.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// update writes a new version and swaps ..data to it atomically, as the
// kubelet does, then removes the old version.
func (s *k8sSecret) update(files map[string][]byte) {
	s.t.Helper()
	s.gen++
	version := fmt.Sprintf("..2026_05_01_12_00_%02d.%d", s.gen, s.gen)
	if err := os.Mkdir(filepath.Join(s.dir, version), 0o755); err != nil {
		s.t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.dir, version, name), data, 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	previous, _ := os.Readlink(filepath.Join(s.dir, "..data"))
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		s.t.Fatal(err)
	}
	if previous != "" {
		if err := os.RemoveAll(filepath.Join(s.dir, previous)); err != nil {
			s.t.Fatal(err)
		}
	}
}

func serviceCredentials(t *testing.T, c *fakeadobe.Credentials, ims string) []byte {
	t.Helper()
	b, err := c.ServiceCredentialsJSON(ims)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestE2E_KubernetesSecretUpdateSwitchesToAnotherTechnicalAccount updates
// a mounted secret the way the kubelet does, to the service credentials of
// another technical account (another client ID), under load: the proxy
// follows, and no request ever pairs one client's token with the other's
// x-api-key.
func TestE2E_KubernetesSecretUpdateSwitchesToAnotherTechnicalAccount(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{RequestLogSize: 200000})
	first := a.newCredentials(t, fakeadobe.CredentialOptions{Validity: 300 * 24 * time.Hour})
	second := a.newCredentials(t, fakeadobe.CredentialOptions{Key: newKey(t), Validity: 200 * 24 * time.Hour})
	const name = "aem-service-credentials.json"
	secret := newK8sSecret(t, map[string][]byte{name: serviceCredentials(t, first, a.URL)})
	p := startProxy(t, map[string]string{
		"IMSPROXY_ROUTES":               "aem",
		"IMSPROXY_IMS_URL":              a.URL,
		"IMSPROXY_AEM_UPSTREAM":         a.URL,
		"IMSPROXY_AEM_CREDENTIALS_FILE": filepath.Join(secret.dir, name),
	})
	p.waitReady()
	if _, r := p.readyzRoute("aem"); !r.CertificateExpiry.Equal(first.Certificate.NotAfter) {
		t.Fatalf("certificate_expiry = %v, want the first certificate's %v", r.CertificateExpiry, first.Certificate.NotAfter)
	}

	l := startLoad(t, p.URL("aem")+"/api/assets.json", 20)
	l.waitOK(t, 200)
	secret.update(map[string][]byte{name: serviceCredentials(t, second, a.URL)})
	p.waitLog(`"client_id":"` + second.ClientID + `"`)
	l.waitOK(t, 300)
	l.finish(t)

	var firstKey, secondKey int
	for _, rec := range a.Requests(0) {
		if rec.Endpoint != "aem.api" {
			continue
		}
		if rec.APIKey != rec.Token.ClientID {
			t.Fatalf("request %d carried x-api-key %s with a token of client %s", rec.Seq, rec.APIKey, rec.Token.ClientID)
		}
		switch rec.APIKey {
		case first.ClientID:
			firstKey++
		case second.ClientID:
			secondKey++
		}
	}
	if firstKey == 0 || secondKey == 0 {
		t.Fatalf("requests with the first client %d, with the second %d: want both", firstKey, secondKey)
	}

	status, r := p.readyzRoute("aem")
	if status != http.StatusOK || !r.CertificateExpiry.Equal(second.Certificate.NotAfter) ||
		r.Reload == nil || r.Reload.Reloaded.IsZero() || r.Reload.LastError != "" {
		t.Errorf("/readyz %d %+v, want ready with the second certificate's expiry %v and a reload", status, r, second.Certificate.NotAfter)
	}
	_, _, metrics := httpGet(t, p.AdminURL()+"/metrics")
	want := `imsproxy_certificate_expiry_timestamp_seconds{route="aem"} ` +
		strconv.FormatFloat(float64(second.Certificate.NotAfter.Unix()), 'g', -1, 64)
	if !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

// TestE2E_BrokenCredentialsFileKeepsTheOldCredentials installs a truncated
// credentials file: the error is logged and shown in /readyz, requests keep
// being served with the old credentials, and the fixed file is picked up.
func TestE2E_BrokenCredentialsFileKeepsTheOldCredentials(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	file := filepath.Join(t.TempDir(), "aem-service-credentials.json")
	good := serviceCredentials(t, c, a.URL)
	writeAtomic(t, file, good)
	p := startProxy(t, map[string]string{
		"IMSPROXY_ROUTES":               "aem",
		"IMSPROXY_IMS_URL":              a.URL,
		"IMSPROXY_AEM_UPSTREAM":         a.URL,
		"IMSPROXY_AEM_CREDENTIALS_FILE": file,
	})
	p.waitReady()
	l := startLoad(t, p.URL("aem")+"/api/assets.json", 20)
	l.waitOK(t, 100)

	// Cut off mid-way, as by a failed copy: the secret is in the part kept.
	writeAtomic(t, file, good[:bytes.Index(good, []byte(c.ClientSecret))+len(c.ClientSecret)+5])
	p.waitLog("credentials reload failed; the old credentials stay in use")
	l.waitOK(t, 200)
	status, r := p.readyzRoute("aem")
	if status != http.StatusOK || !r.Ready || r.Reload == nil ||
		!strings.Contains(r.Reload.LastError, "IMSPROXY_AEM_CREDENTIALS_FILE: is not a JSON object") {
		t.Fatalf("/readyz %d %+v: want ready, with the reload error naming the variable", status, r)
	}

	writeAtomic(t, file, good)
	p.waitLog(`"msg":"credentials reloaded"`)
	l.waitOK(t, 100)
	l.finish(t)
	if _, r := p.readyzRoute("aem"); r.Reload == nil || r.Reload.LastError != "" {
		t.Errorf("after the fix /readyz still shows %+v", r.Reload)
	}
	if logs := p.stderr.String(); strings.Contains(logs, c.ClientSecret) || strings.Contains(logs, "PRIVATE KEY") {
		t.Errorf("a secret from the broken file reached the log:\n%s", logs)
	}
}

func TestE2E_SIGHUPReloadsCredentials(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	keyFile := filepath.Join(t.TempDir(), "private.key")
	writeAtomic(t, keyFile, c.PrivateKeyPEM())
	p := startProxy(t, a.jwtEnv(c, keyFile))
	p.waitReady()
	before := a.Stats().Exchanges["success"]

	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`"trigger":"SIGHUP"`)
	if after := a.Stats().Exchanges["success"]; after != before+1 {
		t.Errorf("exchanges %d → %d: want one, with the re-read credentials", before, after)
	}
	if status, _, _ := httpGet(t, p.URL("aem")+"/api/assets.json"); status != http.StatusOK {
		t.Errorf("after SIGHUP a request got %d", status)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code = %d: SIGHUP must not stop the proxy", code)
	}
}

// TestE2E_CheckAgainstGoodAndMisconfiguredIMS runs `imsproxy check` with
// the same proxy configuration against an emulator whose binding is right,
// then wrong in the three ways operators meet most.
func TestE2E_CheckAgainstGoodAndMisconfiguredIMS(t *testing.T) {
	tests := []struct {
		name      string
		breakIMS  func(a *adobe, c *fakeadobe.Credentials) error
		wantCode  int
		wantLines []string
	}{
		{"good", nil, 0, []string{"): token retrieved successfully, expires in 23h59m\n", "  certificate valid until "}},
		{"client without the exchange_jwt scope", func(a *adobe, c *fakeadobe.Credentials) error {
			cl := c.Client()
			cl.NoExchangeJWT = true
			return a.RegisterClient(cl)
		}, 1, []string{
			"): FAILED invalid_client: Client ID does not have the exchange_jwt scope\n",
			"  hint: the client id and client secret do not match (was the secret rotated?), or the client lacks the exchange_jwt scope",
		}},
		{"certificate revoked", func(a *adobe, c *fakeadobe.Credentials) error {
			return a.RevokeCertificate(c.ClientID, fakeadobe.Fingerprint(c.Certificate))
		}, 1, []string{
			"): FAILED invalid_signature: The JWT signature does not match any certificate on record for given iss / sub combination\n",
			"  hint: the private key does not match any certificate uploaded for this client",
		}},
		{"metascope not in the binding", func(a *adobe, c *fakeadobe.Credentials) error {
			cl := c.Client()
			cl.Metascopes = []string{"ent_user_sdk"}
			return a.RegisterClient(cl)
		}, 1, []string{
			"): FAILED invalid_scope: The metascopes in the JWT are not a subset of the metascopes in the binding.\n",
			"  hint: the metascopes in the JWT are not those bound to this client: check METASCOPES",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAdobe(t, fakeadobe.Options{})
			c := a.newCredentials(t, fakeadobe.CredentialOptions{})
			file := filepath.Join(t.TempDir(), "aem-service-credentials.json")
			writeAtomic(t, file, serviceCredentials(t, c, a.URL))
			if tt.breakIMS != nil {
				if err := tt.breakIMS(a, c); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{
				"IMSPROXY_ROUTES":               "aem",
				"IMSPROXY_IMS_URL":              a.URL,
				"IMSPROXY_AEM_UPSTREAM":         a.URL,
				"IMSPROXY_AEM_CREDENTIALS_FILE": file,
			}
			code, stdout, stderr := runProxyToExit(t, env, 60*time.Second, "check")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			if !strings.HasPrefix(stdout, "route aem (jwt, IMS "+a.URL+"): ") {
				t.Errorf("stdout does not start with the route:\n%s", stdout)
			}
			for _, w := range tt.wantLines {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if strings.Contains(stdout+stderr, c.ClientSecret) {
				t.Error("check printed the client secret")
			}

			code, stdout, _ = runProxyToExit(t, env, 60*time.Second, "check", "-json")
			var report struct {
				OK     bool `json:"ok"`
				Routes []struct {
					Route, Error, Hint string
					OK                 bool
				} `json:"routes"`
			}
			if err := json.Unmarshal([]byte(stdout), &report); err != nil || code != tt.wantCode ||
				report.OK != (tt.wantCode == 0) || len(report.Routes) != 1 || report.Routes[0].OK != report.OK {
				t.Errorf("-json: exit %d, %+v (%v)\n%s", code, report, err, stdout)
			}
		})
	}

	t.Run("invalid configuration", func(t *testing.T) {
		code, stdout, stderr := runProxyToExit(t, map[string]string{
			"IMSPROXY_ROUTES": "aem", "IMSPROXY_AEM_UPSTREAM": "http://127.0.0.1:1",
			"IMSPROXY_AEM_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "missing.json"),
		}, 60*time.Second, "check")
		if code != 2 || stdout != "" || !strings.Contains(stderr, "IMSPROXY_AEM_CREDENTIALS_FILE: cannot read") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 2 naming the variable", code, stdout, stderr)
		}
	})
}

// TestE2E_KeygenOutputIsAcceptedOnceRegistered generates a key pair with
// the binary, uploads the certificate through the emulator's control API
// (the Developer Console's "Upload public key"), and serves requests with
// the key through the real proxy.
func TestE2E_KeygenOutputIsAcceptedOnceRegistered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	code, stdout, stderr := runProxyToExit(t, nil, 60*time.Second, "keygen", "-out", dir, "-cn", "e2e-aem")
	if code != 0 {
		t.Fatalf("keygen: exit %d\n%s", code, stderr)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "certificate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := fakeadobe.ParseCertificatePEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	fp := fakeadobe.Fingerprint(cert)
	if printed := strings.ToLower(strings.ReplaceAll(stdout, ":", "")); !strings.Contains(printed, fp) {
		t.Errorf("keygen printed no fingerprint matching %s:\n%s", fp, stdout)
	}
	if code, _, stderr := runProxyToExit(t, nil, 60*time.Second, "keygen", "-out", dir); code != 1 || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("second keygen into the same directory: exit %d, %s", code, stderr)
	}

	a := startAdobe(t, fakeadobe.Options{})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	resp, err := http.Post(a.URL+fakeadobe.ControlPrefix+"clients/"+c.ClientID+"/certificates", "application/x-pem-file", bytes.NewReader(certPEM))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("uploading the certificate: %d", resp.StatusCode)
	}

	env := a.jwtEnv(c, filepath.Join(dir, "private.key"))
	env["IMSPROXY_AEM_CERTIFICATE_FILE"] = filepath.Join(dir, "certificate.crt")
	code, stdout, stderr = runProxyToExit(t, env, 60*time.Second, "token", "aem")
	tok := strings.TrimSuffix(stdout, "\n")
	if code != 0 || strings.ContainsAny(tok, " \n") {
		t.Fatalf("token: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if info := a.LookupToken(tok); info.State != fakeadobe.TokenValid || info.Certificate != fp {
		t.Errorf("token from `imsproxy token`: %+v, want valid and signed with the generated key", info)
	}

	p := startProxy(t, env)
	p.waitReady()
	status, _, body := httpGet(t, p.URL("aem")+"/api/assets.json")
	if status != http.StatusOK {
		t.Fatalf("request through the proxy: %d %s", status, body)
	}
	recs := a.Requests(1)
	if len(recs) != 1 || recs[0].Token.Certificate != fp {
		t.Errorf("the upstream request's token came from certificate %+v, want %s", recs, fp)
	}
	if _, r := p.readyzRoute("aem"); !r.CertificateExpiry.Equal(cert.NotAfter) {
		t.Errorf("/readyz certificate_expiry = %v, want the generated certificate's %v", r.CertificateExpiry, cert.NotAfter)
	}
}
