package fakeadobe

import (
	"bytes"
	"crypto/tls"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// jwtToken exchanges a JWT of c that asks for the metascopes given, and
// only those.
func (e *env) jwtToken(c *Credentials, metascopes ...string) string {
	e.t.Helper()
	extra := map[string]any{}
	for _, m := range c.Metascopes {
		extra[e.base+"/s/"+m] = nil
	}
	for _, m := range metascopes {
		extra[e.base+"/s/"+m] = true
	}
	status, body := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, extra)))
	if status != http.StatusOK {
		e.t.Fatalf("exchange for %v: %d %v", metascopes, status, body)
	}
	return body["access_token"].(string)
}

// oauthToken gets a client-credentials token of c for the scopes given.
func (e *env) oauthToken(c *Credentials, scope string) string {
	e.t.Helper()
	status, body := e.post("/ims/token/v3", url.Values{"grant_type": {"client_credentials"},
		"client_id": {c.ClientID}, "client_secret": {c.ClientSecret}, "scope": {scope}})
	if status != http.StatusOK {
		e.t.Fatalf("client credentials for %s: %d %v", scope, status, body)
	}
	return body["access_token"].(string)
}

func TestTokenScoping_EachServiceAcceptsOnlyTokensIssuedForIt(t *testing.T) {
	e := newEnv(t, Options{})
	license := "/Rest/Libraries/1/Member/LicenseHistory"
	tests := []struct {
		name      string
		token     string
		stock     int // status of a Stock call that needs a token
		stockCode string
		aem       int // status of an AEM listing
	}{
		{"AEM service credentials (ent_aem_cloud_api)", e.jwtToken(e.creds, MetascopeAEM), 403, "403011", 200},
		{"Stock service account (ent_stocksearch_sdk)", e.jwtToken(e.creds, MetascopeStock), 200, "", 401},
		{"Brand Portal (ent_brand_portal_sdk), served by the AEM emulator", e.jwtToken(e.creds, MetascopeBrandPortal), 403, "403011", 200},
		{"both metascopes", e.jwtToken(e.creds, MetascopeAEM, MetascopeStock), 200, "", 200},
		{"OAuth openid only", e.oauthToken(e.creds, "openid"), 200, "", 401},
		{"OAuth AEM scopes only", e.oauthToken(e.creds, "aem.folders,aem.assets.author"), 403, "403011", 200},
		{"OAuth openid and AEM scopes", e.oauthToken(e.creds, "openid,AdobeID,aem.folders"), 200, "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.get(license, stockHeaders(e.creds, tt.token))
			if resp.StatusCode != tt.stock || (tt.stockCode != "" && mustJSON(t, body)["error_code"] != tt.stockCode) {
				t.Errorf("Stock: %d %s, want %d %s", resp.StatusCode, body, tt.stock, tt.stockCode)
			}
			resp, body = e.get("/api/assets.json", map[string]string{"Authorization": "Bearer " + tt.token})
			if resp.StatusCode != tt.aem {
				t.Errorf("AEM: %d %s, want %d", resp.StatusCode, body, tt.aem)
			}
		})
	}
}

// TestTokenV2_AIOLibIMSClientCredentials: /ims/token/v2 is the grant of
// /ims/token/v3 as @adobe/aio-lib-ims sends it, multipart with org_id.
func TestTokenV2_AIOLibIMSClientCredentials(t *testing.T) {
	e := newEnv(t, Options{})
	post := func(fields map[string]string) (int, map[string]any) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		for k, v := range fields {
			_ = mw.WriteField(k, v)
		}
		mw.Close()
		resp, err := http.Post(e.base+"/ims/token/v2", mw.FormDataContentType(), &body)
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, resp)
	}
	good := map[string]string{"grant_type": "client_credentials", "client_id": e.creds.ClientID,
		"client_secret": e.creds.ClientSecret, "org_id": e.creds.OrgID, "scope": "openid,AdobeID"}
	status, body := post(good)
	if status != 200 || body["token_type"] != "bearer" || body["expires_in"] != float64(86399) {
		t.Fatalf("%d %v, want a token with expires_in 86399 (s)", status, body)
	}
	if info := e.srv.LookupToken(body["access_token"].(string)); info.Grant != grantClient || info.Scope != "openid,AdobeID" {
		t.Errorf("token %+v", info)
	}
	good["org_id"] = "0123456789ABCDEF01234567@AdobeOrg"
	if status, body := post(good); status != 400 || body["error"] != "invalid_request" {
		t.Errorf("another organisation: %d %v, want 400 invalid_request", status, body)
	}
	st := e.srv.Stats()
	if st.Requests["ims.token_v2"] != 2 || st.Exchanges["oauth_success"] != 1 || st.Exchanges["oauth_invalid_request"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestTLS_ServesHTTPSWithItsOwnCA: with Options.TLS every listener speaks
// HTTPS with a certificate a client trusts only through the emulator's CA;
// JWTs name the https:// base, as Adobe's does.
func TestTLS_ServesHTTPSWithItsOwnCA(t *testing.T) {
	srv := New(Options{TLS: true, SigningKey: testKey(t, 2), CatalogueSize: 10})
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if !strings.HasPrefix(base, "https://127.0.0.1:") || !strings.HasPrefix(srv.BlobBaseURL(), "https://127.0.0.1:") {
		t.Fatalf("base %s, blob storage %s: want https", base, srv.BlobBaseURL())
	}
	creds, err := srv.NewCredentials(CredentialOptions{Key: testKey(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := creds.SignJWT(base, srv.now().Add(5*time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"client_id": {creds.ClientID}, "client_secret": {creds.ClientSecret}, "jwt_token": {jwt}}

	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.TLSClientConfig()}}
	resp, err := trusting.PostForm(base+"/ims/exchange/jwt", form)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := decode(t, resp); status != 200 || body["access_token"] == nil {
		t.Fatalf("exchange over HTTPS: %d %v", status, body)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{ServerName: name, RootCAs: srv.TLSClientConfig().RootCAs})
		if err != nil {
			t.Errorf("certificate for %s: %v", name, err)
			continue
		}
		conn.Close()
	}
	if _, err := http.Get(base + "/ims/exchange/jwt"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}
	if pem := New(Options{SigningKey: testKey(t, 2), CatalogueSize: 10}).CACertificatePEM(); pem != nil {
		t.Error("a plain HTTP emulator has a CA")
	}
}
