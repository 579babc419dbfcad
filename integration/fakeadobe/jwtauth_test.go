package fakeadobe

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// installJWTAuth runs `npm ci` in integration/ (the versions pinned in
// package-lock.json), as .ci/run does, so that a plain `go test ./...` on a
// machine with Node runs the test instead of skipping it.
func installJWTAuth(t *testing.T, dir string) {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("node is installed but npm is not: install npm, or run `npm ci` in integration/, to install @adobe/jwt-auth")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in integration/ (to install @adobe/jwt-auth): %v\n%s", err, out)
	}
}

// TestJWTAuthClient proves the emulator against a client nobody here wrote:
// Adobe's @adobe/jwt-auth (pinned in integration/package.json), which posts
// multipart/form-data to /ims/exchange/jwt/ with a trailing slash and sends
// metascopes as <ims>/s/<name> claims.
func TestJWTAuthClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; this test runs @adobe/jwt-auth against the emulator")
	}
	integration, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(integration, "node_modules", "@adobe", "jwt-auth")); err != nil {
		installJWTAuth(t, integration)
	}
	script := filepath.Join(integration, "jwtauth", "get-token.js")

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
		in, _ := json.Marshal(map[string]any{
			"clientId": creds.ClientID, "clientSecret": creds.ClientSecret,
			"technicalAccountId": creds.TechnicalAccountID, "orgId": creds.OrgID,
			"privateKey": string(key), "metaScopes": metaScopes, "ims": ts.URL,
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, script)
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
		}
		t.Logf("@adobe/jwt-auth said: %s", summarize(out))
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
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

// summarize shortens the access token in the script's output for the log.
func summarize(out []byte) string {
	s := strings.TrimSpace(string(out))
	if i := strings.Index(s, `"access_token":"`); i >= 0 {
		start := i + len(`"access_token":"`)
		if end := strings.Index(s[start:], `"`); end > 20 {
			s = s[:start+20] + "…" + s[start+end:]
		}
	}
	return s
}
