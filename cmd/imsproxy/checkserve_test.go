package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// TestCheckRefusesWhatServeRefuses walks every variable imsproxy reads,
// global and per route, through values of every kind an operator could
// get wrong (malformed text, numbers out of range, addresses, URLs, paths
// to nothing, to a directory, to files with broken content), one at a time
// on top of a configuration that uses the guards (a callers file, an audit
// log, licensing with a daily limit). Whenever serve refuses to start,
// check must refuse the configuration too, with exit code 2: a
// configuration that check passes never fails at start.
func TestCheckRefusesWhatServeRefuses(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // relative paths among the values name files here
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	callers := write("callers.json", testutil.CallersJSON(testutil.Caller{Name: "app", Key: "k", Routes: []string{"stock"}, License: true}))
	base := map[string]string{
		"IMSPROXY_ROUTES":                    "stock,aem",
		"IMSPROXY_IMS_URL":                   "http://127.0.0.1:1",
		"IMSPROXY_ADMIN_LISTEN":              "127.0.0.1:0",
		"IMSPROXY_CALLERS_FILE":              callers,
		"IMSPROXY_AUDIT_LOG":                 filepath.Join(dir, "audit.log"),
		"IMSPROXY_STOCK_LISTEN":              "127.0.0.1:0",
		"IMSPROXY_STOCK_UPSTREAM":            "http://127.0.0.1:1",
		"IMSPROXY_STOCK_CLIENT_ID":           "client",
		"IMSPROXY_STOCK_CLIENT_SECRET":       "secret",
		"IMSPROXY_STOCK_SCOPES":              "openid",
		"IMSPROXY_STOCK_ALLOW_LICENSE":       "true",
		"IMSPROXY_STOCK_LICENSE_DAILY_LIMIT": "5",
		"IMSPROXY_AEM_LISTEN":                "127.0.0.1:0",
		"IMSPROXY_AEM_UPSTREAM":              "http://127.0.0.1:1",
		"IMSPROXY_AEM_AUTH":                  "none",
	}
	values := []string{
		"", " ", "x", "-", "-1", "0", "1", "5", "true", "false", "none", "jwt", "oauth", "token",
		"1s", "0s", "-5s", "99999999999999999999", "127.0.0.1:0", "0.0.0.0:0", "localhost:0", "127.0.0.1:99999", "[::1]:0", "192.0.2.1:0", "nosuchhost.invalid:0",
		"http://127.0.0.1:1", "https://u:p@example.com/x?y", "ftp://example.com", "stock", "stock,stock", "a b",
		"/nonexistent/file", dir, write("empty", ""), write("garbage", "{"),
		write("wrong-shape.json", `[{"name":"x"}]`), write("other-route.json", testutil.CallersJSON(testutil.Caller{Name: "b", Key: "b", Routes: []string{"elsewhere"}})),
		write("pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
	}
	var names []string
	names = append(names, config.GlobalVariables()...)
	for _, route := range []string{"STOCK", "AEM"} {
		for _, s := range config.RouteVariables() {
			names = append(names, "IMSPROXY_"+route+"_"+s)
		}
	}
	tried, refused := 0, 0
	for _, name := range names {
		for _, value := range values {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			env[name] = value
			environ := make([]string, 0, len(env))
			for k, v := range env {
				environ = append(environ, k+"="+v)
			}
			tried++
			var serveErr strings.Builder
			srv, _, _, serveCode := start(environ, &serveErr)
			if srv != nil {
				if err := srv.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// An empty _LISTEN is the default port, which something on this
			// machine (a running sandbox) may hold: the machine's state,
			// not the configuration, which check warns about instead.
			if serveCode == 0 || strings.Contains(serveErr.String(), " is in use: ") {
				continue
			}
			refused++
			var stdout, stderr strings.Builder
			if code := run([]string{"check"}, environ, &stdout, &stderr); code != 2 {
				t.Errorf("%s=%q: serve refuses to start (exit %d) but check exits %d:\n%s%s", name, value, serveCode, code, stdout.String(), stderr.String())
			}
		}
	}
	t.Logf("%d configurations tried, %d refused by serve", tried, refused)
	if refused < len(names) {
		t.Errorf("serve refused only %d of %d configurations: the walk does not reach the rules", refused, tried)
	}
}
