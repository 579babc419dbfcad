package integration

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// authCase configures one route of one auth kind against an emulator.
type authCase struct {
	name  string
	creds fakeadobe.CredentialOptions
	// env returns the proxy's environment, the route and a path to GET.
	env func(t *testing.T, a *adobe, c *fakeadobe.Credentials) (env map[string]string, route, path string)
	// wantAuth is the kind /readyz reports; wantGrant how the emulator
	// issued the token the upstream saw.
	wantAuth, wantGrant string
	// fixed: the token comes from the configuration, not from IMS.
	fixed bool
}

func aemUpstreamEnv(a *adobe, extra map[string]string) map[string]string {
	env := map[string]string{
		"IMSPROXY_ROUTES":       "aem",
		"IMSPROXY_IMS_URL":      a.URL,
		"IMSPROXY_AEM_UPSTREAM": a.URL,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

var authCases = []authCase{
	{
		name:  "jwt: private key file and org, technical account, metascopes variables",
		creds: fakeadobe.CredentialOptions{Metascopes: []string{"ent_aem_cloud_api"}},
		env: func(t *testing.T, a *adobe, c *fakeadobe.Credentials) (map[string]string, string, string) {
			return aemUpstreamEnv(a, map[string]string{
				"IMSPROXY_AEM_CLIENT_ID":            c.ClientID,
				"IMSPROXY_AEM_CLIENT_SECRET":        c.ClientSecret,
				"IMSPROXY_AEM_ORG_ID":               c.OrgID,
				"IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID": c.TechnicalAccountID,
				"IMSPROXY_AEM_METASCOPES":           "ent_aem_cloud_api",
				"IMSPROXY_AEM_PRIVATE_KEY_FILE":     writeTestFile(t, "private.key", c.PrivateKeyPEM()),
			}), "aem", "/api/assets.json"
		},
		wantAuth: "jwt", wantGrant: "jwt_exchange",
	},
	{
		name: "jwt: inline PKCS#1 key and JWT_PAYLOAD on a Brand Portal route",
		env: func(t *testing.T, a *adobe, c *fakeadobe.Credentials) (map[string]string, string, string) {
			payload := c.JWTPayload(a.URL)
			for k := range payload {
				if strings.Contains(k, "/s/") && !strings.HasSuffix(k, "/s/ent_brand_portal_sdk") {
					delete(payload, k)
				}
			}
			js, _ := json.Marshal(payload)
			return map[string]string{
				"IMSPROXY_ROUTES":                    "brandportal",
				"IMSPROXY_IMS_URL":                   a.URL,
				"IMSPROXY_BRANDPORTAL_UPSTREAM":      a.URL,
				"IMSPROXY_BRANDPORTAL_CLIENT_ID":     c.ClientID,
				"IMSPROXY_BRANDPORTAL_CLIENT_SECRET": c.ClientSecret,
				"IMSPROXY_BRANDPORTAL_PRIVATE_KEY":   string(c.PrivateKeyPKCS1PEM()),
				"IMSPROXY_BRANDPORTAL_JWT_PAYLOAD":   string(js),
			}, "brandportal", "/api/assets.json"
		},
		wantAuth: "jwt", wantGrant: "jwt_exchange",
	},
	{
		name:  "jwt: JWT_PAYLOAD_FILE, the binding requires an integer jti",
		creds: fakeadobe.CredentialOptions{RequireJTI: true, Metascopes: []string{"ent_aem_cloud_api"}},
		env: func(t *testing.T, a *adobe, c *fakeadobe.Credentials) (map[string]string, string, string) {
			js, _ := json.Marshal(c.JWTPayload(a.URL))
			return aemUpstreamEnv(a, map[string]string{
				"IMSPROXY_AEM_CLIENT_ID":        c.ClientID,
				"IMSPROXY_AEM_CLIENT_SECRET":    c.ClientSecret,
				"IMSPROXY_AEM_PRIVATE_KEY_FILE": writeTestFile(t, "private.key", c.PrivateKeyPKCS1PEM()),
				"IMSPROXY_AEM_JWT_PAYLOAD_FILE": writeTestFile(t, "payload.json", js),
				"IMSPROXY_AEM_CERTIFICATE_FILE": writeTestFile(t, "certificate.crt", c.CertificatePEM()),
			}), "aem", "/api/assets.json"
		},
		wantAuth: "jwt", wantGrant: "jwt_exchange",
	},
	{
		name: "oauth: client credentials",
		env: func(t *testing.T, a *adobe, c *fakeadobe.Credentials) (map[string]string, string, string) {
			return a.stockOAuthEnv(c), "stock", searchPath
		},
		wantAuth: "oauth", wantGrant: "client_credentials",
	},
	{
		name: "token: ACCESS_TOKEN",
		env: func(t *testing.T, a *adobe, c *fakeadobe.Credentials) (map[string]string, string, string) {
			tok, _ := a.mintToken(t, c)
			return aemUpstreamEnv(a, map[string]string{"IMSPROXY_AEM_ACCESS_TOKEN": tok}), "aem", "/api/assets.json"
		},
		wantAuth: "token", wantGrant: "client_credentials", fixed: true,
	},
	{
		name: "token: ACCESS_TOKEN_FILE holding the Developer Console's JSON",
		env: func(t *testing.T, a *adobe, c *fakeadobe.Credentials) (map[string]string, string, string) {
			tok, _ := a.mintToken(t, c)
			// The AEM Developer Console's "Get Local Development Token" download.
			js, _ := json.Marshal(map[string]any{"ok": true, "statusCode": 200, "accessToken": tok})
			return aemUpstreamEnv(a, map[string]string{
				"IMSPROXY_AEM_ACCESS_TOKEN_FILE": writeTestFile(t, "local-dev-token.json", js),
			}), "aem", "/api/assets.json"
		},
		wantAuth: "token", wantGrant: "client_credentials", fixed: true,
	},
}

// TestE2E_AuthKinds: every auth kind gets a token the emulator
// accepts, the upstream sees it, and /readyz reports the kind and the
// token's real expiry.
func TestE2E_AuthKinds(t *testing.T) {
	for _, tc := range authCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := startAdobe(t, fakeadobe.Options{})
			c := a.newCredentials(t, tc.creds)
			env, route, path := tc.env(t, a, c)
			exchangesBefore := a.Stats().Exchanges
			p := startProxy(t, env)
			p.waitReady()

			status, _, body := httpGet(t, p.URL(route)+path)
			if status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, status, body)
			}
			rec := a.Requests(0)
			sent := rec[len(rec)-1]
			if sent.Token.State != fakeadobe.TokenValid || sent.Token.Grant != tc.wantGrant || sent.Token.ClientID != c.ClientID {
				t.Fatalf("upstream saw token %+v, want a valid %s token of %s", sent.Token, tc.wantGrant, c.ClientID)
			}
			exchanges := a.Stats().Exchanges
			if tc.fixed && !mapsEqual(exchanges, exchangesBefore) {
				t.Errorf("a fixed token made the proxy call IMS: exchanges %v, before %v", exchanges, exchangesBefore)
			}
			if !tc.fixed && exchanges["success"]+exchanges["oauth_success"] != exchangesBefore["success"]+exchangesBefore["oauth_success"]+1 {
				t.Errorf("exchanges %v (before %v): want exactly one more success", exchanges, exchangesBefore)
			}

			_, ready := p.readyz()
			rr, _ := ready["routes"].(map[string]any)[route].(map[string]any)
			if rr["auth"] != tc.wantAuth || rr["ready"] != true {
				t.Errorf("/readyz route %s = %v, want auth %s and ready", route, rr, tc.wantAuth)
			}
			expiry, err := time.Parse(time.RFC3339Nano, stringOf(rr["token_expiry"]))
			if err != nil {
				t.Fatalf("/readyz token_expiry: %v (%v)", err, rr)
			}
			// OAuth's expires_in is whole seconds, and IMS counts from its
			// own clock: allow two seconds of difference.
			if d := expiry.Sub(sent.Token.ExpiresAt); d < -2*time.Second || d > 2*time.Second {
				t.Errorf("/readyz token_expiry %v, the token expires at %v", expiry, sent.Token.ExpiresAt)
			}
		})
	}
}

func stringOf(v any) string { s, _ := v.(string); return s }

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestE2E_FixedTokenExpiry: a fixed IMS token's expiry is read from the
// token itself, the proxy never spins re-reading it, and once it has
// expired requests get 503 token_unavailable naming token_expired.
func TestE2E_FixedTokenExpiry(t *testing.T) {
	t.Parallel()
	// Long enough for a race-built binary to start and answer once on a
	// loaded machine before the proxy stops using the token (a tenth of
	// its life ahead of expiry); the test waits it out either way.
	const lifetime = 10 * time.Second
	a := startAdobe(t, fakeadobe.Options{TokenLifetime: lifetime})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	tok, info := a.mintToken(t, c)
	p := startProxy(t, aemUpstreamEnv(a, map[string]string{"IMSPROXY_AEM_ACCESS_TOKEN": tok}))
	p.waitReady()
	if status, _, body := httpGet(t, p.URL("aem")+"/api/assets.json"); status != http.StatusOK {
		t.Fatalf("before expiry: %d %s", status, body)
	}

	time.Sleep(time.Until(info.ExpiresAt) + 100*time.Millisecond)
	status, h, body := httpGet(t, p.URL("aem")+"/api/assets.json")
	e := checkProxyError(t, status, h, body, http.StatusServiceUnavailable, "token_unavailable", "aem")
	if !strings.Contains(e.Message, "token_expired") {
		t.Errorf("message %q does not name token_expired", e.Message)
	}
	if st, _ := p.readyz(); st != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d after the fixed token expired, want 503", st)
	}
	for _, rec := range a.Requests(0) {
		if rec.Service == fakeadobe.ServiceAEM && rec.Token.State != fakeadobe.TokenValid {
			t.Errorf("an expired fixed token was sent upstream: %+v", rec)
		}
	}
	// The token was read once; re-reading the same fixed token is not
	// worth a log line, let alone a loop.
	if n := strings.Count(p.stderr.String(), `"msg":"token obtained"`); n > 2 {
		t.Errorf("the proxy logged \"token obtained\" %d times for one fixed token", n)
	}
}

// TestE2E_StockJWTLogsRetirementWarning: a stock route with JWT credentials
// still works but says at start that Adobe retired them for Stock.
func TestE2E_StockJWTLogsRetirementWarning(t *testing.T) {
	t.Parallel()
	a := startAdobe(t, fakeadobe.Options{})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, map[string]string{
		"IMSPROXY_ROUTES":                     "stock",
		"IMSPROXY_IMS_URL":                    a.URL,
		"IMSPROXY_STOCK_UPSTREAM":             a.URL,
		"IMSPROXY_STOCK_CLIENT_ID":            c.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET":        c.ClientSecret,
		"IMSPROXY_STOCK_ORG_ID":               c.OrgID,
		"IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID": c.TechnicalAccountID,
		"IMSPROXY_STOCK_PRIVATE_KEY":          string(c.PrivateKeyPEM()),
	})
	p.waitLog("Adobe retired Service Account (JWT) credentials for Stock")
	p.waitReady()
	if status, _, body := httpGet(t, p.URL("stock")+searchPath); status != http.StatusOK {
		t.Fatalf("search with JWT credentials: %d %s", status, body)
	}
	if rec := a.lastRecord(t, "stock.search_files"); rec.Token.Grant != "jwt_exchange" {
		t.Errorf("token grant %q, want jwt_exchange", rec.Token.Grant)
	}
}

// TestE2E_RefreshAheadOfExpiry: with 3 s tokens and continuous traffic for
// several lifetimes, both flows refresh in the background: every answer is
// 200 and no request ever reaches the emulator with an expired token.
func TestE2E_RefreshAheadOfExpiry(t *testing.T) {
	t.Parallel()
	const lifetime = 3 * time.Second
	a := startAdobe(t, fakeadobe.Options{TokenLifetime: lifetime, RequestLogSize: 100000})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, a.stockAndAEMEnv(t, c))
	p.waitReady()

	tr := startTraffic(t, p.URL("stock")+searchPath, p.URL("aem")+"/api/assets.json")
	time.Sleep(3*lifetime + lifetime/2)
	statuses, failures := tr.results()

	if len(statuses) != 1 || statuses[http.StatusOK] < 100 {
		t.Fatalf("answers by status %v, want only 200s (and at least 100): %q", statuses, failures)
	}
	upstream, exchanges := 0, map[string]int{}
	for _, rec := range a.Requests(0) {
		switch rec.Service {
		case fakeadobe.ServiceIMS:
			if rec.Status == http.StatusOK {
				exchanges[rec.Endpoint]++
			}
		default:
			upstream++
			if rec.Token.State != fakeadobe.TokenValid {
				t.Fatalf("request %d (%s) reached the emulator with a %s token, %v after it expired",
					rec.Seq, rec.Endpoint, rec.Token.State, rec.Time.Sub(rec.Token.ExpiresAt))
			}
		}
	}
	if st := a.Stats(); st.TokensPresented[fakeadobe.TokenExpired] != 0 || upstream < 100 {
		t.Fatalf("tokens presented %v over %d recorded requests", st.TokensPresented, upstream)
	}
	// 10.5 s of 3 s tokens renewed 1.5 s before their end: about 7 each.
	for _, ep := range []string{"ims.token_v3", "ims.exchange_jwt"} {
		if exchanges[ep] < 5 {
			t.Errorf("%s: %d successful exchanges, want at least 5 (one every 1.5 s)", ep, exchanges[ep])
		}
	}
	if strings.Contains(p.stderr.String(), "no token for request") {
		t.Error("a request found no token: refresh was not ahead of expiry")
	}
}

// TestE2E_ColdStartRequestsShareOneExchange: requests that arrive before
// the first token wait for the one exchange in flight.
func TestE2E_ColdStartRequestsShareOneExchange(t *testing.T) {
	t.Parallel()
	a := startAdobe(t, fakeadobe.Options{})
	a.SetFaults(fakeadobe.ServiceIMS, fakeadobe.Faults{Latency: fakeadobe.Duration(500 * time.Millisecond)})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, a.stockOAuthEnv(c))

	const n = 20
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := http.Get(p.URL("stock") + searchPath)
			if err != nil {
				statuses <- -1
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("a cold-start request got %d", s)
		}
	}
	if got := a.Stats().Requests["ims.token_v3"]; got != 1 {
		t.Errorf("%d token requests for %d concurrent callers, want 1", got, n)
	}
}

// TestE2E_IMSOutageAtStartThenRecovery: without any token, requests get a
// 503 token_unavailable naming the IMS error, with Retry-After; when IMS
// comes back the same process becomes ready and serves.
func TestE2E_IMSOutageAtStartThenRecovery(t *testing.T) {
	t.Parallel()
	a := startAdobe(t, fakeadobe.Options{})
	a.SetIMSDown(true)
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, a.stockOAuthEnv(c))
	p.waitLog("token exchange failed")

	status, h, body := httpGet(t, p.URL("stock")+searchPath)
	e := checkProxyError(t, status, h, body, http.StatusServiceUnavailable, "token_unavailable", "stock")
	if !strings.Contains(e.Message, "temporarily_unavailable") {
		t.Errorf("message %q does not carry the IMS error code", e.Message)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After = %q, want 1 to 60 seconds", h.Get("Retry-After"))
	}
	st, ready := p.readyz()
	rr, _ := ready["routes"].(map[string]any)["stock"].(map[string]any)
	if st != http.StatusServiceUnavailable || !strings.Contains(stringOf(rr["last_error"]), "temporarily_unavailable") {
		t.Errorf("/readyz during the outage: %d %v", st, ready)
	}
	if n := a.Stats().Requests["stock.search_files"]; n != 0 {
		t.Errorf("%d searches reached Stock without a token", n)
	}

	a.SetIMSDown(false)
	p.waitReady()
	if status, _, body := httpGet(t, p.URL("stock")+searchPath); status != http.StatusOK {
		t.Fatalf("after recovery: %d %s", status, body)
	}
}

// TestE2E_IMSOutageWhileTokenValid: a refresh that fails during an IMS
// outage goes unnoticed by callers: the valid token keeps being used, and
// the next attempt after the outage renews it.
func TestE2E_IMSOutageWhileTokenValid(t *testing.T) {
	t.Parallel()
	// 8 s tokens: the refresh is due after 4 s, fails, and is retried 1 s
	// later, well before the token's last usable moment (7.2 s).
	a := startAdobe(t, fakeadobe.Options{TokenLifetime: 8 * time.Second, RequestLogSize: 100000})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, a.stockOAuthEnv(c))
	p.waitReady()
	tr := startTraffic(t, p.URL("stock")+searchPath)

	a.SetIMSDown(true)
	waitFor(t, 15*time.Second, "a refresh to fail", func() bool { return a.Stats().Statuses["ims.token_v3 503"] > 0 })
	a.SetIMSDown(false)
	waitFor(t, 15*time.Second, "a new token", func() bool { return a.Stats().Exchanges["oauth_success"] >= 2 })
	statuses, failures := tr.results()

	if len(statuses) != 1 || statuses[http.StatusOK] == 0 {
		t.Fatalf("answers by status %v, want only 200s: %q", statuses, failures)
	}
	if n := a.Stats().TokensPresented[fakeadobe.TokenExpired]; n != 0 {
		t.Fatalf("%d requests carried an expired token", n)
	}
	p.waitLog("token exchange failed")
}

// TestE2E_RevokedTokenRefreshedAndRetried: after Adobe revokes the tokens,
// the upstream's 401 is absorbed: the proxy fetches a new token and
// replays the request (a GET, and a POST with its small body), and the
// caller sees only success.
func TestE2E_RevokedTokenRefreshedAndRetried(t *testing.T) {
	t.Parallel()
	a := startAdobe(t, fakeadobe.Options{})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, a.stockAndAEMEnv(t, c))
	p.waitReady()
	if n := a.RevokeTokens(); n != 2 {
		t.Fatalf("revoked %d tokens, want the two routes'", n)
	}

	status, h, body := httpGet(t, p.URL("stock")+searchPath, "X-Request-Id", "revoked-get")
	if status != http.StatusOK || len(h.Values("X-Request-Id")) != 1 {
		t.Fatalf("GET after revocation: %d %v %s", status, h.Values("X-Request-Id"), body)
	}
	folder := `{"class":"assetFolder","properties":{"title":"Made after a revocation"}}`
	status, _, body = httpDo(t, http.MethodPost, p.URL("aem")+"/api/assets/after-revocation",
		strings.NewReader(folder), "Content-Type", "application/json")
	if status != http.StatusCreated {
		t.Fatalf("POST after revocation: %d %s", status, body)
	}
	if status, _, body := httpGet(t, p.URL("aem")+"/api/assets/after-revocation.json"); status != http.StatusOK ||
		!strings.Contains(string(body), "Made after a revocation") {
		t.Fatalf("the folder the replayed POST made: %d %s", status, body)
	}

	// Each route: exactly one attempt with the revoked token, answered 401,
	// then the same request with a new valid token.
	for _, ep := range []string{"stock.search_files", "aem.api"} {
		var states []string
		for _, rec := range a.Requests(0) {
			if rec.Endpoint == ep {
				states = append(states, string(rec.Token.State)+" "+strconv.Itoa(rec.Status))
			}
		}
		want := "revoked 401,valid 200"
		if ep == "aem.api" {
			want = "revoked 401,valid 201,valid 200"
		}
		if got := strings.Join(states, ","); got != want {
			t.Errorf("%s: the emulator saw %s, want %s", ep, got, want)
		}
	}
	if n := a.Stats().Exchanges; n["oauth_success"] != 2 || n["success"] != 2 {
		t.Errorf("exchanges %v, want one more per route after the revocation", n)
	}
}

// TestE2E_RevokedTokenLargeBodyNotReplayed: a body over 1 MiB is streamed,
// so it cannot be sent twice: the upstream's 401 reaches the caller as it
// came, and the token is still renewed for the next request.
func TestE2E_RevokedTokenLargeBodyNotReplayed(t *testing.T) {
	t.Parallel()
	a := startAdobe(t, fakeadobe.Options{})
	c := a.newCredentials(t, fakeadobe.CredentialOptions{})
	p := startProxy(t, aemUpstreamEnv(a, map[string]string{"IMSPROXY_AEM_CREDENTIALS_FILE": a.credentialsFile(t, c)}))
	p.waitReady()
	a.RevokeTokens()

	big := strings.Repeat("x", 2<<20)
	status, h, _ := httpDo(t, http.MethodPost, p.URL("aem")+"/api/assets/big", strings.NewReader(big))
	if status != http.StatusUnauthorized || h.Get("X-Imsproxy-Error") != "" {
		t.Fatalf("large POST after revocation: %d (X-Imsproxy-Error %q), want the upstream's own 401",
			status, h.Get("X-Imsproxy-Error"))
	}
	if status, _, body := httpGet(t, p.URL("aem")+"/api/assets.json"); status != http.StatusOK {
		t.Fatalf("next request: %d %s", status, body)
	}
	if n := a.Stats().Exchanges["success"]; n != 2 {
		t.Errorf("%d successful exchanges, want 2 (start, after the 401)", n)
	}
}
