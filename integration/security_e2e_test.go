package integration

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// TestE2E_SecretsNeverLeak runs a full scenario at debug level — searches,
// licenses allowed and refused, downloads, license history, an AEM route
// with a private key, a route IMS refuses (its client secret read from a
// file), a revoked token replaced, callers known and unknown — and then
// looks for every secret in everything the proxy wrote: stdout, stderr, the
// audit log, /metrics and /readyz.
//
// A panic cannot be provoked in the real binary (that would need a test
// hook in production code); proxy's TestRoute_PanicIsAnswered500WithoutLeaking
// covers it.
func TestE2E_SecretsNeverLeak(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	front, base := startFront(t, a)
	stockCreds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	aemCreds := a.newCredentials(t, fakeadobe.CredentialOptions{Metascopes: []string{"ent_aem_cloud_api"}})
	dir := t.TempDir()

	aemFile := filepath.Join(dir, "aem-service-credentials.json")
	data, err := aemCreds.ServiceCredentialsJSON(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aemFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	buyer := callerSpec{"buyer", "imsp_buyer-key-5f2a9c1e7b3d4a6f8e0c", []string{"stock", "aem", "broken"}, true}
	viewer := callerSpec{"viewer", "imsp_viewer-key-9d8c7b6a5f4e3d2c1b0a", []string{"stock"}, false}
	guessed := "imsp_guessed-key-0a1b2c3d4e5f6a7b8c9d"
	callers := filepath.Join(dir, "callers.json")
	writeCallers(t, callers, buyer, viewer)
	audit := filepath.Join(dir, "audit.log")
	// The broken route reads its (wrong) secret from a file, the stock
	// route from the environment: both forms are looked for below.
	const wrongSecret = "p8e-wrong-secret-for-the-broken-route-77"
	wrongSecretFile := filepath.Join(dir, "broken-client-secret")
	if err := os.WriteFile(wrongSecretFile, []byte(wrongSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	env := guardEnv(a, stockCreds, base, audit)
	for k, v := range map[string]string{
		"IMSPROXY_ROUTES":                    "stock,aem,broken",
		"IMSPROXY_LOG_LEVEL":                 "debug",
		"IMSPROXY_CALLERS_FILE":              callers,
		"IMSPROXY_STOCK_ALLOW_LICENSE":       "true",
		"IMSPROXY_AEM_UPSTREAM":              base,
		"IMSPROXY_AEM_CREDENTIALS_FILE":      aemFile,
		"IMSPROXY_BROKEN_UPSTREAM":           base,
		"IMSPROXY_BROKEN_CLIENT_ID":          stockCreds.ClientID,
		"IMSPROXY_BROKEN_CLIENT_SECRET_FILE": wrongSecretFile,
		"IMSPROXY_BROKEN_SCOPES":             strings.Join(stockCreds.Scopes, ","),
		"IMSPROXY_STOCK_MAX_BODY_BYTES":      "1024",
		"IMSPROXY_STOCK_LICENSE_DAILY_LIMIT": "5",
	} {
		env[k] = v
	}
	p := startProxy(t, env)
	p.waitLog("invalid_client") // the broken route never becomes ready
	stock, aem := p.URL("stock"), p.URL("aem")
	plain := photos(t, a, stockCreds, false, 1)[0]
	editorial := photos(t, a, stockCreds, true, 1)[0]
	search := stock + "/Rest/Media/1/Search/Files?search_parameters[words]=city&search_parameters[limit]=2"

	expect := func(what string, status, want int) {
		t.Helper()
		if status != want {
			t.Fatalf("%s: status %d, want %d", what, status, want)
		}
	}
	waitFor(t, 30*time.Second, "the stock and aem routes to hold tokens", func() bool {
		_, body := p.readyz()
		routes, _ := body["routes"].(map[string]any)
		ready := func(r string) bool { m, _ := routes[r].(map[string]any); return m["ready"] == true }
		return ready("stock") && ready("aem")
	})

	st, _, _ := httpGet(t, search, "x-api-key", buyer.key)
	expect("search by x-api-key", st, 200)
	st, _, _ = httpGet(t, search, "Authorization", "Bearer "+viewer.key)
	expect("search by bearer", st, 200)
	st, _, _ = httpGet(t, search, "x-api-key", guessed, "Authorization", "Bearer "+guessed)
	expect("unknown caller", st, 401)
	st, _, _ = httpGet(t, stock+licensePath(plain), "x-api-key", viewer.key)
	expect("license without the right", st, 403)
	st, _, _ = httpGet(t, stock+licensePath(editorial), "x-api-key", buyer.key)
	expect("editorial license", st, 403)
	st, _, _ = httpGet(t, stock+licensePath(plain), "Authorization", "Bearer "+guessed)
	expect("license by an unknown caller", st, 401)
	st, _, body := httpGet(t, stock+licensePath(plain), "x-api-key", buyer.key)
	expect("license", st, 200)
	var lic struct {
		Contents map[string]struct {
			PurchaseDetails struct{ URL string } `json:"purchase_details"`
		} `json:"contents"`
	}
	_ = json.Unmarshal(body, &lic)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", lic.Contents[plain].PurchaseDetails.URL+"?token=caller-sent-one", nil)
	req.Header.Set("x-api-key", buyer.key)
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect("download", resp.StatusCode, http.StatusFound)
	st, _, _ = httpGet(t, stock+"/Rest/Libraries/1/Member/LicenseHistory", "x-api-key", buyer.key)
	expect("history", st, 200)
	st, _, _ = httpDo(t, "POST", stock+"/Rest/Media/1/Search/Files", strings.NewReader(strings.Repeat("x", 4096)), "x-api-key", buyer.key)
	expect("body too large", st, 413)
	st, _, _ = httpGet(t, aem+"/api/assets.json", "x-api-key", buyer.key)
	expect("AEM with a JWT route", st, 200)
	st, _, _ = httpGet(t, p.URL("broken")+"/Rest/Media/1/Search/Files?search_parameters[words]=x", "x-api-key", buyer.key)
	expect("route IMS refuses", st, 503)
	a.RevokeTokens() // the next search meets a 401 and the proxy fetches a new token
	st, _, _ = httpGet(t, search, "x-api-key", buyer.key)
	expect("search after revocation", st, 200)

	metrics := fetchMetrics(t, p)
	_, readyz := p.readyz()
	readyzJSON, _ := json.Marshal(readyz)
	if code := p.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	auditLog, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}

	tokens := front.issuedTokens()
	if len(tokens) < 3 { // stock, aem, and stock again after the revocation
		t.Fatalf("the front saw %d access tokens issued, want at least 3: the scenario did not run", len(tokens))
	}
	secrets := map[string]string{
		"stock client secret":        stockCreds.ClientSecret,
		"broken route client secret": wrongSecret,
		"buyer caller key":           buyer.key,
		"viewer caller key":          viewer.key,
		"guessed caller key":         guessed,
	}
	addCredentialSecrets(secrets, "aem", aemCreds)
	addTokenSecrets(secrets, tokens)
	outputs := map[string]string{
		"stdout":    p.stdout.String(),
		"stderr":    p.stderr.String(),
		"audit log": string(auditLog),
		"/metrics":  metrics,
		"/readyz":   string(readyzJSON),
	}
	checkNoSecrets(t, outputs, secrets)
	// The scenario is visible where it should be, just without secrets.
	for _, want := range []string{`"msg":"caller refused"`, `"msg":"licensing"`, `"outcome":"editorial_use_only"`, `"msg":"request"`, "invalid_client"} {
		if !strings.Contains(outputs["stderr"], want) {
			t.Errorf("stderr lacks %s", want)
		}
	}
	if n := strings.Count(string(auditLog), "\n"); n != 4 {
		t.Errorf("%d audit lines, want 4 (no license right, editorial, unknown caller, licensed):\n%s", n, auditLog)
	}
}

// addCredentialSecrets adds c's client secret and overlapping pieces of its
// private key, in both PEM encodings, to secrets under name.
func addCredentialSecrets(secrets map[string]string, name string, c *fakeadobe.Credentials) {
	secrets[name+" client secret"] = c.ClientSecret
	for enc, der := range map[string][]byte{"PKCS#1": c.PrivateKeyPKCS1PEM(), "PKCS#8": c.PrivateKeyPEM()} {
		block, _ := pem.Decode(der)
		body := base64.StdEncoding.EncodeToString(block.Bytes) // the PEM body without its line breaks
		for i := 0; i+24 <= len(body); i += 12 {
			secrets[fmt.Sprintf("%s private key (%s), characters %d-%d", name, enc, i, i+24)] = body[i : i+24]
		}
	}
}

// addTokenSecrets adds each access token, and its signature alone, to
// secrets.
func addTokenSecrets(secrets map[string]string, tokens []string) {
	for i, tok := range tokens {
		secrets[fmt.Sprintf("access token %d", i)] = tok
		// The signature alone is as good as the token to recognise it.
		secrets[fmt.Sprintf("access token %d's signature", i)] = tok[strings.LastIndex(tok, ".")+1:]
	}
}

// checkNoSecrets fails the test for every secret found in an output.
func checkNoSecrets(t *testing.T, outputs, secrets map[string]string) {
	t.Helper()
	for out, text := range outputs {
		for name, secret := range secrets {
			if secret != "" && strings.Contains(text, secret) {
				t.Errorf("%s contains the %s", out, name)
			}
		}
	}
}
