package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/tokens"
)

// serverWith starts a Server for cfg and returns its admin URL.
func serverWith(t *testing.T, cfg *config.Config, logs io.Writer) (*Server, string) {
	t.Helper()
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	admin := "http://" + srv.AdminAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv, admin
}

// jwtFiles is a JWT route whose key and certificate are files, in front
// of the emulator.
type jwtFiles struct {
	adobe             *fakeadobe.Server
	creds             *fakeadobe.Credentials
	keyFile, certFile string
	cfg               *config.Config
	logs              *testutil.Buffer
}

func newJWTFiles(t *testing.T) *jwtFiles {
	t.Helper()
	adobe := fakeadobe.New(fakeadobe.Options{SigningKey: testutil.RSA(0)})
	ims := httptest.NewServer(adobe)
	t.Cleanup(ims.Close)
	creds, err := adobe.NewCredentials(fakeadobe.CredentialOptions{Key: testutil.RSA(1), Metascopes: []string{"ent_aem_cloud_api"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &jwtFiles{adobe: adobe, creds: creds, logs: &testutil.Buffer{},
		keyFile: filepath.Join(dir, "private.key"), certFile: filepath.Join(dir, "certificate.crt")}
	testutil.WriteFile(t, e.keyFile, string(creds.PrivateKeyPEM()))
	testutil.WriteFile(t, e.certFile, string(creds.CertificatePEM()))
	e.cfg, err = config.Load([]string{
		"IMSPROXY_ROUTES=aem", "IMSPROXY_IMS_URL=" + ims.URL, "IMSPROXY_ADMIN_LISTEN=127.0.0.1:0",
		"IMSPROXY_AEM_LISTEN=127.0.0.1:0", "IMSPROXY_AEM_UPSTREAM=" + ims.URL,
		"IMSPROXY_AEM_CLIENT_ID=" + creds.ClientID, "IMSPROXY_AEM_CLIENT_SECRET=" + creds.ClientSecret,
		"IMSPROXY_AEM_ORG_ID=" + creds.OrgID, "IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID=" + creds.TechnicalAccountID,
		"IMSPROXY_AEM_PRIVATE_KEY_FILE=" + e.keyFile, "IMSPROXY_AEM_CERTIFICATE_FILE=" + e.certFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestServer_ReloadUpdatesReadyzAndTheCertificateMetric(t *testing.T) {
	e := newJWTFiles(t)
	srv, admin := serverWith(t, e.cfg, e.logs)
	next, err := fakeadobe.GenerateCredentials(fakeadobe.CredentialOptions{Key: testutil.RSA(2), Validity: 100 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.adobe.AddCertificate(e.creds.ClientID, next.Certificate); err != nil {
		t.Fatal(err)
	}
	// Written in place, not renamed, to show that Reload does not depend
	// on how the files changed.
	if err := os.WriteFile(e.certFile, next.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.keyFile, next.PrivateKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Reload()
	// The log line comes last, after /readyz and the metrics learn of the
	// reload.
	testutil.WaitFor(t, "the reload", func() bool { return strings.Contains(e.logs.String(), `"msg":"credentials reloaded"`) })

	var body struct {
		Routes map[string]struct {
			CertificateExpiry time.Time            `json:"certificate_expiry"`
			Reload            *tokens.ReloadStatus `json:"credentials_reload"`
		} `json:"routes"`
	}
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r := body.Routes["aem"].Reload; r == nil || r.Reloaded.IsZero() {
		t.Fatalf("no reload in /readyz once it was logged: %+v", body)
	}
	if got := body.Routes["aem"].CertificateExpiry; !got.Equal(next.Certificate.NotAfter.Truncate(time.Second)) {
		t.Errorf("/readyz certificate_expiry = %v, want the new certificate's %v", got, next.Certificate.NotAfter)
	}
	resp, err = http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `imsproxy_certificate_expiry_timestamp_seconds{route="aem"} ` + strconv.FormatFloat(float64(next.Certificate.NotAfter.Unix()), 'g', -1, 64)
	if !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %q:\n%s", want, grepLines(string(metrics), "certificate"))
	}
	if !strings.Contains(string(metrics), `imsproxy_credential_reloads_total{outcome="success",route="aem"} 1`) {
		t.Errorf("reload not counted:\n%s", grepLines(string(metrics), "reloads"))
	}
}
