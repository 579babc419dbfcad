package main

import (
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

func TestToken_PrintsOnlyTheToken(t *testing.T) {
	e := startEmulator(t)
	c := e.credentials(t, fakeadobe.CredentialOptions{})
	for _, args := range [][]string{{"token", "stock"}, {"token", "STOCK"}, {"token"}} {
		code, stdout, stderr := runCmd(t, e.oauthEnv(c), args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q; want 0 and nothing on stderr", args, code, stderr)
		}
		tok, ok := strings.CutSuffix(stdout, "\n")
		if !ok || strings.ContainsAny(tok, " \n") {
			t.Fatalf("%v: stdout %q is not one token and a newline", args, stdout)
		}
		if info := e.LookupToken(tok); info.State != fakeadobe.TokenValid || info.ClientID != c.ClientID {
			t.Errorf("%v: the emulator makes of the token %+v, want a valid token of %s", args, info, c.ClientID)
		}
	}
}

func TestToken_Failures(t *testing.T) {
	e := startEmulator(t)
	c := e.credentials(t, fakeadobe.CredentialOptions{})
	two := replaceVar(append(e.oauthEnv(c), "IMSPROXY_AEM_UPSTREAM="+e.URL, "IMSPROXY_AEM_AUTH=none"), "IMSPROXY_ROUTES", "stock,aem")
	tests := []struct {
		name       string
		env        []string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{"unknown route", e.oauthEnv(c), []string{"token", "aem"}, 2, []string{`no route "aem": the configured routes are stock`}},
		{"no route named among several", two, []string{"token"}, 2, []string{"name the route: one of stock, aem"}},
		{"route without a token", two, []string{"token", "aem"}, 1, []string{"route aem has AUTH=none"}},
		{"IMS refuses", replaceVar(e.oauthEnv(c), "IMSPROXY_STOCK_SCOPES", "openid,not_granted"), []string{"token", "stock"}, 1,
			[]string{"route stock: invalid_scope: invalid scope (not_granted)", "hint: the requested scopes are not those bound to this client: check SCOPES"}},
		{"invalid configuration", []string{"IMSPROXY_STOCK_CLIENT_ID=x"}, []string{"token", "stock"}, 2,
			[]string{"IMSPROXY_STOCK_CLIENT_SECRET"}},
		{"two routes at once", e.oauthEnv(c), []string{"token", "stock", "aem"}, 2, []string{"one route at a time"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.env, tt.args...)
			if code != tt.wantCode || stdout != "" {
				t.Fatalf("exit %d, stdout %q; want %d and nothing on stdout (stderr %q)", code, stdout, tt.wantCode, stderr)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}
