package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// emulator is an in-process Adobe emulator for one test.
type emulator struct {
	*fakeadobe.Server
	URL string
}

func startEmulator(t *testing.T) *emulator {
	t.Helper()
	srv := fakeadobe.New(fakeadobe.Options{SigningKey: testutil.RSA(0)})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &emulator{Server: srv, URL: ts.URL}
}

func (e *emulator) credentials(t *testing.T, opts fakeadobe.CredentialOptions) *fakeadobe.Credentials {
	t.Helper()
	if opts.Key == nil {
		opts.Key = testutil.RSA(1)
	}
	c, err := e.NewCredentials(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// oauthEnv configures route stock with OAuth against e.
func (e *emulator) oauthEnv(c *fakeadobe.Credentials) []string {
	return []string{
		"IMSPROXY_ROUTES=stock",
		"IMSPROXY_IMS_URL=" + e.URL,
		"IMSPROXY_STOCK_UPSTREAM=" + e.URL,
		"IMSPROXY_STOCK_CLIENT_ID=" + c.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET=" + c.ClientSecret,
		"IMSPROXY_STOCK_SCOPES=" + strings.Join(c.Scopes, ","),
	}
}

// jwtEnv configures route aem with JWT credentials against e, the key in a
// file, plus extra variables (ones it does not set itself). Its first two
// entries are the global ones.
func (e *emulator) jwtEnv(t *testing.T, c *fakeadobe.Credentials, extra ...string) []string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "private.key")
	if err := os.WriteFile(key, c.PrivateKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return append([]string{
		"IMSPROXY_ROUTES=aem",
		"IMSPROXY_IMS_URL=" + e.URL,
		"IMSPROXY_AEM_UPSTREAM=" + e.URL,
		"IMSPROXY_AEM_CLIENT_ID=" + c.ClientID,
		"IMSPROXY_AEM_CLIENT_SECRET=" + c.ClientSecret,
		"IMSPROXY_AEM_ORG_ID=" + c.OrgID,
		"IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID=" + c.TechnicalAccountID,
		"IMSPROXY_AEM_PRIVATE_KEY_FILE=" + key,
	}, extra...)
}

// replaceVar returns env with the variable k set to v.
func replaceVar(env []string, k, v string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, k+"=") {
			out = append(out, kv)
		}
	}
	return append(out, k+"="+v)
}

func runCmd(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, environ, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestCheck_GoodRoutesSayTokenRetrieved(t *testing.T) {
	e := startEmulator(t)
	stock := e.credentials(t, fakeadobe.CredentialOptions{})
	// The AEM credentials' certificate expires in 10 days: a warning, not
	// a failure.
	aem := e.credentials(t, fakeadobe.CredentialOptions{Key: testutil.RSA(2), Validity: 10*24*time.Hour + time.Hour})
	credsFile := filepath.Join(t.TempDir(), "aem.json")
	data, err := aem.ServiceCredentialsJSON(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(credsFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(e.oauthEnv(stock), "IMSPROXY_AEM_UPSTREAM="+e.URL, "IMSPROXY_AEM_CREDENTIALS_FILE="+credsFile)
	env = replaceVar(env, "IMSPROXY_ROUTES", "stock,aem")

	code, stdout, stderr := runCmd(t, env, "check")
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"route stock (oauth, IMS " + e.URL + "): token retrieved successfully, expires in 23h59m\n",
		"route aem (jwt, IMS " + e.URL + "): token retrieved successfully, expires in 23h59m\n",
		"  WARNING: the certificate expires on " + aem.Certificate.NotAfter.UTC().Format(time.RFC3339) + " (in 10 days)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "failed") {
		t.Errorf("stdout reports a failure:\n%s", stdout)
	}
}

func TestCheck_ReportsTheIMSErrorAndHint(t *testing.T) {
	e := startEmulator(t)
	c := e.credentials(t, fakeadobe.CredentialOptions{Metascopes: []string{"ent_aem_cloud_api"}})
	other, err := fakeadobe.GenerateCredentials(fakeadobe.CredentialOptions{Key: testutil.RSA(2)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"wrong client secret", replaceVar(e.jwtEnv(t, c), "IMSPROXY_AEM_CLIENT_SECRET", "p8e-wrong"), []string{
			"FAILED invalid_client: The client ID and client secret combination is invalid",
			"hint: the client id and client secret do not match",
		}},
		{"key without an uploaded certificate", e.jwtEnv(t, &fakeadobe.Credentials{
			ClientID: c.ClientID, ClientSecret: c.ClientSecret, OrgID: c.OrgID, TechnicalAccountID: c.TechnicalAccountID,
			PrivateKey: other.PrivateKey,
		}), []string{
			"FAILED invalid_signature: The JWT signature does not match any certificate on record",
			"hint: the private key does not match any certificate uploaded for this client",
		}},
		{"metascope outside the binding", e.jwtEnv(t, c, "IMSPROXY_AEM_METASCOPES=ent_brand_portal_sdk"), []string{
			"FAILED invalid_scope: The metascopes in the JWT are not a subset of the metascopes in the binding.",
			"hint: the metascopes in the JWT are not those bound to this client: check METASCOPES",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.env, "check")
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			want := append(tt.want, "route aem (jwt, IMS "+e.URL+"): ", "1 of 1 routes failed")
			for _, w := range want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if strings.Contains(stdout+stderr, c.ClientSecret) || strings.Contains(stdout+stderr, "p8e-wrong") {
				t.Errorf("a client secret was printed:\n%s%s", stdout, stderr)
			}
		})
	}
}

func TestCheck_JSON(t *testing.T) {
	e := startEmulator(t)
	good := e.credentials(t, fakeadobe.CredentialOptions{})
	env := append(e.oauthEnv(good), e.jwtEnv(t, good)[2:]...) // stock (oauth) + aem (jwt)
	env = replaceVar(env, "IMSPROXY_ROUTES", "stock,aem")
	env = replaceVar(env, "IMSPROXY_AEM_CLIENT_SECRET", "p8e-wrong")

	code, stdout, stderr := runCmd(t, env, "check", "-json")
	if code != 1 {
		t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var report checkReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if report.OK || len(report.Routes) != 2 {
		t.Fatalf("report = %+v, want not ok with 2 routes", report)
	}
	stock, aem := report.Routes[0], report.Routes[1]
	if !stock.OK || stock.Route != "stock" || stock.ExpiresIn != "23h59m" || time.Until(stock.Expiry) < 23*time.Hour {
		t.Errorf("stock = %+v, want ok with a 24 h token", stock)
	}
	if aem.OK || aem.Error != "invalid_client" || aem.Description == "" || !strings.Contains(aem.Hint, "client secret") {
		t.Errorf("aem = %+v, want invalid_client with description and hint", aem)
	}
}

// TestCheck_ClientSecretFile reads the client secret from a file, as
// rotation wants it: a good secret gets a token, a wrong one is reported
// by IMS and an empty file by the configuration, and `check -json` never
// prints the file's content.
func TestCheck_ClientSecretFile(t *testing.T) {
	e := startEmulator(t)
	c := e.credentials(t, fakeadobe.CredentialOptions{})
	const wrong = "p8e-Wrong-From-File-3e9d71c5"
	file := filepath.Join(t.TempDir(), "client-secret")
	env := []string{"IMSPROXY_STOCK_CLIENT_SECRET_FILE=" + file}
	for _, kv := range e.oauthEnv(c) {
		if !strings.HasPrefix(kv, "IMSPROXY_STOCK_CLIENT_SECRET=") {
			env = append(env, kv)
		}
	}
	tests := []struct {
		name     string
		content  string
		wantCode int
		check    func(t *testing.T, r checkReport)
	}{
		{"good secret", c.ClientSecret + "\n", 0, func(t *testing.T, r checkReport) {
			if !r.OK || len(r.Routes) != 1 || !r.Routes[0].OK || r.Routes[0].Auth != "oauth" {
				t.Errorf("report = %+v, want stock (oauth) ok", r)
			}
		}},
		{"wrong secret", wrong + "\n", 1, func(t *testing.T, r checkReport) {
			if len(r.Routes) != 1 || r.Routes[0].Error != "invalid_client" {
				t.Errorf("report = %+v, want invalid_client", r)
			}
		}},
		{"empty file", "\n", 2, func(t *testing.T, r checkReport) {
			if len(r.Problems) != 1 || r.Problems[0] != (checkProblem{"IMSPROXY_STOCK_CLIENT_SECRET_FILE", "is empty"}) {
				t.Errorf("problems = %+v, want IMSPROXY_STOCK_CLIENT_SECRET_FILE: is empty", r.Problems)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCmd(t, env, "check", "-json")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			var report checkReport
			if err := json.Unmarshal([]byte(stdout), &report); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
			}
			tt.check(t, report)
			if strings.Contains(stdout+stderr, c.ClientSecret) || strings.Contains(stdout+stderr, wrong) {
				t.Errorf("a client secret was printed:\n%s%s", stdout, stderr)
			}
		})
	}
}

func TestCheck_InvalidConfigurationExits2(t *testing.T) {
	env := []string{"IMSPROXY_ROUTES=aem", "IMSPROXY_AEM_UPSTREAM=http://127.0.0.1:1", "IMSPROXY_AEM_PRIVATE_KEY=not a key"}
	code, stdout, stderr := runCmd(t, env, "check")
	if code != 2 || !strings.Contains(stderr, "IMSPROXY_AEM_PRIVATE_KEY: is not PEM") || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and the problem on stderr", code, stdout, stderr)
	}
	code, stdout, _ = runCmd(t, env, "check", "-json")
	var report checkReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || code != 2 || report.OK {
		t.Fatalf("exit %d, report %+v (%v), want 2 and a JSON report", code, report, err)
	}
	found := false
	for _, p := range report.Problems {
		found = found || (p.Variable == "IMSPROXY_AEM_PRIVATE_KEY" && strings.Contains(p.Message, "is not PEM"))
	}
	if !found {
		t.Errorf("problems = %+v, want IMSPROXY_AEM_PRIVATE_KEY", report.Problems)
	}
	if code, _, _ := runCmd(t, env, "check", "extra"); code != 2 {
		t.Errorf("an extra argument: exit %d, want 2", code)
	}
}

func TestCheck_UnreachableIMS(t *testing.T) {
	e := startEmulator(t)
	c := e.credentials(t, fakeadobe.CredentialOptions{})
	env := replaceVar(e.oauthEnv(c), "IMSPROXY_IMS_URL", "http://127.0.0.1:1")
	code, stdout, _ := runCmd(t, env, "check", "-timeout", "5s")
	if code != 1 || !strings.Contains(stdout, "FAILED ims_unreachable") || !strings.Contains(stdout, "hint: IMS could not be reached") {
		t.Fatalf("exit %d, stdout:\n%s\nwant 1 with ims_unreachable and its hint", code, stdout)
	}
}

func TestShortDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{86399999 * time.Millisecond, "23h59m"},
		{time.Hour, "1h0m"},
		{5*time.Minute + 30*time.Second, "5m"},
		{2900 * time.Millisecond, "2s"},
		{-time.Second, "0s"},
	}
	for _, tt := range tests {
		if got := shortDuration(tt.d); got != tt.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// A listener's port in use is what serve would fail on here and now, but
// not a configuration problem (the port may be the checked proxy's own):
// check says so in a warning naming the variable, and still exits 0.
func TestCheck_WarnsAboutAPortInUse(t *testing.T) {
	e := startEmulator(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	env := append(e.oauthEnv(e.credentials(t, fakeadobe.CredentialOptions{})),
		"IMSPROXY_STOCK_LISTEN="+busy.Addr().String(), "IMSPROXY_ADMIN_LISTEN=127.0.0.1:0")

	code, stdout, stderr := runCmd(t, env, "check")
	want := "WARNING: IMSPROXY_STOCK_LISTEN " + busy.Addr().String() + " is in use: "
	if code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("exit %d, want 0 and %q\nstdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
	}
	code, stdout, _ = runCmd(t, env, "check", "-json")
	var report checkReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || code != 0 || len(report.Warnings) != 1 ||
		!strings.HasPrefix(report.Warnings[0], "IMSPROXY_STOCK_LISTEN ") {
		t.Errorf("-json: exit %d, warnings %q (%v)", code, report.Warnings, err)
	}

	_ = busy.Close()
	if _, stdout, _ := runCmd(t, env, "check"); strings.Contains(stdout, "WARNING") {
		t.Errorf("a warning with the port free:\n%s", stdout)
	}
}
