package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// consolePayload is a JWT payload as the Developer Console shows it.
const consolePayload = `{
  "exp": 1767225900,
  "jti": 17,
  "iss": "ORG1@AdobeOrg",
  "sub": "TECH1@techacct.adobe.com",
  "aud": "https://ims-na1.adobelogin.com/c/stock-client",
  "https://ims-na1.adobelogin.com/s/ent_user_sdk": true,
  "https://ims-na1.adobelogin.com/s/ent_stocksearch_sdk": true,
  "extra": 12345678901234567890
}`

// payloadEnv is a JWT stock route configured from the payload.
func payloadEnv(t *testing.T, more ...string) map[string]string {
	return with(map[string]string{
		"IMSPROXY_STOCK_CLIENT_ID":        "stock-client",
		"IMSPROXY_STOCK_CLIENT_SECRET":    "stock-secret",
		"IMSPROXY_STOCK_PRIVATE_KEY_FILE": writeFile(t, "k.pem", pkcs8PEM(t, rsaKey(0))),
	}, more...)
}

func TestLoad_JWTPayload(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"inline", payloadEnv(t, "IMSPROXY_STOCK_JWT_PAYLOAD", consolePayload)},
		{"file", payloadEnv(t, "IMSPROXY_STOCK_JWT_PAYLOAD_FILE", writeFile(t, "payload.json", consolePayload))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustLoad(t, tc.env).Routes[0]
			c := r.Credentials
			if r.Auth != AuthJWT || c.OrgID != "ORG1@AdobeOrg" || c.TechnicalAccountID != "TECH1@techacct.adobe.com" {
				t.Errorf("route = %+v", r)
			}
			wantScopes := []string{"https://ims-na1.adobelogin.com/s/ent_stocksearch_sdk", "https://ims-na1.adobelogin.com/s/ent_user_sdk"}
			if !reflect.DeepEqual(c.Metascopes, wantScopes) {
				t.Errorf("metascopes = %q, want %q", c.Metascopes, wantScopes)
			}
			if _, ok := c.JWTClaims["exp"]; ok {
				t.Errorf("exp kept in claims")
			}
			if _, ok := c.JWTClaims["jti"]; ok {
				t.Errorf("jti kept in claims")
			}
			if c.JWTClaims["aud"] != "https://ims-na1.adobelogin.com/c/stock-client" || c.JWTClaims[wantScopes[1]] != true {
				t.Errorf("claims = %v", c.JWTClaims)
			}
			// Claims go into the JWT as they are: a large number must not
			// be rounded through float64.
			b, err := json.Marshal(c.JWTClaims["extra"])
			if err != nil || string(b) != "12345678901234567890" {
				t.Errorf("extra claim re-encodes as %s (%v)", b, err)
			}
		})
	}
	t.Run("explicit ids equal to the payload are fine", func(t *testing.T) {
		mustLoad(t, payloadEnv(t, "IMSPROXY_STOCK_JWT_PAYLOAD", consolePayload,
			"IMSPROXY_STOCK_ORG_ID", "ORG1@AdobeOrg", "IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID", "TECH1@techacct.adobe.com"))
	})
}

func TestLoad_JWTPayloadProblems(t *testing.T) {
	const v = "IMSPROXY_STOCK_JWT_PAYLOAD"
	edit := func(change map[string]any) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(consolePayload), &m); err != nil {
			t.Fatal(err)
		}
		for k, val := range change {
			if val == nil {
				delete(m, k)
			} else {
				m[k] = val
			}
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		payload string
		more    []string
		want    []string
	}{
		{"aud for another client", consolePayload, []string{"IMSPROXY_STOCK_CLIENT_ID", "other-client"},
			[]string{v + ": claim aud is https://ims-na1.adobelogin.com/c/stock-client, which does not end with /c/other-client (the client ID): IMS would answer invalid_client"}},
		{"aud that is not a URL is not shown", strings.Replace(consolePayload, `"https://ims-na1.adobelogin.com/c/stock-client"`, `"mistake"`, 1), nil,
			[]string{v + ": claim aud does not end with /c/stock-client (the client ID): IMS would answer invalid_client"}},
		{"not an object", `["iss"]`, nil, []string{v + ": is not a JSON object: want the JWT payload copied from the Developer Console"}},
		{"missing claims", edit(map[string]any{"iss": nil, "sub": nil, "aud": nil}), nil, []string{
			v + ": claim iss is missing", v + ": claim sub is missing", v + ": claim aud is missing"}},
		{"claim of the wrong type", edit(map[string]any{"sub": 7}), nil, []string{v + ": claim sub is not a string"}},
		{"no metascope", edit(map[string]any{"https://ims-na1.adobelogin.com/s/ent_user_sdk": nil, "https://ims-na1.adobelogin.com/s/ent_stocksearch_sdk": nil}), nil,
			[]string{v + `: has no metascope claim ("https://ims-na1.adobelogin.com/s/<metascope>": true)`}},
		{"metascope not true", edit(map[string]any{"https://ims-na1.adobelogin.com/s/ent_user_sdk": "true"}), nil,
			[]string{v + ": metascope claim https://ims-na1.adobelogin.com/s/ent_user_sdk is not the boolean true"}},
		{"org differs", consolePayload, []string{"IMSPROXY_STOCK_ORG_ID", "ORG2@AdobeOrg"},
			[]string{"IMSPROXY_STOCK_ORG_ID: differs from the iss claim of IMSPROXY_STOCK_JWT_PAYLOAD; set only one of them"}},
		{"technical account differs", consolePayload, []string{"IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID", "TECH2@techacct.adobe.com"},
			[]string{"IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID: differs from the sub claim of IMSPROXY_STOCK_JWT_PAYLOAD; set only one of them"}},
		{"metascopes twice", consolePayload, []string{"IMSPROXY_STOCK_METASCOPES", "ent_user_sdk"},
			[]string{"IMSPROXY_STOCK_METASCOPES: conflicts with the JWT payload, which carries the metascope claims itself; set only one of them"}},
		{"both forms", consolePayload, []string{"IMSPROXY_STOCK_JWT_PAYLOAD_FILE", writeFile(t, "p.json", consolePayload)},
			[]string{v + ": set either IMSPROXY_STOCK_JWT_PAYLOAD or IMSPROXY_STOCK_JWT_PAYLOAD_FILE, not both"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loadProblems(t, payloadEnv(t, append([]string{v, tc.payload}, tc.more...)...))
			wantProblems(t, got, tc.want...)
			if len(got) != len(tc.want) {
				t.Errorf("a broken payload must not also make its claims missing; got:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// TestLoad_SecretsNeverInErrors breaks a configuration in every way that
// touches a secret and checks that no problem quotes any part of one.
func TestLoad_SecretsNeverInErrors(t *testing.T) {
	// Random-looking, so that a hit cannot be an ordinary word.
	secrets := []string{
		"qZ7vK2mW9xR4tB8n", // client secret
		"jH3cL6pY1sF5gD0w", // access token
		"uN8eX2aQ7kV4rM1z", // JWT payload
		"bT5yG9oJ3hC6iP2l", // private key text
		"wS1dF8zA4nE7mK3q", // credentials-file secrets
		"cR6vB2xL9pT5jY8g", // password in a URL
		"hM4kW7nQ2zX9pL5r", // client secret file
	}
	// A private key that is complete but for its last line, so that its
	// body is real key material a parser error might quote.
	key := pkcs1PEM(rsaKey(1))
	brokenKey := key[:len(key)/2] + "\r\n-----END RSA PRIVATE KEY-----\r\n"
	env := map[string]string{
		"IMSPROXY_ROUTES": "stock,aem,bp,tok",

		"IMSPROXY_STOCK_CLIENT_SECRET":     secrets[0],
		"IMSPROXY_STOCK_PRIVATE_KEY":       "-----BEGIN RSA PRIVATE KEY-----\n" + secrets[3] + "\n-----END RSA PRIVATE KEY-----\n",
		"IMSPROXY_STOCK_JWT_PAYLOAD":       `{"iss": "` + secrets[2] + `", ` + secrets[2] + `}`,
		"IMSPROXY_STOCK_UPSTREAM":          "ftp://user:" + secrets[5] + "@stock.example.com",
		"IMSPROXY_STOCK_CACHE_SIZE":        secrets[0],
		"IMSPROXY_STOCK_ALLOW_LICENSE":     secrets[0],
		"IMSPROXY_STOCK_TIMEOUT":           secrets[0],
		"IMSPROXY_STOCK_AUTH":              secrets[0],
		"IMSPROXY_STOCK_TYPE":              secrets[0],
		"IMSPROXY_STOCK_LISTEN":            secrets[0],
		"IMSPROXY_STOCK_METASCOPES":        "a b " + secrets[0],
		"IMSPROXY_STOCK_IMS_URL":           secrets[0],
		"IMSPROXY_STOCK_CLIENT_SECRETS":    secrets[0],
		"IMSPROXY_STOCK_DOWNLOAD_UPSTREAM": "https://u:" + secrets[5] + "@x.example.com/?" + secrets[5],

		"IMSPROXY_AEM_UPSTREAM": "https://author.example.com",
		"IMSPROXY_AEM_CREDENTIALS_FILE": writeFile(t, "aem.json", credentialsJSON(t, map[string]any{
			"clientSecret": secrets[4], "privateKey": brokenKey, "publicKey": secrets[4], "org": 1,
			"imsEndpoint": secrets[4] + " x", "certificateExpirationDate": secrets[4],
		})),
		"IMSPROXY_AEM_PRIVATE_KEY_FILE": writeFile(t, "k.pem", brokenKey),

		"IMSPROXY_BP_LISTEN":       "127.0.0.1:8082",
		"IMSPROXY_BP_UPSTREAM":     "https://bp.example.com",
		"IMSPROXY_BP_ACCESS_TOKEN": "Bearer " + secrets[1],
		"IMSPROXY_BP_JWT_PAYLOAD_FILE": writeFile(t, "p.json", `{"iss": ["`+secrets[2]+`"], "sub": 1, "aud": {"a": "`+
			secrets[2]+`"}, "https://ims-na1.adobelogin.com/s/x": "`+secrets[2]+`"}`),
		"IMSPROXY_BP_CLIENT_SECRET":       secrets[0],
		"IMSPROXY_BP_CLIENT_SECRET_FILE":  writeFile(t, "client-secret", secrets[6]+"\n"),
		"IMSPROXY_TOK_LISTEN":             "127.0.0.1:8083",
		"IMSPROXY_TOK_UPSTREAM":           "https://tok.example.com",
		"IMSPROXY_TOK_ACCESS_TOKEN":       secrets[1],
		"IMSPROXY_TOK_CLIENT_SECRET_FILE": secrets[6], // the secret itself, not a file
		"IMSPROXY_TOK_ACCESS_TOKEN_FILE":  writeFile(t, "t.json", `{"accessToken": 1, "x": "`+secrets[1]+`"}`),
		"IMSPROXY_LOG_LEVEL":              secrets[0],
		"IMSPROXY_SHUTDOWN_TIMEOUT":       secrets[0],
	}
	out := strings.Join(loadProblems(t, env), "\n")
	if len(strings.Split(out, "\n")) < 20 {
		t.Fatalf("the configuration is meant to be broken in many ways; got only:\n%s", out)
	}
	// The file variant of the client secret is among the broken ones.
	wantProblems(t, strings.Split(out, "\n"),
		"IMSPROXY_BP_CLIENT_SECRET: set either IMSPROXY_BP_CLIENT_SECRET or IMSPROXY_BP_CLIENT_SECRET_FILE, not both",
		"IMSPROXY_TOK_CLIENT_SECRET_FILE: cannot read the file it names: ...")
	keyBody := strings.Join(strings.Split(key, "\r\n")[1:5], "")
	for _, s := range append(secrets, keyBody) {
		for i := 0; i+8 <= len(s); i++ {
			if part := s[i : i+8]; strings.Contains(out, part) {
				t.Fatalf("problems quote %q, part of a secret:\n%s", part, out)
			}
		}
	}
}

// TestConfig_PrintsNoSecrets checks that a loaded configuration can be
// logged whole, with any verb, without revealing a credential.
func TestConfig_PrintsNoSecrets(t *testing.T) {
	c := mustLoad(t, map[string]string{
		"IMSPROXY_ROUTES":                "stock,aem,bp",
		"IMSPROXY_STOCK_CLIENT_ID":       "stock-client",
		"IMSPROXY_STOCK_CLIENT_SECRET":   "ClientSecretValue0123456789",
		"IMSPROXY_STOCK_SCOPES":          "openid",
		"IMSPROXY_BP_SCOPES":             "openid",
		"IMSPROXY_AEM_UPSTREAM":          "https://author.example.com",
		"IMSPROXY_AEM_ACCESS_TOKEN":      "AccessTokenValue0123456789",
		"IMSPROXY_BP_LISTEN":             "127.0.0.1:8082",
		"IMSPROXY_BP_UPSTREAM":           "https://bp.example.com",
		"IMSPROXY_BP_CLIENT_ID":          "bp-client",
		"IMSPROXY_BP_CLIENT_SECRET_FILE": writeFile(t, "client-secret", "FileSecretValue0123456789\n"),
	})
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, c.Routes)
		if strings.Contains(out, "ClientSecretValue") || strings.Contains(out, "AccessTokenValue") || strings.Contains(out, "FileSecretValue") {
			t.Errorf("%s of the routes reveals a secret: %s", verb, out)
		}
	}
}
