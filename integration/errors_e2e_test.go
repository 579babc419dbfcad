package integration

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// TestE2E_ProxyErrors: every error the proxy makes itself that
// the binary can produce today, each in the one error shape (a JSON body
// with error, message and route, and the X-Imsproxy-Error header), and
// none of them carrying a secret.
func TestE2E_ProxyErrors(t *testing.T) {
	tests := []struct {
		name string
		// setup adjusts the emulator and the environment of a stock route
		// (AEM upstream: the emulator; both routes OAuth).
		setup func(t *testing.T, a *adobe, env map[string]string)
		// call makes the failing request.
		call                func(t *testing.T, p *proxyProcess) (int, http.Header, []byte)
		wantStatus          int
		wantCode, wantInMsg string
		wantRetryAfter      bool
		// wantSearches is how many searches the emulator answered (-1: not
		// known yet, as the timed-out one is still being delayed).
		wantSearches int
	}{
		{
			name:  "502 upstream_unreachable: nothing listens at UPSTREAM",
			setup: func(t *testing.T, a *adobe, env map[string]string) { env["IMSPROXY_STOCK_UPSTREAM"] = closedPortURL(t) },
			call: func(t *testing.T, p *proxyProcess) (int, http.Header, []byte) {
				return httpGet(t, p.URL("stock")+searchPath)
			},
			wantStatus: http.StatusBadGateway, wantCode: "upstream_unreachable", wantInMsg: "IMSPROXY_STOCK_UPSTREAM",
		},
		{
			name: "504 upstream_timeout: Stock answers after TIMEOUT",
			setup: func(t *testing.T, a *adobe, env map[string]string) {
				env["IMSPROXY_STOCK_TIMEOUT"] = "300ms"
				a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{Latency: fakeadobe.Duration(5 * time.Second)})
			},
			call: func(t *testing.T, p *proxyProcess) (int, http.Header, []byte) {
				start := time.Now()
				status, h, body := httpGet(t, p.URL("stock")+searchPath)
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("the 504 took %v, want about the 300ms TIMEOUT", d)
				}
				return status, h, body
			},
			wantStatus: http.StatusGatewayTimeout, wantCode: "upstream_timeout", wantInMsg: "IMSPROXY_STOCK_TIMEOUT",
			wantSearches: -1,
		},
		{
			name:  "413 body_too_large: a body over MAX_BODY_BYTES with Content-Length",
			setup: func(t *testing.T, a *adobe, env map[string]string) { env["IMSPROXY_STOCK_MAX_BODY_BYTES"] = "1000" },
			call: func(t *testing.T, p *proxyProcess) (int, http.Header, []byte) {
				return httpDo(t, http.MethodPost, p.URL("stock")+"/Rest/Media/1/Search/Files", strings.NewReader(strings.Repeat("x", 1001)))
			},
			wantStatus: http.StatusRequestEntityTooLarge, wantCode: "body_too_large", wantInMsg: "IMSPROXY_STOCK_MAX_BODY_BYTES",
		},
		{
			name:  "413 body_too_large: a chunked body that grows over MAX_BODY_BYTES",
			setup: func(t *testing.T, a *adobe, env map[string]string) { env["IMSPROXY_STOCK_MAX_BODY_BYTES"] = "1000" },
			call: func(t *testing.T, p *proxyProcess) (int, http.Header, []byte) {
				// A reader of unknown length makes the client send chunks.
				body := io.MultiReader(strings.NewReader(strings.Repeat("x", 600)), strings.NewReader(strings.Repeat("y", 600)))
				return httpDo(t, http.MethodPost, p.URL("stock")+"/Rest/Media/1/Search/Files", body)
			},
			wantStatus: http.StatusRequestEntityTooLarge, wantCode: "body_too_large", wantInMsg: "1000 bytes",
		},
		{
			name: "503 token_unavailable: IMS refuses the client secret",
			setup: func(t *testing.T, a *adobe, env map[string]string) {
				env["IMSPROXY_STOCK_CLIENT_SECRET"] = "p8e-wrong-secret-0123456789"
			},
			call: func(t *testing.T, p *proxyProcess) (int, http.Header, []byte) {
				p.waitLog("token exchange failed")
				return httpGet(t, p.URL("stock")+searchPath)
			},
			wantStatus: http.StatusServiceUnavailable, wantCode: "token_unavailable", wantInMsg: "invalid_client",
			wantRetryAfter: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startAdobe(t, fakeadobe.Options{})
			c := a.newCredentials(t, fakeadobe.CredentialOptions{})
			env := a.stockOAuthEnv(c)
			tt.setup(t, a, env)
			p := startProxy(t, env)
			if tt.wantCode != "token_unavailable" {
				p.waitReady()
			}
			a.ResetStats()

			status, h, body := tt.call(t, p)
			e := checkProxyError(t, status, h, body, tt.wantStatus, tt.wantCode, "stock")
			if !strings.Contains(e.Message, tt.wantInMsg) {
				t.Errorf("message %q does not mention %q", e.Message, tt.wantInMsg)
			}
			if ra := h.Get("Retry-After"); tt.wantRetryAfter != (ra != "") {
				t.Errorf("Retry-After = %q, want one: %v", ra, tt.wantRetryAfter)
			} else if n, err := strconv.Atoi(ra); ra != "" && (err != nil || n < 1) {
				t.Errorf("Retry-After = %q, want whole seconds >= 1", ra)
			}
			if h.Get("X-Request-Id") == "" {
				t.Error("a proxy error without X-Request-Id")
			}
			if got := a.Stats().Requests["stock.search_files"]; tt.wantSearches >= 0 && got != tt.wantSearches {
				t.Errorf("the emulator saw %d searches, want %d", got, tt.wantSearches)
			}
			for _, secret := range []string{c.ClientSecret, env["IMSPROXY_STOCK_CLIENT_SECRET"]} {
				if bytes.Contains(body, []byte(secret)) || strings.Contains(p.stderr.String(), secret) {
					t.Errorf("a client secret appears in the answer or the log")
				}
			}
		})
	}
}

// TestE2E_InvalidConfigurationExits2: a broken configuration stops the
// binary at once with exit code 2, one line per problem naming the
// variable, and no secret — not even part of one — in its output.
func TestE2E_InvalidConfigurationExits2(t *testing.T) {
	key := sharedKey(t)
	// A certificate that expired yesterday, inside an otherwise valid AEM
	// service-credentials file.
	expired, err := fakeadobe.GenerateCredentials(fakeadobe.CredentialOptions{
		Key: key, Validity: 24 * time.Hour, Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	js, err := expired.ServiceCredentialsJSON("https://ims-na1.adobelogin.com")
	if err != nil {
		t.Fatal(err)
	}
	const stockSecret = "p8e-Stock-Secret-7f3a9c2e41b8"
	garbage := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("secret key material "), 8))
	env := map[string]string{
		"IMSPROXY_ROUTES":                   "stock,aem,bp",
		"IMSPROXY_STOCK_CLIENT_SECRET":      stockSecret,
		"IMSPROXY_STOCK_TIMOUT":             "5s",
		"IMSPROXY_STOCK_LISTEN":             "0.0.0.0:8080",
		"IMSPROXY_AEM_UPSTREAM":             "https://author-p1-e2.adobeaemcloud.com",
		"IMSPROXY_AEM_CLIENT_ID":            "cm-p1-e2-integration",
		"IMSPROXY_AEM_CLIENT_SECRET":        "p8e-Aem-Secret-0c1d2e3f4a5b",
		"IMSPROXY_AEM_ORG_ID":               "907136ED5D35CBF50A495CD4@AdobeOrg",
		"IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID": "D8E157165FC0EAE10A495E8C@techacct.adobe.com",
		"IMSPROXY_AEM_PRIVATE_KEY":          "-----BEGIN PRIVATE KEY-----\n" + garbage + "\n-----END PRIVATE KEY-----\n",
		"IMSPROXY_BP_LISTEN":                "127.0.0.1:8082",
		"IMSPROXY_BP_UPSTREAM":              "https://mytenant.brand-portal.adobe.com",
		"IMSPROXY_BP_CREDENTIALS_FILE":      writeTestFile(t, "expired.json", js),
	}
	code, stdout, stderr := runProxyToExit(t, env, 30*time.Second)
	if code != 2 {
		t.Fatalf("exit code %d, want 2\nstderr:\n%s", code, stderr)
	}
	for _, v := range []string{
		"IMSPROXY_STOCK_CLIENT_ID", "IMSPROXY_STOCK_TIMOUT", "IMSPROXY_STOCK_LISTEN",
		"IMSPROXY_AEM_PRIVATE_KEY", "IMSPROXY_BP_CREDENTIALS_FILE",
	} {
		if !hasLineStarting(stderr, v+":") {
			t.Errorf("no problem line for %s in:\n%s", v, stderr)
		}
	}
	if !strings.Contains(stderr, "IMSPROXY_STOCK_TIMEOUT") || !strings.Contains(stderr, "expired") {
		t.Errorf("want the typo's correction and the certificate's expiry in:\n%s", stderr)
	}
	out := stdout + stderr
	secrets := []string{stockSecret, env["IMSPROXY_AEM_CLIENT_SECRET"], expired.ClientSecret, garbage}
	for _, line := range strings.Split(string(expired.PrivateKeyPKCS1PEM()), "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	for _, s := range secrets {
		// "not even partially": no 8-character piece of a secret.
		for i := 0; i+8 <= len(s); i += 4 {
			if strings.Contains(out, s[i:i+8]) {
				t.Fatalf("output contains %q, part of a secret:\n%s", s[i:i+8], out)
			}
		}
	}
}

func hasLineStarting(s, prefix string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}
