package fakeadobe

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/nodejs"
)

// TestAIOLibIMSClient runs Adobe's @adobe/aio-lib-ims 8.1.2 (with the
// aio-lib-ims-jwt and aio-lib-ims-oauth plugins its lock pins) against the
// emulator, changed only in its base URL: a JWT context exchanges a
// multipart JWT at /ims/exchange/jwt, an OAuth server-to-server context
// posts multipart client credentials with org_id to /ims/token/v2. The
// library reads the token's expiry from the token's own created_at and
// expires_in claims, so a wrong claim fails here.
func TestAIOLibIMSClient(t *testing.T) {
	dir := nodejs.Dir(t)
	node := nodejs.Node(t, dir, "@adobe/aio-lib-ims")
	script := filepath.Join(dir, "adobeclients", "aio-lib-ims.js")

	srv := New(Options{SigningKey: testKey(t, 2), CatalogueSize: 10})
	var mu sync.Mutex
	var seen []string // method, path and media type of each IMS request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+mt)
		mu.Unlock()
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	creds, err := srv.NewCredentials(CredentialOptions{Key: testKey(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	lastRequest := func() string {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}
	jwtContext := map[string]any{
		"client_id": creds.ClientID, "client_secret": creds.ClientSecret,
		"technical_account_id": creds.TechnicalAccountID, "ims_org_id": creds.OrgID,
		"meta_scopes": []string{MetascopeAEM}, "private_key": string(creds.PrivateKeyPEM()),
	}
	oauthContext := map[string]any{
		"client_id": creds.ClientID, "client_secrets": []string{creds.ClientSecret},
		"technical_account_id": creds.TechnicalAccountID, "technical_account_email": creds.TechnicalAccountEmail,
		"ims_org_id": creds.OrgID, "scopes": []string{"openid", "AdobeID", "aem.folders"},
	}
	with := func(ctx map[string]any, k string, v any) map[string]any {
		c := map[string]any{}
		for key, val := range ctx {
			c[key] = val
		}
		c[k] = v
		return c
	}

	type result struct {
		OK      bool           `json:"ok"`
		Plugin  string         `json:"plugin"`
		Token   string         `json:"token"`
		Expiry  int64          `json:"expiry"` // ms since the epoch
		Payload map[string]any `json:"payload"`
		Message string         `json:"message"`
	}
	tests := []struct {
		name        string
		config      map[string]any
		wantPlugin  string
		wantRequest string
		wantGrant   string
		wantScope   string
		wantErr     string // part of the library's error message
	}{
		{"JWT context", jwtContext, "jwt", "POST /ims/exchange/jwt multipart/form-data", grantJWT, MetascopeAEM, ""},
		{"OAuth server-to-server context", oauthContext, "oauth_server_to_server",
			"POST /ims/token/v2 multipart/form-data", grantClient, "openid,AdobeID,aem.folders", ""},
		{"JWT context, metascope outside the binding", with(jwtContext, "meta_scopes", []string{"ent_user_sdk"}),
			"", "POST /ims/exchange/jwt multipart/form-data", "", "", `400 (Bad Request): {"error":"invalid_scope"`},
		{"OAuth context, wrong secret", with(oauthContext, "client_secrets", []string{"p8e-wrong"}),
			"", "POST /ims/token/v2 multipart/form-data", "", "", `401 (Unauthorized): {"error":"invalid_client"`},
		{"OAuth context, another organisation", with(oauthContext, "ims_org_id", "0123456789ABCDEF01234567@AdobeOrg"),
			"", "POST /ims/token/v2 multipart/form-data", "", "", `"error":"invalid_request"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res result
			nodejs.Run(t, node, script, map[string]any{"ims": ts.URL, "config": tt.config}, &res)
			if got := lastRequest(); got != tt.wantRequest {
				t.Errorf("aio-lib-ims sent %q, want %q", got, tt.wantRequest)
			}
			if tt.wantErr != "" {
				if res.OK || !strings.Contains(res.Message, tt.wantErr) {
					t.Fatalf("got %+v, want an error containing %q", res, tt.wantErr)
				}
				if strings.Contains(res.Message, creds.ClientSecret) {
					t.Error("the error carries the client secret")
				}
				return
			}
			if !res.OK || res.Plugin != tt.wantPlugin {
				t.Fatalf("got %+v, want a token from the %s plugin", res, tt.wantPlugin)
			}
			info := srv.LookupToken(res.Token)
			if info.State != TokenValid || info.ClientID != creds.ClientID || info.Grant != tt.wantGrant || info.Scope != tt.wantScope {
				t.Fatalf("the token aio-lib-ims got: %+v", info)
			}
			if want := info.ExpiresAt.UnixMilli(); res.Expiry != want {
				t.Errorf("aio-lib-ims computed expiry %d from the token's claims, want %d", res.Expiry, want)
			}
			wantIn := float64(DefaultTokenLifetime/time.Millisecond - 1) // ms for the exchange
			if tt.wantGrant == grantClient {
				wantIn = float64((DefaultTokenLifetime - time.Millisecond) / time.Second)
			}
			if res.Payload["expires_in"] != wantIn || res.Payload["token_type"] != "bearer" {
				b, _ := json.Marshal(res.Payload)
				t.Errorf("payload %s, want expires_in %v", b, wantIn)
			}
		})
	}
}

// TestAuthTokenClient runs Adobe's @adobe/auth-token 1.0.1 against the
// emulator, changed only in the origin its fetch reaches: client
// credentials posted URL-encoded to /ims/token/v3. The library throws when
// the answer has no access_token, so an error's body is its message.
func TestAuthTokenClient(t *testing.T) {
	dir := nodejs.Dir(t)
	node := nodejs.Node(t, dir, "@adobe/auth-token")
	script := filepath.Join(dir, "adobeclients", "auth-token.mjs")

	srv := New(Options{SigningKey: testKey(t, 2), CatalogueSize: 10})
	var mu sync.Mutex
	var seen []string // method, path and media type of each IMS request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+mt)
		mu.Unlock()
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	creds, err := srv.NewCredentials(CredentialOptions{Key: testKey(t, 0)})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		OK        bool   `json:"ok"`
		Token     string `json:"token"`
		ExpiresIn int64  `json:"expires_in"`
		TokenType string `json:"token_type"`
		Message   string `json:"message"`
	}
	tests := []struct {
		name, secret, scope string
		wantErr             string // the start of the error body the library throws
	}{
		{"client credentials", creds.ClientSecret, "openid,AdobeID,aem.folders", ""},
		{"wrong secret", "p8e-wrong", "openid,AdobeID", `{"error":"invalid_client"`},
		{"a scope the client lacks", creds.ClientSecret, "openid,creative_sdk", `{"error":"invalid_scope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res result
			nodejs.Run(t, node, script, map[string]any{"ims": ts.URL, "clientId": creds.ClientID, "clientSecret": tt.secret, "scope": tt.scope}, &res)
			mu.Lock()
			last := seen[len(seen)-1]
			mu.Unlock()
			if last != "POST /ims/token/v3 application/x-www-form-urlencoded" {
				t.Errorf("@adobe/auth-token sent %q", last)
			}
			if tt.wantErr != "" {
				if res.OK || !strings.HasPrefix(res.Message, tt.wantErr) {
					t.Fatalf("got %+v, want an error starting %s", res, tt.wantErr)
				}
				return
			}
			if !res.OK || res.TokenType != "bearer" || res.ExpiresIn != 86399 {
				t.Fatalf("got %+v, want a bearer token with expires_in 86399", res)
			}
			if info := srv.LookupToken(res.Token); info.State != TokenValid || info.ClientID != creds.ClientID || info.Grant != grantClient || info.Scope != tt.scope {
				t.Fatalf("the token @adobe/auth-token got: %+v", info)
			}
		})
	}
}
