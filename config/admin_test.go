package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const goodAdminToken = "0123456789abcdef0123456789abcdef"

// The admin listener off loopback needs to be allowed explicitly, and
// then a token; the callers file guards the routes only, so it does not
// count. IMSPROXY_ADMIN_ALLOW_REMOTE opens the admin listener alone.
func TestLoad_AdminListener(t *testing.T) {
	tokenFile := writeFile(t, "admin-token", goodAdminToken+"\n")
	callers := writeFile(t, "callers.json", "[]")
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // nil: loads
	}{
		{"loopback needs nothing", with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", "127.0.0.1:9090"), nil},
		{"off loopback refused", with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", "0.0.0.0:9090"), []string{
			"IMSPROXY_ADMIN_LISTEN: 0.0.0.0:9090 is not a loopback address: set IMSPROXY_ADMIN_ALLOW_REMOTE=true (and IMSPROXY_ADMIN_TOKEN_FILE) to serve the admin endpoints on it"}},
		{"a callers file does not open it", with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", ":9090", "IMSPROXY_CALLERS_FILE", callers), []string{
			"IMSPROXY_ADMIN_LISTEN: :9090 is not a loopback address: set IMSPROXY_ADMIN_ALLOW_REMOTE=true..."}},
		{"allowed, but no token", with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", "0.0.0.0:9090", "IMSPROXY_ADMIN_ALLOW_REMOTE", "true"), []string{
			"IMSPROXY_ADMIN_TOKEN: required because IMSPROXY_ADMIN_LISTEN=0.0.0.0:9090 is not a loopback address: set IMSPROXY_ADMIN_TOKEN_FILE to a file holding the bearer token POST /cache/purge requires (openssl rand -hex 32 makes one)"}},
		{"allowed by ALLOW_REMOTE, but no token", with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", "0.0.0.0:9090", "IMSPROXY_ALLOW_REMOTE", "true"), []string{
			"IMSPROXY_ADMIN_TOKEN: required because..."}},
		{"allowed with a token file", with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", "0.0.0.0:9090", "IMSPROXY_ADMIN_ALLOW_REMOTE", "true",
			"IMSPROXY_ADMIN_TOKEN_FILE", tokenFile), nil},
		{"allowed with an inline token", with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", "[::]:9090", "IMSPROXY_ALLOW_REMOTE", "true",
			"IMSPROXY_ADMIN_TOKEN", goodAdminToken), nil},
		{"ADMIN_ALLOW_REMOTE does not open the routes", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "0.0.0.0:8080",
			"IMSPROXY_ADMIN_LISTEN", "0.0.0.0:9090", "IMSPROXY_ADMIN_ALLOW_REMOTE", "true", "IMSPROXY_ADMIN_TOKEN_FILE", tokenFile), []string{
			"IMSPROXY_STOCK_LISTEN: 0.0.0.0:8080 is not a loopback address: set IMSPROXY_CALLERS_FILE (who may call) or IMSPROXY_ALLOW_REMOTE=true to listen on it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				mustLoad(t, tc.env)
				return
			}
			got := loadProblems(t, tc.env)
			wantProblems(t, got, tc.want...)
			if len(got) != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n  %s", len(got), len(tc.want), strings.Join(got, "\n  "))
			}
		})
	}
}

func TestLoad_AdminToken(t *testing.T) {
	c := mustLoad(t, with(oauthStock(), "IMSPROXY_ADMIN_TOKEN_FILE", writeFile(t, "token", "  "+goodAdminToken+"\r\n")))
	if c.AdminToken.Reveal() != goodAdminToken || c.AdminTokenFile == "" {
		t.Errorf("token file: AdminToken %q, AdminTokenFile %q; want the trimmed token and the path", c.AdminToken.Reveal(), c.AdminTokenFile)
	}
	if c := mustLoad(t, with(oauthStock(), "IMSPROXY_ADMIN_TOKEN", goodAdminToken)); c.AdminToken.Reveal() != goodAdminToken {
		t.Errorf("inline token: %q", c.AdminToken.Reveal())
	}
	if c := mustLoad(t, oauthStock()); !c.AdminToken.IsZero() {
		t.Error("a token without the variables")
	}

	secret := "s3cr3t-admin-token-with a space"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"both", with(oauthStock(), "IMSPROXY_ADMIN_TOKEN", goodAdminToken, "IMSPROXY_ADMIN_TOKEN_FILE", "/x"),
			"IMSPROXY_ADMIN_TOKEN: set either IMSPROXY_ADMIN_TOKEN or IMSPROXY_ADMIN_TOKEN_FILE, not both"},
		{"empty file", with(oauthStock(), "IMSPROXY_ADMIN_TOKEN_FILE", writeFile(t, "empty", "\n")),
			"IMSPROXY_ADMIN_TOKEN_FILE: is empty: want the bearer token POST /cache/purge requires (openssl rand -hex 32 makes one)"},
		{"too short", with(oauthStock(), "IMSPROXY_ADMIN_TOKEN", "short"),
			"IMSPROXY_ADMIN_TOKEN: is too short: use at least 16 characters (openssl rand -hex 32 makes 64)"},
		{"not a header value", with(oauthStock(), "IMSPROXY_ADMIN_TOKEN", secret),
			"IMSPROXY_ADMIN_TOKEN: must be printable ASCII without spaces: it is sent in an Authorization header"},
		{"missing file", with(oauthStock(), "IMSPROXY_ADMIN_TOKEN_FILE", "/nonexistent/admin-token"),
			"IMSPROXY_ADMIN_TOKEN_FILE: cannot read /nonexistent/admin-token: no such file or directory"},
		{"the token in the _FILE variable", with(oauthStock(), "IMSPROXY_ADMIN_TOKEN_FILE", secret),
			"IMSPROXY_ADMIN_TOKEN_FILE: cannot read the file it names: no such file or directory (the value is not repeated: it does not look like a path, and may be the token itself)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loadProblems(t, tc.env)
			wantProblems(t, got, tc.want)
			if all := strings.Join(got, "\n"); strings.Contains(all, secret) || strings.Contains(all, "s3cr3t") {
				t.Errorf("a problem repeats the token:\n%s", all)
			}
		})
	}
}

// The admin token never prints, however the configuration is printed.
func TestConfig_AdminTokenNeverPrints(t *testing.T) {
	c := mustLoad(t, with(oauthStock(), "IMSPROXY_ADMIN_TOKEN", goodAdminToken))
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(verb, c); strings.Contains(out, goodAdminToken) {
			t.Errorf("%s of the Config shows the admin token", verb)
		}
	}
}

func TestReadAdminToken(t *testing.T) {
	path := writeFile(t, "token", goodAdminToken+"\n")
	if tok, err := ReadAdminToken(path); err != nil || tok.Reveal() != goodAdminToken {
		t.Errorf("ReadAdminToken = %q, %v", tok.Reveal(), err)
	}
	_, err := ReadAdminToken(writeFile(t, "token", "short"))
	if err == nil || !strings.HasPrefix(err.Error(), "IMSPROXY_ADMIN_TOKEN_FILE: is too short") {
		t.Errorf("a short token: %v", err)
	}
}

func TestLoad_ShutdownDelay(t *testing.T) {
	if c := mustLoad(t, oauthStock()); c.ShutdownDelay != 0 {
		t.Errorf("default delay %v, want 0", c.ShutdownDelay)
	}
	if c := mustLoad(t, with(oauthStock(), "IMSPROXY_SHUTDOWN_DELAY", "5s")); c.ShutdownDelay != 5*time.Second {
		t.Errorf("delay %v, want 5s", c.ShutdownDelay)
	}
	wantProblems(t, loadProblems(t, with(oauthStock(), "IMSPROXY_SHUTDOWN_DELAY", "-1s")),
		"IMSPROXY_SHUTDOWN_DELAY: must be 0 or more, e.g. 5s")
	wantProblems(t, loadProblems(t, with(oauthStock(), "IMSPROXY_SHUTDOWN_DELAY", "soon")),
		"IMSPROXY_SHUTDOWN_DELAY: cannot be parsed: want a duration such as 15s, 5m or 1h")
}

func TestOnLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:1": true, "127.9.9.9:1": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "10.0.0.1:80": false, "proxy.internal:80": false, "nonsense": false,
	} {
		if got := OnLoopback(addr); got != want {
			t.Errorf("OnLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// AdminListen, which `imsproxy health` reads instead of the whole
// configuration, finds the address Load would use.
func TestAdminListen_AgreesWithLoad(t *testing.T) {
	for _, env := range []map[string]string{oauthStock(), with(oauthStock(), "IMSPROXY_ADMIN_LISTEN", "127.0.0.1:19999")} {
		addr := AdminListen(environ(env))
		if c := mustLoad(t, env); addr != c.AdminListen || AdminListenVariable != "IMSPROXY_ADMIN_LISTEN" {
			t.Errorf("AdminListen = %q, %q; Load uses %q", addr, AdminListenVariable, c.AdminListen)
		}
	}
}
