package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// stockJWTEnv configures one stock route with JWT credentials against a and
// no METASCOPES: the route's default metascope is the one sent.
func (a *adobe) stockJWTEnv(t *testing.T, c *fakeadobe.Credentials) map[string]string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "private.key")
	writeAtomic(t, key, c.PrivateKeyPEM())
	return map[string]string{
		"IMSPROXY_ROUTES":                     "stock",
		"IMSPROXY_IMS_URL":                    a.URL,
		"IMSPROXY_STOCK_UPSTREAM":             a.URL,
		"IMSPROXY_STOCK_DOWNLOAD_UPSTREAM":    a.URL,
		"IMSPROXY_STOCK_CLIENT_ID":            c.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET":        c.ClientSecret,
		"IMSPROXY_STOCK_ORG_ID":               c.OrgID,
		"IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID": c.TechnicalAccountID,
		"IMSPROXY_STOCK_PRIVATE_KEY_FILE":     key,
	}
}

// TestE2E_StockJWTDefaultMetascopeMatchesAStockServiceAccount configures a
// Stock service account the obvious way (no METASCOPES) against a client
// bound, as the Developer Console binds a Stock service account, to
// ent_stocksearch_sdk only: the proxy gets a token and licensing-grade calls
// work. Naming User Management's ent_user_sdk instead is refused by IMS with
// invalid_scope, and `imsproxy check` names the metascope Stock needs.
func TestE2E_StockJWTDefaultMetascopeMatchesAStockServiceAccount(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{Metascopes: []string{fakeadobe.MetascopeStock}})
	env := a.stockJWTEnv(t, c)

	t.Run("default metascope gets a token that Stock accepts", func(t *testing.T) {
		p := startProxy(t, env)
		p.waitReady()
		status, _, body := httpGet(t, p.URL("stock")+"/Rest/Libraries/1/Member/LicenseHistory")
		if status != 200 || !strings.Contains(string(body), `"nb_results"`) {
			t.Fatalf("Member/LicenseHistory (bearer required) through the route: %d %s", status, body)
		}
		if st := a.Stats(); st.Exchanges["success"] == 0 || st.Exchanges["invalid_scope"] != 0 {
			t.Fatalf("exchanges = %v, want successes and no invalid_scope", st.Exchanges)
		}
		if code := p.stop(); code != 0 {
			t.Errorf("exit code after SIGTERM = %d", code)
		}
	})

	t.Run("ent_user_sdk is refused and check names ent_stocksearch_sdk", func(t *testing.T) {
		bad := map[string]string{"IMSPROXY_STOCK_METASCOPES": "ent_user_sdk"}
		for k, v := range env {
			bad[k] = v
		}
		code, stdout, stderr := runProxyToExit(t, bad, 60*time.Second, "check")
		if code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		for _, want := range []string{
			"route stock (jwt, IMS " + a.URL + "): FAILED invalid_scope: The metascopes in the JWT are not a subset of the metascopes in the binding.\n",
			"; an Adobe Stock service account is bound to the metascope ent_stocksearch_sdk\n",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
		if strings.Contains(stdout+stderr, c.ClientSecret) {
			t.Error("check printed the client secret")
		}
	})
}
