package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

// testNow is the clock of tests that judge certificate expiry.
var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// rsaKey returns test key i, made once per process.
func rsaKey(i int) *rsa.PrivateKey { return testutil.RSA(i) }

// pkcs1PEM encodes k as AEM service credentials carry it: PKCS#1 with \r\n.
func pkcs1PEM(k *rsa.PrivateKey) string {
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return strings.ReplaceAll(string(b), "\n", "\r\n")
}

// pkcs8PEM encodes k as modern openssl writes it.
func pkcs8PEM(t *testing.T, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// ecKey returns a fresh P-256 key, which IMS cannot use.
func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// certPEM returns a self-signed certificate for k valid until notAfter.
func certPEM(t *testing.T, k *rsa.PrivateKey, notAfter time.Time) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imsproxy test"},
		NotBefore:    notAfter.Add(-365 * 24 * time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// writeFile writes content to name in a fresh temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// credentialsJSON returns an AEM service-credentials file as the
// Developer Console writes it (as the AEM Developer Console does), with key 0 and a
// certificate valid a year past testNow. edit changes the integration
// object before encoding; a nil value deletes the field.
func credentialsJSON(t *testing.T, edit map[string]any) string {
	t.Helper()
	integ := map[string]any{
		"imsEndpoint": "ims-na1.adobelogin.com",
		"metascopes":  "ent_aem_cloud_api",
		"technicalAccount": map[string]any{
			"clientId":     "cm-p1-e2-integration",
			"clientSecret": "p8e-file-secret",
		},
		"email":      "c9adf360@techacct.adobe.com",
		"id":         "TECH1@techacct.adobe.com",
		"org":        "ORG1@AdobeOrg",
		"privateKey": pkcs1PEM(rsaKey(0)),
		"publicKey":  strings.ReplaceAll(certPEM(t, rsaKey(0), testNow.AddDate(1, 0, 0)), "\n", "\r\n"),
	}
	for k, v := range edit {
		if k == "clientId" || k == "clientSecret" {
			ta := integ["technicalAccount"].(map[string]any)
			if v == nil {
				delete(ta, k)
			} else {
				ta[k] = v
			}
			continue
		}
		if v == nil {
			delete(integ, k)
		} else {
			integ[k] = v
		}
	}
	b, err := json.Marshal(map[string]any{"ok": true, "integration": integ, "statusCode": 200})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// environ turns a map into os.Environ form.
func environ(m map[string]string) []string {
	var e []string
	for k, v := range m {
		e = append(e, k+"="+v)
	}
	sort.Strings(e)
	return e
}

// mustLoad loads env at testNow and fails the test on any problem.
func mustLoad(t *testing.T, env map[string]string) *Config {
	t.Helper()
	c, err := load(environ(env), func() time.Time { return testNow }, "dev")
	if err != nil {
		t.Fatalf("Load: unexpected problems:\n%v", err)
	}
	return c
}

// loadProblems loads env at testNow and returns its problems as "VAR:
// message" lines, failing the test when there are none.
func loadProblems(t *testing.T, env map[string]string) []string {
	t.Helper()
	c, err := load(environ(env), func() time.Time { return testNow }, "dev")
	if err == nil {
		t.Fatalf("Load: want problems, got none (config %+v)", c)
	}
	if c != nil {
		t.Errorf("Load returned a Config along with problems")
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load error is %T, want Problems", err)
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return lines
}

// wantOnly fails unless got is want, problem for problem, in Error's order.
func wantOnly(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// wantProblems checks that every wanted line is among the problems. A
// wanted line ending in "..." matches by prefix.
func wantProblems(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w || (strings.HasSuffix(w, "...") && strings.HasPrefix(g, strings.TrimSuffix(w, "..."))) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("missing problem\n  %s\ngot:\n  %s", w, strings.Join(got, "\n  "))
		}
	}
}

// oauthStock is a minimal valid stock route.
func oauthStock() map[string]string {
	return map[string]string{
		"IMSPROXY_STOCK_CLIENT_ID":     "stock-client",
		"IMSPROXY_STOCK_CLIENT_SECRET": "stock-secret",
		"IMSPROXY_STOCK_SCOPES":        "openid,AdobeID",
	}
}

// with returns a copy of base with the entries of more added.
func with(base map[string]string, more ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i+1 < len(more); i += 2 {
		m[more[i]] = more[i+1]
	}
	return m
}
