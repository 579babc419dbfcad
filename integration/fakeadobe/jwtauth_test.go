package fakeadobe

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/imsproxy/imsproxy/integration/nodejs"
)

// TestJWTAuthClient proves the emulator against a client nobody here wrote:
// Adobe's @adobe/jwt-auth (pinned in integration/package.json), which posts
// multipart/form-data to /ims/exchange/jwt/ with a trailing slash and sends
// metascopes as <ims>/s/<name> claims.
func TestJWTAuthClient(t *testing.T) {
	dir := nodejs.Dir(t)
	node := nodejs.Node(t, dir, "@adobe/jwt-auth")
	script := filepath.Join(dir, "jwtauth", "get-token.js")

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

	run := func(t *testing.T, key []byte, metaScopes any) map[string]any {
		t.Helper()
		var res map[string]any
		nodejs.Run(t, node, script, map[string]any{
			"clientId": creds.ClientID, "clientSecret": creds.ClientSecret,
			"technicalAccountId": creds.TechnicalAccountID, "orgId": creds.OrgID,
			"privateKey": string(key), "metaScopes": metaScopes, "ims": ts.URL,
		}, &res)
		t.Logf("@adobe/jwt-auth said: %s", summarize(res))
		return res
	}

	t.Run("gets a token", func(t *testing.T) {
		res := run(t, creds.PrivateKeyPKCS1PEM(), "ent_aem_cloud_api,ent_stocksearch_sdk")
		if res["ok"] != true || res["token_type"] != "bearer" || res["expires_in"] != float64(86399999) {
			t.Fatalf("%v", res)
		}
		if info := srv.LookupToken(res["access_token"].(string)); info.State != TokenValid || info.ClientID != creds.ClientID {
			t.Fatalf("the token jwt-auth got: %+v", info)
		}
		mu.Lock()
		defer mu.Unlock()
		if last := seen[len(seen)-1]; last != "POST /ims/exchange/jwt/ multipart/form-data" {
			t.Errorf("jwt-auth sent %q", last)
		}
	})
	t.Run("wrong private key", func(t *testing.T) {
		wrong := *creds
		wrong.PrivateKey = testKey(t, 1)
		res := run(t, wrong.PrivateKeyPEM(), "ent_aem_cloud_api")
		if res["ok"] != false || res["code"] != "invalid_signature" {
			t.Fatalf("%v", res)
		}
	})
	t.Run("metascope outside the binding", func(t *testing.T) {
		res := run(t, creds.PrivateKeyPEM(), "ent_analytics_bulk_ingest_sdk")
		if res["code"] != "invalid_scope" || res["message"] != metascopeMismatch {
			t.Fatalf("%v", res)
		}
	})
}

// summarize shows the script's answer with the access token shortened, for
// the log.
func summarize(res map[string]any) string {
	shown := map[string]any{}
	for k, v := range res {
		if tok, ok := v.(string); ok && (k == "access_token" || k == "token") && len(tok) > 20 {
			v = tok[:20] + "…"
		}
		shown[k] = v
	}
	b, _ := json.Marshal(shown)
	return string(b)
}
