package main

import (
	"net"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/redistest"
)

func TestCheck_PingsRedisAndLoadsTheScripts(t *testing.T) {
	e := startEmulator(t)
	env := e.oauthEnv(e.credentials(t, fakeadobe.CredentialOptions{}))
	srv := redistest.Start(t, redistest.Options{})

	code, out, errOut := runCmd(t, append(env, "IMSPROXY_REDIS_URL="+srv.URL), "check")
	if code != 0 || !strings.Contains(out, "redis (fleet mode): reachable, scripts loaded") {
		t.Errorf("check with Redis: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, append(env, "IMSPROXY_REDIS_URL=redis://"+closedAddr(t)+"/0", "IMSPROXY_REDIS_TIMEOUT=200ms"), "check")
	if code != 1 || !strings.Contains(out, "redis (fleet mode): FAILED ping Redis") || !strings.Contains(out, "token retrieved successfully") ||
		!strings.Contains(out, "every route obtained a token; Redis failed") {
		t.Errorf("check with Redis down: exit %d, want 1\n%s", code, out)
	}
}

func TestAudit_NeedsRedisAndPrintsNothingOfAnEmptyStream(t *testing.T) {
	if code, _, errOut := runCmd(t, nil, "audit"); code != 2 || !strings.Contains(errOut, "neither IMSPROXY_REDIS_URL nor IMSPROXY_REDIS_URL_FILE is set") {
		t.Errorf("audit without Redis: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCmd(t, []string{"IMSPROXY_REDIS_URL=http://x"}, "audit"); code != 2 || !strings.Contains(errOut, "IMSPROXY_REDIS_URL") {
		t.Errorf("audit with a bad URL: exit %d: %s", code, errOut)
	}
	for _, since := range []string{"-1h", "0s"} {
		if code, _, errOut := runCmd(t, []string{"IMSPROXY_REDIS_URL=redis://127.0.0.1:1"}, "audit", "-since", since); code != 2 || !strings.Contains(errOut, "a positive duration") {
			t.Errorf("audit -since %s: exit %d: %s", since, code, errOut)
		}
	}
	srv := redistest.Start(t, redistest.Options{})
	if code, out, errOut := runCmd(t, []string{"IMSPROXY_REDIS_URL=" + srv.URL}, "audit", "-since", "1h"); code != 0 || out != "" {
		t.Errorf("audit of an empty stream: exit %d %q %s", code, out, errOut)
	}
}

// closedAddr is a loopback address nothing listens on: a port bound and
// closed at once, so that a connection is refused rather than timing out.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
