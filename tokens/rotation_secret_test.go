package tokens

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// newSecretRotationEnv is an OAuth server-to-server route whose client
// secret is read from a file, ending with a line break as a Kubernetes
// secret mount does.
func newSecretRotationEnv(t *testing.T) *rotationEnv {
	t.Helper()
	e := newRotationEmulator(t)
	e.secretFile = filepath.Join(t.TempDir(), "client-secret")
	e.write(e.secretFile, []byte(e.creds.ClientSecret+"\n"))
	e.load("stock",
		"CLIENT_ID="+e.creds.ClientID,
		"CLIENT_SECRET_FILE="+e.secretFile,
		"SCOPES=openid,AdobeID")
	return e
}

// currentToken is mgr's current token, which the emulator must find valid.
func (e *rotationEnv) currentToken(mgr *Manager) string {
	e.t.Helper()
	tok, err := mgr.Token(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if info := e.adobe.LookupToken(tok.Value); info.State != fakeadobe.TokenValid || info.ClientID != e.creds.ClientID {
		e.t.Fatalf("the emulator makes of the token %+v, want a valid token of %s", info, e.creds.ClientID)
	}
	return tok.Value
}

// TestRotator_ReloadsARotatedClientSecretFile follows Adobe's
// rotation of a client secret: add a second secret to the credential,
// install it in the file, revoke the first. The route switches without a
// restart and keeps getting tokens once the first secret is gone.
func TestRotator_ReloadsARotatedClientSecretFile(t *testing.T) {
	e := newSecretRotationEnv(t)
	if got := e.cfg.Routes[0].Auth; got != config.AuthOAuth {
		t.Fatalf("auth = %q, want oauth inferred from CLIENT_ID and CLIENT_SECRET_FILE", got)
	}
	w, live, mgr := e.watcher()
	var replaced atomic.Int64
	live.onReplaced = func() { replaced.Add(1) }
	ctx := context.Background()
	before := e.currentToken(mgr)

	const rotated = "p8e-Rotated-9f3c1a7e5b2d4068"
	if err := e.adobe.AddSecret(e.creds.ClientID, rotated); err != nil {
		t.Fatal(err)
	}
	e.write(e.secretFile, []byte(rotated+"\n"))
	w.poll(ctx) // changed: wait one interval for the writes to settle
	if got := e.currentToken(mgr); got != before {
		t.Fatal("reloaded before the file settled")
	}
	w.poll(ctx)
	if got := e.currentToken(mgr); got == before {
		t.Fatalf("the rotated secret was not picked up\nlogs:\n%s", e.logs)
	}
	if st := live.ReloadStatus(); st == nil || st.Reloaded.IsZero() || st.LastError != "" {
		t.Errorf("reload status = %+v, want a successful reload", st)
	}
	if n := e.reloads("success"); n != 1 {
		t.Errorf("successful reloads = %v, want 1", n)
	}
	if n := replaced.Load(); n != 1 {
		t.Errorf("onReplaced (the cache purge) ran %d times, want 1", n)
	}

	// With the first secret revoked, the next exchange still succeeds:
	// the route asks with the new one.
	if err := e.adobe.RevokeSecret(e.creds.ClientID, e.creds.ClientSecret); err != nil {
		t.Fatal(err)
	}
	reloaded := e.currentToken(mgr)
	if !mgr.Invalidate(context.Background(), reloaded) {
		t.Fatal("Invalidate refused a first forced refresh")
	}
	if got := e.currentToken(mgr); got == reloaded {
		t.Fatal("Invalidate did not lead to a new exchange")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"credentials reloaded"`) || !strings.Contains(logs, `"trigger":"file change"`) {
		t.Errorf("no reload logged:\n%s", logs)
	}
	if strings.Contains(logs, rotated) || strings.Contains(logs, e.creds.ClientSecret) {
		t.Errorf("a client secret reached the log:\n%s", logs)
	}
}

// TestRotator_BrokenOrUnknownClientSecretKeepsTheOldOne: an empty
// secret file is a configuration problem that waits for the next change; a
// secret IMS does not know yet (installed before it was added to the
// credential) is retried with backoff. Either way the old secret's token
// keeps serving, and no secret is logged.
func TestRotator_BrokenOrUnknownClientSecretKeepsTheOldOne(t *testing.T) {
	e := newSecretRotationEnv(t)
	w, live, mgr := e.watcher()
	ctx := context.Background()
	before := e.currentToken(mgr)

	e.write(e.secretFile, []byte("\n"))
	w.poll(ctx)
	w.poll(ctx)
	if got := e.currentToken(mgr); got != before {
		t.Fatal("an empty secret file replaced the old credentials")
	}
	st := live.ReloadStatus()
	if st == nil || st.LastError != "IMSPROXY_STOCK_CLIENT_SECRET_FILE: is empty" {
		t.Fatalf("reload status = %+v, want the error naming the variable", st)
	}
	e.advance(time.Hour)
	w.poll(ctx)
	if n := strings.Count(e.logs.String(), "reload failed"); n != 1 {
		t.Errorf("%d failures logged for one broken file, want 1 (no retry until it changes)", n)
	}

	const early = "p8e-Early-4b7d2e9a1c6f3058"
	e.write(e.secretFile, []byte(early+"\n"))
	w.poll(ctx)
	w.poll(ctx)
	if got := e.currentToken(mgr); got != before {
		t.Fatal("a secret IMS refused replaced the old credentials")
	}
	if st := live.ReloadStatus(); st == nil || !strings.Contains(st.LastError, "invalid_client") {
		t.Fatalf("reload status = %+v, want invalid_client", st)
	}
	if err := e.adobe.AddSecret(e.creds.ClientID, early); err != nil {
		t.Fatal(err)
	}
	e.advance(minReloadRetry)
	w.poll(ctx)
	if got := e.currentToken(mgr); got == before {
		t.Fatalf("the retry did not pick up the secret once IMS knew it\nlogs:\n%s", e.logs)
	}
	if st := live.ReloadStatus(); st == nil || st.LastError != "" || st.Reloaded.IsZero() {
		t.Errorf("reload status after the retry = %+v, want a successful reload", st)
	}
	if logs := e.logs.String(); strings.Contains(logs, early) || strings.Contains(logs, e.creds.ClientSecret) {
		t.Errorf("a client secret reached the log:\n%s", logs)
	}
}
