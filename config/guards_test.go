package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoad_Guards(t *testing.T) {
	licensing := with(oauthStock(), "IMSPROXY_STOCK_ALLOW_LICENSE", "true", "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "5")
	readOnlyDir := t.TempDir()
	if err := os.Chmod(readOnlyDir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(readOnlyDir, 0o700) })
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"a callers file naming a route that is not configured",
			with(oauthStock(), "IMSPROXY_CALLERS_FILE", writeFile(t, "callers.json",
				`[{"name":"app","key_sha256":"`+hex64+`","routes":["aem"]}]`)),
			`IMSPROXY_CALLERS_FILE: ...`},
		{"a callers file that is not JSON",
			with(oauthStock(), "IMSPROXY_CALLERS_FILE", writeFile(t, "callers.json", "{")),
			`IMSPROXY_CALLERS_FILE: ...`},
		{"a callers file that cannot be read",
			with(oauthStock(), "IMSPROXY_CALLERS_FILE", "/nonexistent/callers.json"),
			"IMSPROXY_CALLERS_FILE: cannot read /nonexistent/callers.json: no such file or directory"},
		{"an audit log in a directory that does not exist",
			with(oauthStock(), "IMSPROXY_AUDIT_LOG", "/nonexistent/audit.log"),
			"IMSPROXY_AUDIT_LOG: cannot create /nonexistent/audit.log in /nonexistent: ..."},
		{"an audit log that is a directory",
			with(oauthStock(), "IMSPROXY_AUDIT_LOG", "/"),
			"IMSPROXY_AUDIT_LOG: / is not a regular file"},
		{"a daily limit without an audit log",
			licensing, "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT: needs IMSPROXY_AUDIT_LOG set to a file: ..."},
		{"a daily limit with the audit log on stdout",
			with(licensing, "IMSPROXY_AUDIT_LOG", "-"), "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT: needs IMSPROXY_AUDIT_LOG set to a file: ..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblems(t, loadProblems(t, tc.env), tc.want)
		})
	}
	if os.Geteuid() != 0 { // root writes anywhere
		wantProblems(t, loadProblems(t, with(oauthStock(), "IMSPROXY_AUDIT_LOG", filepath.Join(readOnlyDir, "audit.log"))),
			"IMSPROXY_AUDIT_LOG: cannot create ...")
	}

	t.Run("valid", func(t *testing.T) {
		audit := filepath.Join(t.TempDir(), "audit.log")
		cfg := mustLoad(t, with(licensing, "IMSPROXY_AUDIT_LOG", audit, "IMSPROXY_CALLERS_FILE", writeFile(t, "callers.json",
			`[{"name":"app","key_sha256":"`+hex64+`","routes":["stock"],"license":true}]`)))
		if len(cfg.Callers) != 1 || cfg.Callers[0].Name != "app" || !cfg.Callers[0].License || !cfg.Callers[0].MayUse("stock") {
			t.Errorf("callers = %+v", cfg.Callers)
		}
		if _, err := os.Stat(audit); !os.IsNotExist(err) {
			t.Errorf("checking the audit log created it (stat: %v)", err)
		}
		if entries, _ := os.ReadDir(filepath.Dir(audit)); len(entries) != 0 {
			t.Errorf("checking the audit log left %d files behind", len(entries))
		}
	})
}

// hex64 is a well-formed key_sha256.
const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
