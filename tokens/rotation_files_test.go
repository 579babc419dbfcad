package tokens

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
)

// The JWT payload file is watched like the key: a payload IMS refuses
// (a metascope the binding lacks) keeps the old credentials, and a
// payload that works replaces them with a token of its own.
func TestRotator_ReloadsAChangedJWTPayloadFile(t *testing.T) {
	e := newRotationEmulator(t)
	dir := t.TempDir()
	keyFile, payloadFile := filepath.Join(dir, "private.key"), filepath.Join(dir, "payload.json")
	e.write(keyFile, e.creds.PrivateKeyPEM())
	payload := e.creds.JWTPayload(e.imsURL)
	good, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	e.write(payloadFile, good)
	e.load("aem",
		"CLIENT_ID="+e.creds.ClientID,
		"CLIENT_SECRET="+e.creds.ClientSecret,
		"PRIVATE_KEY_FILE="+keyFile,
		"JWT_PAYLOAD_FILE="+payloadFile)
	w, _, mgr := e.watcher()
	ctx := context.Background()
	first := e.currentToken(mgr)

	unbound := map[string]any{"iss": payload["iss"], "sub": payload["sub"], "aud": payload["aud"], e.imsURL + "/s/ent_user_sdk": true}
	bad, _ := json.Marshal(unbound)
	e.write(payloadFile, bad)
	w.poll(ctx) // changed: settling
	w.poll(ctx) // settled: reload, which IMS refuses
	if got := e.currentToken(mgr); got != first {
		t.Fatal("a payload IMS refused replaced the working credentials")
	}
	if n := e.reloads("failure"); n < 1 {
		t.Errorf("failed reloads = %v, want at least 1\nlogs:\n%s", n, e.logs)
	}

	indented, _ := json.MarshalIndent(payload, "", "  ") // new bytes, working claims
	e.write(payloadFile, indented)
	w.poll(ctx)
	w.poll(ctx)
	if n := e.reloads("success"); n != 1 {
		t.Fatalf("successful reloads = %v, want 1\nlogs:\n%s", n, e.logs)
	}
	if got := e.currentToken(mgr); got == first {
		t.Error("after the reload the route still uses the token of the old credentials")
	}
}

// A fixed token's file is watched too: a new token in it is used from the
// next request on, and an emptied file keeps the token in use.
func TestRotator_ReloadsAChangedAccessTokenFile(t *testing.T) {
	e := newRotationEmulator(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	e.write(tokenFile, []byte("fixed-token-one\n"))
	e.load("aem", "ACCESS_TOKEN_FILE="+tokenFile)
	w, _, mgr := e.watcher()
	ctx := context.Background()
	current := func() string {
		t.Helper()
		tok, err := mgr.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Value
	}
	if got := current(); got != "fixed-token-one" {
		t.Fatalf("token = %q, want the file's", got)
	}

	e.write(tokenFile, []byte("fixed-token-two\n"))
	w.poll(ctx)
	w.poll(ctx)
	if got := current(); got != "fixed-token-two" {
		t.Fatalf("after the file changed the token is %q, want fixed-token-two\nlogs:\n%s", got, e.logs)
	}

	e.write(tokenFile, nil)
	w.poll(ctx)
	w.poll(ctx)
	if got := current(); got != "fixed-token-two" {
		t.Errorf("an emptied file replaced the token with %q", got)
	}
	if n := e.reloads("failure"); n < 1 {
		t.Errorf("failed reloads = %v, want at least 1", n)
	}
}
