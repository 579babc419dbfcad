package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// TestE2E_RotateClientSecretFileUnderLoadThenRevokeTheOldSecret follows
// Adobe's rotation of an OAuth server-to-server client secret, the secret
// in a Kubernetes secret mount (CLIENT_SECRET_FILE, ending with a line
// break): a second secret is added to the credential and installed, and
// once it is in use the first is revoked, while 20 callers send requests
// all along.
func TestE2E_RotateClientSecretFileUnderLoadThenRevokeTheOldSecret(t *testing.T) {
	// Short-lived tokens, so that many exchanges happen after the switch.
	a := startAdobe(t, fakeadobe.Options{TokenLifetime: 4 * time.Second})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	const name = "client-secret"
	secret := newK8sSecret(t, map[string][]byte{name: []byte(c.ClientSecret + "\n")})
	env := a.stockOAuthEnv(c)
	delete(env, "IMSPROXY_STOCK_CLIENT_SECRET")
	env["IMSPROXY_STOCK_CLIENT_SECRET_FILE"] = filepath.Join(secret.dir, name)
	env["IMSPROXY_STOCK_CACHE_SIZE"] = "0" // every request goes upstream with the token
	p := startProxy(t, env)
	p.waitReady()

	l := startLoad(t, p.URL("stock")+"/Rest/Media/1/Search/Files?search_parameters[words]=city", 20)
	l.waitOK(t, 200)

	const rotated = "p8e-Rotated-E2E-6a1f0c93d7b24e85"
	if err := a.AddSecret(c.ClientID, rotated); err != nil {
		t.Fatal(err)
	}
	secret.update(map[string][]byte{name: []byte(rotated + "\n")})
	p.waitLog(`"msg":"credentials reloaded"`)
	l.waitOK(t, 200)

	revokedAt := time.Now()
	if err := a.RevokeSecret(c.ClientID, c.ClientSecret); err != nil {
		t.Fatal(err)
	}
	after := a.Stats().Exchanges["oauth_success"]
	waitFor(t, 30*time.Second, "three exchanges after the revocation", func() bool { return a.Stats().Exchanges["oauth_success"] >= after+3 })
	l.waitOK(t, 200)
	l.finish(t)

	if st := a.Stats(); st.Exchanges["oauth_invalid_client"] != 0 {
		t.Errorf("the proxy asked %d times with the revoked secret: %v", st.Exchanges["oauth_invalid_client"], st.Exchanges)
	}
	checked := 0
	for _, rec := range a.Requests(200) {
		if rec.Endpoint != "stock.search_files" {
			continue
		}
		checked++
		if !rec.Token.IssuedAt.After(revokedAt) {
			t.Fatalf("a late request carried a token issued %v, before the old secret was revoked at %v", rec.Token.IssuedAt, revokedAt)
		}
	}
	if checked == 0 {
		t.Fatal("the emulator recorded no late Stock search")
	}
	if logs := p.stderr.String(); strings.Contains(logs, "reload failed") || strings.Contains(logs, rotated) || strings.Contains(logs, c.ClientSecret) {
		t.Errorf("a reload failed, or a client secret reached the log:\n%s", logs)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d", code)
	}
}
