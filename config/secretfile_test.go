package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestLoad_ClientSecretFile(t *testing.T) {
	const v = "IMSPROXY_STOCK_CLIENT_SECRET_FILE"
	t.Run("the secret without the line break of a Kubernetes mount", func(t *testing.T) {
		f := writeFile(t, "client-secret", " p8e-from-file\n")
		r := mustLoad(t, map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "stock-client", "IMSPROXY_STOCK_SCOPES": "openid", v: f}).Routes[0]
		if r.Auth != AuthOAuth || r.Credentials.ClientSecret.Reveal() != "p8e-from-file" || !reflect.DeepEqual(r.Files, []string{f}) {
			t.Errorf("route = %+v, secret %q", r, r.Credentials.ClientSecret.Reveal())
		}
	})
	t.Run("wins over the credentials file", func(t *testing.T) {
		r := mustLoad(t, map[string]string{
			"IMSPROXY_AEM_UPSTREAM":           "https://a.example.com",
			"IMSPROXY_AEM_CREDENTIALS_FILE":   writeFile(t, "aem.json", credentialsJSON(t, nil)),
			"IMSPROXY_AEM_CLIENT_SECRET_FILE": writeFile(t, "client-secret", "p8e-rotated\n"),
		}).Routes[0]
		if got := r.Credentials.ClientSecret.Reveal(); got != "p8e-rotated" {
			t.Errorf("client secret = %q, want the file's", got)
		}
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"both forms", with(oauthStock(), v, writeFile(t, "client-secret", "p8e-from-file\n")),
			[]string{"IMSPROXY_STOCK_CLIENT_SECRET: set either IMSPROXY_STOCK_CLIENT_SECRET or IMSPROXY_STOCK_CLIENT_SECRET_FILE, not both"}},
		{"empty file", map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_SCOPES": "openid", v: writeFile(t, "client-secret", "")},
			[]string{v + ": is empty"}},
		{"only white space", map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_SCOPES": "openid", v: writeFile(t, "client-secret", " \r\n\t\n")},
			[]string{v + ": is empty"}},
		{"missing file", map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_SCOPES": "openid", v: "/nonexistent/client-secret"},
			[]string{v + ": cannot read /nonexistent/client-secret: no such file or directory"}},
		{"a directory", map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_SCOPES": "openid", v: "/"},
			[]string{v + ": cannot read /: is a directory"}},
		{"the secret itself in the variable", map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_SCOPES": "openid", v: "p8e-from-file"},
			[]string{v + ": cannot read the file it names: no such file or directory (the value is not repeated: it does not look like a path, and may be the secret itself)"}},
		{"empty file beside a credentials file", map[string]string{
			"IMSPROXY_AEM_UPSTREAM":           "https://a.example.com",
			"IMSPROXY_AEM_CREDENTIALS_FILE":   writeFile(t, "aem.json", credentialsJSON(t, nil)),
			"IMSPROXY_AEM_CLIENT_SECRET_FILE": writeFile(t, "client-secret", "\n"),
		}, []string{"IMSPROXY_AEM_CLIENT_SECRET_FILE: is empty"}},
		{"the file alone means oauth", map[string]string{"IMSPROXY_STOCK_SCOPES": "openid", v: writeFile(t, "client-secret", "p8e-from-file")},
			[]string{"IMSPROXY_STOCK_CLIENT_ID: required for AUTH=oauth (or set IMSPROXY_STOCK_CREDENTIALS_FILE)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loadProblems(t, tc.env)
			wantProblems(t, got, tc.want...)
			if len(got) != len(tc.want) {
				t.Errorf("a broken secret must not also be reported missing; got:\n%s", strings.Join(got, "\n"))
			}
			if out := strings.Join(got, "\n"); strings.Contains(out, "p8e-from-file") {
				t.Errorf("problems quote the secret:\n%s", out)
			}
		})
	}
}

// TestLoad_SecretInAFileVariableIsNotRepeated: a secret put in the _FILE
// variable instead of the variable itself cannot be read as a file, and
// the message saying so must not print it; a path is still shown.
func TestLoad_SecretInAFileVariableIsNotRepeated(t *testing.T) {
	for _, tc := range []struct {
		variable, value string
		shown           bool
	}{
		{"IMSPROXY_STOCK_CLIENT_SECRET_FILE", "p8e-Qz7vK2mW9xR4tB8n", false},
		{"IMSPROXY_STOCK_ACCESS_TOKEN_FILE", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", false},
		{"IMSPROXY_STOCK_PRIVATE_KEY_FILE", pkcs8PEM(t, rsaKey(0)), false},
		{"IMSPROXY_STOCK_PRIVATE_KEY_FILE", strings.ReplaceAll(pkcs8PEM(t, rsaKey(0)), "\n", `\n`), false},
		{"IMSPROXY_STOCK_JWT_PAYLOAD_FILE", `{"iss":"O@AdobeOrg","aud":"https://ims-na1.adobelogin.com/c/x"}`, false},
		{"IMSPROXY_STOCK_CREDENTIALS_FILE", credentialsJSON(t, nil), false},
		{"IMSPROXY_STOCK_CLIENT_SECRET_FILE", "/run/secrets/missing-client-secret", true},
		{"IMSPROXY_STOCK_PRIVATE_KEY_FILE", "secrets/missing.key", true},
	} {
		got := strings.Join(loadProblems(t, map[string]string{tc.variable: tc.value, "IMSPROXY_STOCK_AUTH": "none"}), "\n")
		want := tc.variable + ": cannot read "
		if tc.shown {
			want += tc.value + ": no such file or directory"
		} else {
			want += "the file it names: "
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s=%.20q...: problems lack %q:\n%s", tc.variable, tc.value, want, got)
		}
		mid := len(tc.value) / 2
		if part := tc.value[mid-8 : mid+8]; !tc.shown && strings.Contains(got, part) {
			t.Errorf("%s: the value was repeated:\n%s", tc.variable, got)
		}
	}
}
