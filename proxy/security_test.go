package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
)

func TestNew_SecurityProblemsAreConfigurationProblems(t *testing.T) {
	dir := t.TempDir()
	badCallers := filepath.Join(dir, "callers.json")
	if err := os.WriteFile(badCallers, []byte(`[{"name":"a","key_sha256":"k","routes":["stock"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	stock := config.Route{Name: "stock", Type: config.TypeStock, Listen: "127.0.0.1:0", Upstream: mustURL(t, "http://127.0.0.1:1"),
		Auth: config.AuthNone, AllowLicense: true, LicenseDailyLimit: 5}
	tests := []struct {
		name     string
		cfg      config.Config
		wantVars []string
	}{
		{"bad callers file, limit without an audit file", config.Config{CallersFile: badCallers, AuditLog: "-"},
			[]string{"IMSPROXY_CALLERS_FILE", "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT"}},
		{"audit log cannot be opened", config.Config{AuditLog: filepath.Join(dir, "missing", "audit.log")},
			[]string{"IMSPROXY_AUDIT_LOG"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.AdminListen = "127.0.0.1:0"
			cfg.Routes = []config.Route{stock}
			_, err := New(&cfg, Options{})
			var ps config.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("New error %v, want config.Problems", err)
			}
			for _, v := range tt.wantVars {
				if !strings.Contains(err.Error(), v+": ") {
					t.Errorf("problems %q do not name %s", err, v)
				}
			}
		})
	}
}
