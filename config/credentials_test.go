package config

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoad_CredentialsFile(t *testing.T) {
	creds := writeFile(t, "aem.json", credentialsJSON(t, map[string]any{"metascopes": "ent_aem_cloud_api, ent_cloudmgr_sdk ,"}))
	r := mustLoad(t, map[string]string{
		"IMSPROXY_AEM_UPSTREAM":         "https://author-p1-e2.adobeaemcloud.com",
		"IMSPROXY_AEM_CREDENTIALS_FILE": creds,
	}).Routes[0]
	c := r.Credentials
	if r.Auth != AuthJWT || r.IMSURL != "https://ims-na1.adobelogin.com" || !reflect.DeepEqual(r.Files, []string{creds}) {
		t.Errorf("route = %+v", r)
	}
	if c.ClientID != "cm-p1-e2-integration" || c.ClientSecret.Reveal() != "p8e-file-secret" ||
		c.OrgID != "ORG1@AdobeOrg" || c.TechnicalAccountID != "TECH1@techacct.adobe.com" {
		t.Errorf("credentials = %+v", c)
	}
	if c.PrivateKey.IsZero() || !c.PrivateKey.RSA().Equal(rsaKey(0)) {
		t.Errorf("private key (PKCS#1 with \\r\\n) not loaded")
	}
	if !reflect.DeepEqual(c.Metascopes, []string{"ent_aem_cloud_api", "ent_cloudmgr_sdk"}) {
		t.Errorf("metascopes = %q", c.Metascopes)
	}
	if want := testNow.AddDate(1, 0, 0); !c.CertificateExpiry.Equal(want) {
		t.Errorf("certificate expiry = %v, want %v", c.CertificateExpiry, want)
	}
	if c.JWTClaims != nil || !c.AccessToken.IsZero() {
		t.Errorf("unexpected claims or token: %+v", c)
	}
}

func TestLoad_CredentialsFilePrecedence(t *testing.T) {
	base := func(t *testing.T, edit map[string]any, more ...string) Route {
		t.Helper()
		env := with(map[string]string{
			"IMSPROXY_AEM_UPSTREAM":         "https://author-p1-e2.adobeaemcloud.com",
			"IMSPROXY_AEM_CREDENTIALS_FILE": writeFile(t, "aem.json", credentialsJSON(t, edit)),
		}, more...)
		return mustLoad(t, env).Routes[0]
	}
	t.Run("stage host gets https", func(t *testing.T) {
		if r := base(t, map[string]any{"imsEndpoint": "ims-na1-stg1.adobelogin.com"}); r.IMSURL != "https://ims-na1-stg1.adobelogin.com" {
			t.Errorf("IMS URL = %q", r.IMSURL)
		}
	})
	t.Run("endpoint with a scheme is kept", func(t *testing.T) {
		if r := base(t, map[string]any{"imsEndpoint": "http://127.0.0.1:9000/"}); r.IMSURL != "http://127.0.0.1:9000" {
			t.Errorf("IMS URL = %q", r.IMSURL)
		}
	})
	t.Run("route IMS_URL wins", func(t *testing.T) {
		if r := base(t, nil, "IMSPROXY_AEM_IMS_URL", "http://127.0.0.1:9001/", "IMSPROXY_IMS_URL", "http://127.0.0.1:9002"); r.IMSURL != "http://127.0.0.1:9001" {
			t.Errorf("IMS URL = %q", r.IMSURL)
		}
	})
	t.Run("explicit global IMS_URL wins over the file", func(t *testing.T) {
		if r := base(t, nil, "IMSPROXY_IMS_URL", "http://127.0.0.1:9002"); r.IMSURL != "http://127.0.0.1:9002" {
			t.Errorf("IMS URL = %q", r.IMSURL)
		}
	})
	t.Run("variables override file values", func(t *testing.T) {
		key := writeFile(t, "k.pem", pkcs8PEM(t, rsaKey(1)))
		cert := writeFile(t, "c.pem", certPEM(t, rsaKey(1), testNow.AddDate(0, 6, 0)))
		r := base(t, nil, "IMSPROXY_AEM_CLIENT_ID", "other-client", "IMSPROXY_AEM_CLIENT_SECRET", "other-secret",
			"IMSPROXY_AEM_ORG_ID", "ORG2@AdobeOrg", "IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID", "TECH2@techacct.adobe.com",
			"IMSPROXY_AEM_PRIVATE_KEY_FILE", key, "IMSPROXY_AEM_CERTIFICATE_FILE", cert, "IMSPROXY_AEM_METASCOPES", "ent_a,ent_b")
		c := r.Credentials
		if c.ClientID != "other-client" || c.ClientSecret.Reveal() != "other-secret" || c.OrgID != "ORG2@AdobeOrg" ||
			c.TechnicalAccountID != "TECH2@techacct.adobe.com" || !c.PrivateKey.RSA().Equal(rsaKey(1)) ||
			!reflect.DeepEqual(c.Metascopes, []string{"ent_a", "ent_b"}) || !c.CertificateExpiry.Equal(testNow.AddDate(0, 6, 0)) {
			t.Errorf("credentials = %+v", c)
		}
		if len(r.Files) != 3 {
			t.Errorf("files = %q, want the credentials, key and certificate files", r.Files)
		}
	})
	t.Run("metascopes as a JSON list", func(t *testing.T) {
		r := base(t, map[string]any{"metascopes": []string{"ent_x", " ent_y"}})
		if !reflect.DeepEqual(r.Credentials.Metascopes, []string{"ent_x", "ent_y"}) {
			t.Errorf("metascopes = %q", r.Credentials.Metascopes)
		}
	})
	t.Run("aem default metascope when the file has none", func(t *testing.T) {
		r := base(t, map[string]any{"metascopes": nil})
		if !reflect.DeepEqual(r.Credentials.Metascopes, []string{"ent_aem_cloud_api"}) {
			t.Errorf("metascopes = %q", r.Credentials.Metascopes)
		}
	})
	t.Run("certificateExpirationDate without publicKey", func(t *testing.T) {
		r := base(t, map[string]any{"publicKey": nil, "certificateExpirationDate": "2026-09-21T14:16:46.000Z"})
		if want := time.Date(2026, 9, 21, 14, 16, 46, 0, time.UTC); !r.Credentials.CertificateExpiry.Equal(want) {
			t.Errorf("expiry = %v, want %v", r.Credentials.CertificateExpiry, want)
		}
	})
	t.Run("oauth takes client id and secret from the file", func(t *testing.T) {
		r := base(t, map[string]any{"privateKey": nil, "org": nil, "id": nil}, "IMSPROXY_AEM_AUTH", "oauth", "IMSPROXY_AEM_SCOPES", "openid")
		if r.Auth != AuthOAuth || r.Credentials.ClientID != "cm-p1-e2-integration" {
			t.Errorf("route = %+v", r)
		}
	})
}

func TestLoad_CredentialsFileProblems(t *testing.T) {
	const v = "IMSPROXY_AEM_CREDENTIALS_FILE"
	otherCert := strings.ReplaceAll(certPEM(t, rsaKey(1), testNow.AddDate(1, 0, 0)), "\n", "\r\n")
	for _, tc := range []struct {
		name    string
		content string
		more    []string
		want    []string
	}{
		{"each missing field is its own problem", credentialsJSON(t, map[string]any{"clientId": nil, "clientSecret": nil,
			"org": nil, "id": nil, "privateKey": nil}), nil, []string{
			v + ": field integration.technicalAccount.clientId is missing",
			v + ": field integration.technicalAccount.clientSecret is missing",
			v + ": field integration.org is missing",
			v + ": field integration.id is missing",
			v + ": field integration.privateKey is missing"}},
		{"an empty string is missing", credentialsJSON(t, map[string]any{"clientSecret": ""}), nil,
			[]string{v + ": field integration.technicalAccount.clientSecret is missing"}},
		{"generic route without metascopes", credentialsJSON(t, map[string]any{"metascopes": nil}),
			[]string{"IMSPROXY_AEM_TYPE", "generic", "IMSPROXY_AEM_LISTEN", "127.0.0.1:8081"},
			[]string{v + ": field integration.metascopes is missing"}},
		{"not JSON", "clientSecret=abc", nil,
			[]string{v + ": is not a JSON object: want the service credentials JSON downloaded from the AEM Developer Console"}},
		{"two JSON values", credentialsJSON(t, nil) + "{}", nil, []string{v + ": is not a JSON object..."}},
		{"local development token instead", `{"ok":true,"statusCode":200,"accessToken":"eyJ"}`, nil,
			[]string{v + ": is a local development token file, not service credentials: name it in IMSPROXY_AEM_ACCESS_TOKEN_FILE instead"}},
		{"no integration", `{"ok":true}`, nil, []string{v + ": has no integration object: not an AEM service credentials file"}},
		{"wrong types", credentialsJSON(t, map[string]any{"clientId": 42, "metascopes": true, "org": []int{1}}), nil, []string{
			v + ": field integration.technicalAccount.clientId is not a string",
			v + ": field integration.metascopes is not a comma-separated string",
			v + ": field integration.org is not a string"}},
		{"bad endpoint", credentialsJSON(t, map[string]any{"imsEndpoint": "ims na1"}), nil,
			[]string{v + ": field integration.imsEndpoint is not a host name or URL"}},
		{"EC private key", credentialsJSON(t, map[string]any{"privateKey": pkcs8PEM(t, ecKey(t))}), nil,
			[]string{v + ": field integration.privateKey is an EC key, not RSA: IMS signs the JWT with RS256, which needs an RSA key"}},
		{"private key not PEM", credentialsJSON(t, map[string]any{"privateKey": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}), nil,
			[]string{v + ": field integration.privateKey is not PEM: want a block starting -----BEGIN PRIVATE KEY----- (PKCS#8) or -----BEGIN RSA PRIVATE KEY----- (PKCS#1)"}},
		{"public key not a certificate", credentialsJSON(t, map[string]any{"publicKey": "-----BEGIN CERTIFICATE-----\r\nAAAA\r\n-----END CERTIFICATE-----\r\n"}), nil,
			[]string{v + ": field integration.publicKey does not parse as an X.509 certificate"}},
		{"expired certificate", credentialsJSON(t, map[string]any{"publicKey": certPEM(t, rsaKey(0), testNow.Add(-time.Hour))}), nil,
			[]string{v + ": field integration.publicKey: the certificate expired on 2026-06-01T11:00:00Z: add a new certificate in the Adobe Developer Console"}},
		{"expired certificateExpirationDate", credentialsJSON(t, map[string]any{"publicKey": nil, "certificateExpirationDate": "2026-05-21T14:16:46.000Z"}), nil,
			[]string{v + ": field certificateExpirationDate: the certificate expired on 2026-05-21T14:16:46Z: add a new certificate in the Adobe Developer Console"}},
		{"bad certificateExpirationDate", credentialsJSON(t, map[string]any{"publicKey": nil, "certificateExpirationDate": "next May"}), nil,
			[]string{v + ": field integration.certificateExpirationDate is not an RFC 3339 time such as 2026-05-21T14:16:46.000Z"}},
		{"certificate of another key", credentialsJSON(t, map[string]any{"publicKey": otherCert}), nil,
			[]string{v + ": field integration.publicKey: is not the certificate of the private key in IMSPROXY_AEM_CREDENTIALS_FILE: IMS would answer invalid_signature"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := with(map[string]string{
				"IMSPROXY_AEM_UPSTREAM": "https://author-p1-e2.adobeaemcloud.com",
				v:                       writeFile(t, "aem.json", tc.content),
			}, tc.more...)
			got := loadProblems(t, env)
			wantProblems(t, got, tc.want...)
			if len(got) != len(tc.want) {
				t.Errorf("want %d problems, got:\n%s", len(tc.want), strings.Join(got, "\n"))
			}
		})
	}
	t.Run("explicit variables cover missing fields", func(t *testing.T) {
		mustLoad(t, map[string]string{
			"IMSPROXY_AEM_UPSTREAM":         "https://author-p1-e2.adobeaemcloud.com",
			v:                               writeFile(t, "aem.json", credentialsJSON(t, map[string]any{"clientSecret": nil, "privateKey": nil})),
			"IMSPROXY_AEM_CLIENT_SECRET":    "from-a-secret-store",
			"IMSPROXY_AEM_PRIVATE_KEY_FILE": writeFile(t, "k.pem", pkcs1PEM(rsaKey(0))),
		})
	})
}

func TestParsePrivateKey(t *testing.T) {
	k := rsaKey(0)
	pkcs8 := pkcs8PEM(t, k)
	for _, tc := range []struct {
		name, in, msg string
	}{
		{"PKCS#1", pkcs1PEM(k), ""},
		{"PKCS#1 with \\n", strings.ReplaceAll(pkcs1PEM(k), "\r\n", "\n"), ""},
		{"PKCS#8", pkcs8, ""},
		{"PKCS#8 with \\r\\n", strings.ReplaceAll(pkcs8, "\n", "\r\n"), ""},
		{"literal \\n escapes", strings.ReplaceAll(pkcs8, "\n", `\n`), ""},
		{"literal \\r\\n escapes", strings.ReplaceAll(pkcs1PEM(k), "\r\n", `\r\n`), ""},
		{"after EC PARAMETERS and with surrounding text", "key:\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" + pkcs8 + "trailer", ""},
		{"PKCS#8 labelled as PKCS#1", strings.Replace(strings.Replace(pkcs8, "BEGIN PRIVATE", "BEGIN RSA PRIVATE", 1), "END PRIVATE", "END RSA PRIVATE", 1), ""},
		{"not PEM", "just text", "is not PEM: want a block starting -----BEGIN PRIVATE KEY----- (PKCS#8) or -----BEGIN RSA PRIVATE KEY----- (PKCS#1)"},
		{"EC in PKCS#8", pkcs8PEM(t, ecKey(t)), "is an EC key, not RSA: IMS signs the JWT with RS256, which needs an RSA key"},
		{"EC in SEC 1", func() string {
			der, _ := x509.MarshalECPrivateKey(ecKey(t))
			return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		}(), "is an EC key, not RSA: IMS signs the JWT with RS256, which needs an RSA key"},
		{"encrypted PKCS#8", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "is an encrypted key: give it unencrypted (openssl pkey -in key.pem -out plain.pem)"},
		{"legacy encrypted PKCS#1", "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n", "is an encrypted key: give it unencrypted (openssl pkey -in key.pem -out plain.pem)"},
		{"a certificate", certPEM(t, k, testNow), "holds a CERTIFICATE block, not a private key"},
		{"OpenSSH key", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "holds a OPENSSH PRIVATE KEY block: want PRIVATE KEY (PKCS#8) or RSA PRIVATE KEY (PKCS#1)"},
		{"truncated body", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n", "does not parse as a PKCS#1 or PKCS#8 private key (is the PEM block complete?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := parsePrivateKey([]byte(tc.in))
			if msg != tc.msg {
				t.Fatalf("message = %q, want %q", msg, tc.msg)
			}
			if tc.msg == "" && !got.Equal(k) {
				t.Errorf("parsed a different key")
			}
		})
	}
}

func TestLoad_PrivateKeyVariables(t *testing.T) {
	jwt := map[string]string{
		"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_CLIENT_SECRET": "s",
		"IMSPROXY_STOCK_ORG_ID": "O@AdobeOrg", "IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID": "T@techacct.adobe.com",
	}
	t.Run("PEM with literal escapes in the variable", func(t *testing.T) {
		c := mustLoad(t, with(jwt, "IMSPROXY_STOCK_PRIVATE_KEY", strings.ReplaceAll(pkcs8PEM(t, rsaKey(1)), "\n", `\n`)))
		if !c.Routes[0].Credentials.PrivateKey.RSA().Equal(rsaKey(1)) || c.Routes[0].Files != nil {
			t.Errorf("route = %+v", c.Routes[0])
		}
	})
	for _, tc := range []struct {
		name string
		more []string
		want []string
	}{
		{"both forms", []string{"IMSPROXY_STOCK_PRIVATE_KEY", pkcs8PEM(t, rsaKey(0)), "IMSPROXY_STOCK_PRIVATE_KEY_FILE", writeFile(t, "k", pkcs8PEM(t, rsaKey(0)))},
			[]string{"IMSPROXY_STOCK_PRIVATE_KEY: set either IMSPROXY_STOCK_PRIVATE_KEY or IMSPROXY_STOCK_PRIVATE_KEY_FILE, not both"}},
		{"EC key file", []string{"IMSPROXY_STOCK_PRIVATE_KEY_FILE", writeFile(t, "k", pkcs8PEM(t, ecKey(t)))},
			[]string{"IMSPROXY_STOCK_PRIVATE_KEY_FILE: is an EC key, not RSA: IMS signs the JWT with RS256, which needs an RSA key"}},
		{"garbage in the variable", []string{"IMSPROXY_STOCK_PRIVATE_KEY", "not a key"},
			[]string{"IMSPROXY_STOCK_PRIVATE_KEY: is not PEM: want a block starting -----BEGIN PRIVATE KEY----- (PKCS#8) or -----BEGIN RSA PRIVATE KEY----- (PKCS#1)"}},
		{"missing key file", []string{"IMSPROXY_STOCK_PRIVATE_KEY_FILE", "/nonexistent/key.pem"},
			[]string{"IMSPROXY_STOCK_PRIVATE_KEY_FILE: cannot read /nonexistent/key.pem: no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loadProblems(t, with(jwt, tc.more...))
			wantProblems(t, got, tc.want...)
			if len(got) != len(tc.want) {
				t.Errorf("a broken key must not also be reported missing; got:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

func TestLoad_CertificateFile(t *testing.T) {
	jwt := map[string]string{
		"IMSPROXY_AEM_UPSTREAM":         "https://author-p1-e2.adobeaemcloud.com",
		"IMSPROXY_AEM_CREDENTIALS_FILE": writeFile(t, "aem.json", credentialsJSON(t, map[string]any{"publicKey": nil})),
	}
	t.Run("valid certificate sets the expiry", func(t *testing.T) {
		c := mustLoad(t, with(jwt, "IMSPROXY_AEM_CERTIFICATE_FILE", writeFile(t, "c.crt", certPEM(t, rsaKey(0), testNow.AddDate(0, 0, 3)))))
		if got := c.Routes[0].Credentials.CertificateExpiry; !got.Equal(testNow.AddDate(0, 0, 3)) {
			t.Errorf("expiry = %v", got)
		}
	})
	for _, tc := range []struct {
		name, content, want string
	}{
		{"expired", certPEM(t, rsaKey(0), time.Date(2026, 5, 31, 0, 0, 0, 0, time.UTC)),
			"IMSPROXY_AEM_CERTIFICATE_FILE: the certificate expired on 2026-05-31T00:00:00Z: add a new certificate in the Adobe Developer Console"},
		{"for another key", certPEM(t, rsaKey(1), testNow.AddDate(1, 0, 0)),
			"IMSPROXY_AEM_CERTIFICATE_FILE: is not the certificate of the private key in IMSPROXY_AEM_CREDENTIALS_FILE: IMS would answer invalid_signature"},
		{"not PEM", "MIIB", "IMSPROXY_AEM_CERTIFICATE_FILE: is not PEM: want a block starting -----BEGIN CERTIFICATE-----"},
		{"a key, not a certificate", pkcs8PEM(t, rsaKey(0)), "IMSPROXY_AEM_CERTIFICATE_FILE: holds a PRIVATE KEY block, not a CERTIFICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblems(t, loadProblems(t, with(jwt, "IMSPROXY_AEM_CERTIFICATE_FILE", writeFile(t, "c.crt", tc.content))), tc.want)
		})
	}
	t.Run("expiry does not matter without JWT", func(t *testing.T) {
		mustLoad(t, with(jwt, "IMSPROXY_AEM_AUTH", "oauth", "IMSPROXY_AEM_SCOPES", "openid",
			"IMSPROXY_AEM_CERTIFICATE_FILE", writeFile(t, "c.crt", certPEM(t, rsaKey(0), testNow.AddDate(-1, 0, 0)))))
	})
}

func TestLoad_CAFile(t *testing.T) {
	ca := certPEM(t, rsaKey(1), testNow.AddDate(1, 0, 0))
	r := mustLoad(t, with(oauthStock(), "IMSPROXY_STOCK_CA_FILE", writeFile(t, "ca.pem", ca))).Routes[0]
	if r.RootCAs == nil || r.CAFile == "" {
		t.Fatalf("no root pool: %+v", r)
	}
	b, _ := pem.Decode([]byte(ca))
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: r.RootCAs, CurrentTime: testNow}); err != nil {
		t.Errorf("the CA_FILE certificate is not trusted by RootCAs: %v", err)
	}
}

func TestParseAccessToken(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, msg string
	}{
		{"plain", "eyJhbGciOi.x.y\n", "eyJhbGciOi.x.y", ""},
		{"local development token JSON", `{"ok": true, "statusCode": 200, "accessToken": "eyJdev"}`, "eyJdev", ""},
		{"IMS answer", `{"access_token":"eyJims","expires_in":86399}`, "eyJims", ""},
		{"empty", " \n", "", "is empty"},
		{"JSON without token", `{"ok": true}`, "", "is JSON without an accessToken field: want the token itself or the local development token JSON"},
		{"broken JSON", `{"accessToken": `, "", "starts like JSON but is not a JSON object"},
		{"with Bearer", "Bearer eyJ", "", `contains spaces or line breaks: want the token alone, without "Bearer "`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := parseAccessToken([]byte(tc.in))
			if got != tc.want || msg != tc.msg {
				t.Errorf("parseAccessToken = %q, %q; want %q, %q", got, msg, tc.want, tc.msg)
			}
		})
	}
}

func TestLoad_AccessTokenFileJSON(t *testing.T) {
	f := writeFile(t, "token.json", `{"ok":true,"statusCode":200,"accessToken":"eyJlocal"}`)
	r := mustLoad(t, map[string]string{"IMSPROXY_AEM_UPSTREAM": "https://a.example.com", "IMSPROXY_AEM_ACCESS_TOKEN_FILE": f}).Routes[0]
	if r.Auth != AuthToken || r.Credentials.AccessToken.Reveal() != "eyJlocal" || !reflect.DeepEqual(r.Files, []string{f}) {
		t.Errorf("route = %+v, token %q", r, r.Credentials.AccessToken.Reveal())
	}
	wantProblems(t, loadProblems(t, map[string]string{"IMSPROXY_AEM_UPSTREAM": "https://a.example.com",
		"IMSPROXY_AEM_ACCESS_TOKEN_FILE": writeFile(t, "empty", "")}),
		"IMSPROXY_AEM_ACCESS_TOKEN_FILE: is empty")
}

func TestRoute_ReloadCredentials(t *testing.T) {
	t.Run("access token file", func(t *testing.T) {
		f := writeFile(t, "token", "first")
		r := mustLoad(t, map[string]string{"IMSPROXY_STOCK_ACCESS_TOKEN_FILE": f}).Routes[0]
		if err := os.WriteFile(f, []byte(`{"accessToken":"second"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		c, files, err := r.ReloadCredentials()
		if err != nil || c.AccessToken.Reveal() != "second" || !reflect.DeepEqual(files, []string{f}) {
			t.Errorf("reload = %q, %q, %v", c.AccessToken.Reveal(), files, err)
		}
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.ReloadCredentials(); err == nil || err.Error() != "IMSPROXY_STOCK_ACCESS_TOKEN_FILE: is empty" {
			t.Errorf("reload of an empty file: err = %v", err)
		}
	})
	t.Run("certificate rotation in the credentials file", func(t *testing.T) {
		f := writeFile(t, "aem.json", credentialsJSON(t, nil))
		r := mustLoad(t, map[string]string{"IMSPROXY_AEM_UPSTREAM": "https://a.example.com", "IMSPROXY_AEM_CREDENTIALS_FILE": f}).Routes[0]
		rotated := credentialsJSON(t, map[string]any{"privateKey": pkcs1PEM(rsaKey(1)),
			"publicKey": certPEM(t, rsaKey(1), testNow.AddDate(2, 0, 0)), "clientSecret": "p8e-rotated"})
		if err := os.WriteFile(f, []byte(rotated), 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, err := r.ReloadCredentials()
		if err != nil {
			t.Fatal(err)
		}
		if !c.PrivateKey.RSA().Equal(rsaKey(1)) || c.ClientSecret.Reveal() != "p8e-rotated" || !c.CertificateExpiry.Equal(testNow.AddDate(2, 0, 0)) {
			t.Errorf("reloaded credentials = %+v", c)
		}
		if !r.Credentials.PrivateKey.RSA().Equal(rsaKey(0)) {
			t.Errorf("reload changed the route's current credentials")
		}
	})
	t.Run("client secret file", func(t *testing.T) {
		f := writeFile(t, "client-secret", "p8e-first\n")
		r := mustLoad(t, map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_SCOPES": "openid", "IMSPROXY_STOCK_CLIENT_SECRET_FILE": f}).Routes[0]
		if err := os.WriteFile(f, []byte("p8e-second\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, files, err := r.ReloadCredentials()
		if err != nil || c.ClientSecret.Reveal() != "p8e-second" || !reflect.DeepEqual(files, []string{f}) {
			t.Errorf("reload = %q, %q, %v", c.ClientSecret.Reveal(), files, err)
		}
		if r.Credentials.ClientSecret.Reveal() != "p8e-first" {
			t.Errorf("reload changed the route's current credentials")
		}
		if err := os.WriteFile(f, []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.ReloadCredentials(); err == nil || err.Error() != "IMSPROXY_STOCK_CLIENT_SECRET_FILE: is empty" {
			t.Errorf("reload of an empty file: err = %v", err)
		}
	})
	t.Run("route not made by Load", func(t *testing.T) {
		if _, _, err := (&Route{Name: "x"}).ReloadCredentials(); err == nil {
			t.Errorf("want an error")
		}
	})
}

func TestKnownVariable(t *testing.T) {
	for name, want := range map[string]bool{
		"IMSPROXY_ROUTES":                 true,
		"IMSPROXY_LOG_LEVEL":              true,
		"IMSPROXY_AUDIT_LOG":              true,
		"IMSPROXY_STOCK_CLIENT_ID":        true,
		"IMSPROXY_BRAND_PORTAL_LISTEN":    true,
		"IMSPROXY_X_CACHE_STALE_IF_ERROR": true,
		"IMSPROXY_AEM_CREDENTIALS_FILE":   true,
		"IMSPROXY_AEM_CLIENT_SECRET_FILE": true,
		"IMSPROXY_STOCK_CLIENTID":         false,
		"IMSPROXY_CLIENT_ID":              false,
		"IMSPROXY__CLIENT_ID":             false,
		"IMSPROXY_stock_CLIENT_ID":        false,
		"IMSPROXY_LOGLEVEL":               false,
		"STOCK_CLIENT_ID":                 false,
		"":                                false,
	} {
		if got := KnownVariable(name); got != want {
			t.Errorf("KnownVariable(%q) = %v, want %v", name, got, want)
		}
	}
}
