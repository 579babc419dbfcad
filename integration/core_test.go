package integration

import (
	"crypto/rsa"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// sharedKey is one RSA key for the tests that do not care which key signs
// (made once per process: a fresh key takes seconds under -race).
func sharedKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	return testutil.RSA(0)
}

func TestE2E_StockSearchThroughOAuthRoute(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, a.stockOAuthEnv(creds))
	p.waitReady()

	const callerKey = "legacy-app-api-key"
	status, h, body := httpGet(t, p.URL("stock")+"/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=3",
		"x-api-key", callerKey, "Authorization", "Bearer "+callerKey, "X-Request-Id", "e2e-search-1")
	if status != 200 || !strings.Contains(string(body), `"files"`) {
		t.Fatalf("search: %d %s", status, body)
	}
	if h.Get("X-Request-Id") != "e2e-search-1" {
		t.Errorf("X-Request-Id = %q", h.Get("X-Request-Id"))
	}
	recs := a.Requests(0)
	var search *fakeadobe.RequestRecord
	for i := range recs {
		if recs[i].Endpoint == "stock.search_files" {
			search = &recs[i]
		}
	}
	if search == nil {
		t.Fatalf("the emulator saw no search: %+v", recs)
	}
	if search.APIKey != creds.ClientID || !search.HasProduct || search.Token.State != fakeadobe.TokenValid ||
		search.RequestID != "e2e-search-1" || search.CredentialSHA256 == fakeadobe.CredentialHash(callerKey) {
		t.Fatalf("upstream request = %+v, want the route's key, X-Product, a valid token, the request id and not the caller's key", search)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d", code)
	}
}

func TestE2E_AEMCredentialsFileJWTExchange(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Metascopes: []string{"ent_aem_cloud_api"}})
	file := filepath.Join(t.TempDir(), "aem-service-credentials.json")
	data, err := creds.ServiceCredentialsJSON(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, map[string]string{
		"IMSPROXY_ROUTES":               "aem",
		"IMSPROXY_IMS_URL":              a.URL, // the emulator speaks plain HTTP; imsEndpoint would get https://
		"IMSPROXY_AEM_UPSTREAM":         a.URL,
		"IMSPROXY_AEM_CREDENTIALS_FILE": file,
	})
	p.waitReady()
	status, _, body := httpGet(t, p.URL("aem")+"/api/assets.json")
	if status != 200 || !strings.Contains(string(body), `"entities"`) {
		t.Fatalf("AEM listing: %d %s", status, body)
	}
	if st := a.Stats(); st.Exchanges["success"] == 0 {
		t.Fatalf("no successful JWT exchange recorded: %+v", st.Exchanges)
	}
}

func TestE2E_SIGTERMLetsInFlightRequestFinish(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	arrived, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	t.Cleanup(slow.Close)
	env := a.stockOAuthEnv(creds)
	env["IMSPROXY_STOCK_UPSTREAM"] = slow.URL
	p := startProxy(t, env)
	p.waitReady()

	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(p.URL("stock") + "/slow")
		if err != nil {
			done <- result{-1, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b)}
	}()
	<-arrived
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog("shutting down") // draining has begun with the request in flight
	close(release)
	if r := <-done; r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: %d %q, want it to complete", r.status, r.body)
	}
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
}
