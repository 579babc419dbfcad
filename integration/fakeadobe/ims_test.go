package fakeadobe

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestExchangeJWT_DocumentedErrors walks every refusal the Stock Access API
// reference documents (and the few real answers reported in Adobe's issue
// trackers), each with its status and error code.
func TestExchangeJWT_DocumentedErrors(t *testing.T) {
	e := newEnv(t, Options{})
	noExchange := e.newCreds(CredentialOptions{})
	e.srv.mu.Lock()
	e.srv.clients[noExchange.ClientID].NoExchangeJWT = true
	e.srv.mu.Unlock()
	wrongKey := *e.creds
	wrongKey.PrivateKey = testKey(t, 1)
	now := e.clock.Now()

	cases := []struct {
		name     string
		form     func() url.Values
		status   int
		code     string
		descHas  string // part of error_description, when it matters
		exchange string // Stats().Exchanges key
	}{
		{"unknown client ID", func() url.Values {
			f := e.exchangeForm(e.creds, e.signJWT(e.creds, nil))
			f.Set("client_id", "nosuchclient")
			return f
		}, 400, "invalid_client", "", "invalid_client"},
		{"missing client ID", func() url.Values {
			f := e.exchangeForm(e.creds, e.signJWT(e.creds, nil))
			f.Del("client_id")
			return f
		}, 400, "invalid_client", "", ""},
		{"client without exchange_jwt", func() url.Values {
			return e.exchangeForm(noExchange, e.signJWT(noExchange, nil))
		}, 401, "invalid_client", "exchange_jwt", ""},
		{"wrong client secret", func() url.Values {
			f := e.exchangeForm(e.creds, e.signJWT(e.creds, nil))
			f.Set("client_secret", "p8e-wrong")
			return f
		}, 401, "invalid_client", "secret", ""},
		{"missing JWT", func() url.Values { return e.exchangeForm(e.creds, "") }, 400, "invalid_token", "missing", "invalid_token"},
		{"undecodable JWT", func() url.Values { return e.exchangeForm(e.creds, "not.a.jwt") }, 400, "invalid_token", "decoded", ""},
		{"aud of another IMS environment", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{
				"aud": "https://ims-na1-stg1.adobelogin.com/c/" + e.creds.ClientID}))
		}, 400, "invalid_client", "different IMS environment", ""},
		{"aud naming another client", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"aud": e.base + "/c/" + noExchange.ClientID}))
		}, 400, "invalid_client", "do not match", ""},
		{"no aud", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"aud": nil}))
		}, 400, "invalid_client", "", ""},
		{"exp not an integer", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"exp": float64(now.Unix()) + 300.5}))
		}, 400, "invalid_token", "exp", ""},
		{"exp a string", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"exp": strconv.FormatInt(now.Unix()+300, 10)}))
		}, 400, "invalid_token", "exp", ""},
		{"no exp", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"exp": nil}))
		}, 400, "bad_request", "exp", "bad_request"},
		{"jti not an integer", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"jti": "a1b2"}))
		}, 400, "invalid_token", "jti", ""},
		{"expired beyond the 30 s skew", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"exp": now.Add(-31 * time.Second).Unix()}))
		}, 400, "invalid_token", "expired", ""},
		{"iss badly formatted", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"iss": "my-org"}))
		}, 400, "bad_request", "iss", ""},
		{"sub badly formatted", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"sub": "someone@example.com"}))
		}, 400, "bad_request", "sub", ""},
		{"iss of another organisation", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"iss": "0123456789ABCDEF01234567@AdobeOrg"}))
		}, 400, "invalid_signature", "iss / sub", "invalid_signature"},
		{"signed with a key of no bound certificate", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(&wrongKey, nil))
		}, 400, "invalid_signature", "certificate", ""},
		{"algorithm other than RS256", func() url.Values {
			claims := jwt.MapClaims(e.creds.JWTPayload(e.base))
			claims["exp"] = now.Add(time.Minute).Unix()
			tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(e.creds.ClientSecret))
			return e.exchangeForm(e.creds, tok)
		}, 400, "invalid_signature", "algorithm", ""},
		{"metascope outside the binding", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{e.base + "/s/ent_analytics_bulk_ingest_sdk": true}))
		}, 400, "invalid_scope", metascopeMismatch, "invalid_scope"},
		{"User Management's metascope, not bound to a Stock client", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{e.base + "/s/ent_user_sdk": true}))
		}, 400, "invalid_scope", metascopeMismatch, ""},
		{"no metascope", func() url.Values {
			extra := map[string]any{}
			for _, m := range e.creds.Metascopes {
				extra[e.base+"/s/"+m] = nil
			}
			return e.exchangeForm(e.creds, e.signJWT(e.creds, extra))
		}, 400, "invalid_scope", metascopeMismatch, ""},
		{"metascope claim of production IMS", func() url.Values {
			return e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{
				"https://ims-na1.adobelogin.com/s/ent_aem_cloud_api": true}))
		}, 400, "invalid_scope", metascopeMismatch, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.post("/ims/exchange/jwt", tc.form())
			if status != tc.status || body["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.code)
			}
			desc, _ := body["error_description"].(string)
			if desc == "" || !strings.Contains(desc, tc.descHas) {
				t.Errorf("error_description %q does not mention %q", desc, tc.descHas)
			}
			if len(body) != 2 {
				t.Errorf("body has fields besides error and error_description: %v", body)
			}
		})
	}
	if got := e.srv.Stats().Exchanges["invalid_scope"]; got != 4 {
		t.Errorf("Stats().Exchanges[invalid_scope] = %d, want 4", got)
	}
}

// TestExchangeJWT_Success checks the answer (expires_in in milliseconds)
// and the access token's IMS claims.
func TestExchangeJWT_Success(t *testing.T) {
	e := newEnv(t, Options{})
	status, body := e.post("/ims/exchange/jwt", e.exchangeForm(e.creds, e.signJWT(e.creds, nil)))
	if status != 200 {
		t.Fatalf("%d %v", status, body)
	}
	if body["token_type"] != "bearer" || body["expires_in"] != float64(86399999) {
		t.Errorf("answer %v, want token_type bearer and expires_in 86399999 (ms)", body)
	}
	tok := body["access_token"].(string)
	claims := jwtClaims(t, tok)
	want := map[string]any{
		"type": "access_token", "client_id": e.creds.ClientID, "user_id": e.creds.TechnicalAccountID,
		"as": "ims-na1", "expires_in": "86400000",
		"created_at": strconv.FormatInt(e.clock.Now().UnixMilli(), 10),
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %#v, want %#v", k, claims[k], v)
		}
	}
	if scope, _ := claims["scope"].(string); !strings.Contains(scope, "ent_aem_cloud_api") {
		t.Errorf("scope claim %q lacks the metascopes", scope)
	}
	if info := e.srv.LookupToken(tok); info.State != TokenValid || info.Org != e.creds.OrgID {
		t.Errorf("LookupToken = %+v", info)
	}
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExchangeJWT_MultipartWithTrailingSlash is what @adobe/jwt-auth sends.
func TestExchangeJWT_MultipartWithTrailingSlash(t *testing.T) {
	e := newEnv(t, Options{})
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"iat": e.clock.Now().Unix()})) {
		_ = mw.WriteField(k, v[0])
	}
	_ = mw.Close()
	resp, err := http.Post(e.base+"/ims/exchange/jwt/", mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := decode(t, resp); status != 200 || body["access_token"] == nil {
		t.Fatalf("%d %v", status, body)
	}
}

func TestExchangeJWT_ClockSkewIsTolerated(t *testing.T) {
	e := newEnv(t, Options{})
	jwt := e.signJWT(e.creds, map[string]any{"exp": e.clock.Now().Add(-29 * time.Second).Unix()})
	if status, body := e.post("/ims/exchange/jwt", e.exchangeForm(e.creds, jwt)); status != 200 {
		t.Fatalf("exp 29 s ago: %d %v, want 200", status, body)
	}
}

func TestExchangeJWT_RequiredJTI(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.newCreds(CredentialOptions{RequireJTI: true})
	steps := []struct {
		name   string
		extra  map[string]any
		status int
		code   string
	}{
		{"missing", nil, 400, "invalid_jti"},
		{"fresh", map[string]any{"jti": 1001}, 200, ""},
		{"reused", map[string]any{"jti": 1001}, 400, "invalid_jti"},
		{"another fresh", map[string]any{"jti": 1002}, 200, ""},
	}
	for _, s := range steps {
		status, body := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, s.extra)))
		if status != s.status || (s.code != "" && body["error"] != s.code) {
			t.Errorf("%s jti: %d %v, want %d %s", s.name, status, body, s.status, s.code)
		}
	}
	// A binding that does not require a jti accepts a repeated one.
	for range 2 {
		if status, body := e.post("/ims/exchange/jwt", e.exchangeForm(e.creds, e.signJWT(e.creds, map[string]any{"jti": 7}))); status != 200 {
			t.Errorf("optional jti reused: %d %v", status, body)
		}
	}
}

// TestExchangeJWT_CertificateRotation binds a second certificate, then
// revokes the first: only JWTs signed by bound, unrevoked keys pass.
func TestExchangeJWT_CertificateRotation(t *testing.T) {
	e := newEnv(t, Options{})
	rotated, err := GenerateCredentials(CredentialOptions{Key: testKey(t, 1), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	newKey := *e.creds
	newKey.PrivateKey, newKey.Certificate = rotated.PrivateKey, rotated.Certificate
	exchange := func(c *Credentials) string {
		_, body := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, nil)))
		if body["error"] != nil {
			return body["error"].(string)
		}
		return "ok"
	}
	if got := exchange(&newKey); got != "invalid_signature" {
		t.Fatalf("new key before AddCertificate: %s", got)
	}
	if err := e.srv.AddCertificate(e.creds.ClientID, rotated.Certificate); err != nil {
		t.Fatal(err)
	}
	if a, b := exchange(e.creds), exchange(&newKey); a != "ok" || b != "ok" {
		t.Fatalf("both certificates bound: old %s, new %s", a, b)
	}
	if err := e.srv.RevokeCertificate(e.creds.ClientID, Fingerprint(e.creds.Certificate)); err != nil {
		t.Fatal(err)
	}
	if a, b := exchange(e.creds), exchange(&newKey); a != "invalid_signature" || b != "ok" {
		t.Fatalf("old revoked: old %s, new %s", a, b)
	}
	// The token says which certificate's key signed the exchanged JWT.
	if info := e.srv.LookupToken(e.token(&newKey)); info.Certificate != Fingerprint(rotated.Certificate) {
		t.Errorf("token certificate = %q, want the rotated one %s", info.Certificate, Fingerprint(rotated.Certificate))
	}
}

func TestExchangeJWT_ExpiredCertificate(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.newCreds(CredentialOptions{Validity: 24 * time.Hour})
	e.clock.Advance(25 * time.Hour)
	status, body := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, nil)))
	if status != 400 || body["error"] != "invalid_signature" {
		t.Fatalf("expired certificate: %d %v", status, body)
	}
}

// TestExchangeJWT_FieldsInQueryString reproduces the one report of fields
// sent as query parameters (dev-console #124): 500 internal_error.
func TestExchangeJWT_FieldsInQueryString(t *testing.T) {
	e := newEnv(t, Options{})
	resp, err := http.Post(e.base+"/ims/exchange/jwt?"+e.exchangeForm(e.creds, e.signJWT(e.creds, nil)).Encode(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := decode(t, resp); status != 500 || body["error"] != "internal_error" {
		t.Fatalf("%d %v", status, body)
	}
}

func TestExchangeJWT_OnlyPOST(t *testing.T) {
	e := newEnv(t, Options{})
	resp, _ := e.get("/ims/exchange/jwt", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

func TestTokenV3(t *testing.T) {
	e := newEnv(t, Options{})
	jwtOnly := e.newCreds(CredentialOptions{Scopes: []string{}})
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {e.creds.ClientID},
		"client_secret": {e.creds.ClientSecret}, "scope": {"openid,AdobeID"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"missing grant_type", with("grant_type", ""), 400, "invalid_request"},
		{"other grant", with("grant_type", "authorization_code"), 400, "unsupported_grant_type"},
		{"missing client_id", with("client_id", ""), 400, "invalid_request"},
		{"unknown client", with("client_id", "nosuch"), 400, "invalid_client"},
		{"wrong secret", with("client_secret", "p8e-nope"), 401, "invalid_client"},
		{"missing secret", with("client_secret", ""), 401, "invalid_client"},
		{"missing scope", with("scope", ""), 400, "invalid_scope"},
		{"unknown scope", with("scope", "openid,aem.everything"), 400, "invalid_scope"},
		{"space-separated scopes", with("scope", "openid AdobeID"), 400, "invalid_scope"},
		{"client not allowed the grant", url.Values{"grant_type": {"client_credentials"}, "client_id": {jwtOnly.ClientID},
			"client_secret": {jwtOnly.ClientSecret}, "scope": {"openid"}}, 400, "unauthorized_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.post("/ims/token/v3", tc.form)
			if status != tc.status || body["error"] != tc.code || body["error_description"] == "" {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.code)
			}
		})
	}
	t.Run("success in seconds", func(t *testing.T) {
		status, body := e.post("/ims/token/v3", good)
		if status != 200 || body["token_type"] != "bearer" || body["expires_in"] != float64(86399) {
			t.Fatalf("%d %v, want expires_in 86399 (s)", status, body)
		}
		claims := jwtClaims(t, body["access_token"].(string))
		if claims["scope"] != "openid,AdobeID" || claims["client_id"] != e.creds.ClientID {
			t.Errorf("claims %v", claims)
		}
	})
	t.Run("fields in the query string", func(t *testing.T) {
		resp, err := http.Post(e.base+"/ims/token/v3?"+good.Encode(), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if status, body := decode(t, resp); status != 200 {
			t.Fatalf("%d %v", status, body)
		}
	})
	if got := e.srv.Stats().Exchanges["oauth_invalid_scope"]; got != 3 {
		t.Errorf("Exchanges[oauth_invalid_scope] = %d, want 3", got)
	}
}

func TestTokenLifetime_ShortTokensExpire(t *testing.T) {
	e := newEnv(t, Options{TokenLifetime: 3 * time.Second})
	status, body := e.post("/ims/exchange/jwt", e.exchangeForm(e.creds, e.signJWT(e.creds, nil)))
	if status != 200 || body["expires_in"] != float64(2999) {
		t.Fatalf("%d %v, want expires_in 2999", status, body)
	}
	tok := body["access_token"].(string)
	if claims := jwtClaims(t, tok); claims["expires_in"] != "3000" {
		t.Errorf("expires_in claim %v, want \"3000\"", claims["expires_in"])
	}
	e.clock.Advance(2999 * time.Millisecond)
	if st := e.srv.LookupToken(tok).State; st != TokenValid {
		t.Fatalf("at 2.999 s: %s", st)
	}
	e.clock.Advance(time.Millisecond)
	if st := e.srv.LookupToken(tok).State; st != TokenExpired {
		t.Fatalf("at 3 s: %s", st)
	}
	e.srv.SetTokenLifetime(time.Minute)
	_, body = e.post("/ims/token/v3", url.Values{"grant_type": {"client_credentials"}, "client_id": {e.creds.ClientID},
		"client_secret": {e.creds.ClientSecret}, "scope": {"openid"}})
	if body["expires_in"] != float64(59) {
		t.Errorf("after SetTokenLifetime(1m): expires_in %v, want 59", body["expires_in"])
	}
}

func TestSecretRotation(t *testing.T) {
	e := newEnv(t, Options{})
	if err := e.srv.AddSecret(e.creds.ClientID, "p8e-second"); err != nil {
		t.Fatal(err)
	}
	second := *e.creds
	second.ClientSecret = "p8e-second"
	for _, c := range []*Credentials{e.creds, &second} {
		if status, body := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, nil))); status != 200 {
			t.Fatalf("%d %v", status, body)
		}
	}
	if err := e.srv.RevokeSecret(e.creds.ClientID, e.creds.ClientSecret); err != nil {
		t.Fatal(err)
	}
	if status, _ := e.post("/ims/exchange/jwt", e.exchangeForm(e.creds, e.signJWT(e.creds, nil))); status != 401 {
		t.Fatalf("revoked secret: %d, want 401", status)
	}
}
