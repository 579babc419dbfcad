package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// checkGuards validates what the proxy's guards start from, so that a
// configuration `imsproxy check` passes never fails at start: the callers
// file (read and parsed against the configured routes), the audit log (a
// file the proxy can append to and read back), and the daily licence
// limits that rebuild their count from that file.
func checkGuards(ps *Problems, cfg *Config) {
	if cfg.CallersFile != "" {
		callers, err := ReadCallers(cfg.CallersFile, cfg.RouteNames())
		var cps Problems
		if errors.As(err, &cps) {
			*ps = append(*ps, cps...)
		}
		cfg.Callers = callers
	}
	auditFile := cfg.AuditLog != "" && cfg.AuditLog != "-"
	if auditFile {
		if msg := checkAuditLog(cfg.AuditLog); msg != "" {
			ps.add(prefix+"AUDIT_LOG", "%s", msg)
		}
	}
	for _, r := range cfg.Routes {
		if r.Type == TypeStock && r.AllowLicense && r.LicenseDailyLimit > 0 && !auditFile && !ps.has(r.Var("LICENSE_DAILY_LIMIT")) {
			ps.add(r.Var("LICENSE_DAILY_LIMIT"), "needs IMSPROXY_AUDIT_LOG set to a file: the day's license count is rebuilt from it after a restart")
		}
	}
}

// checkAuditLog reports why the audit log at path cannot be used: the
// proxy appends to it, and reads it back at start to count the day's
// licenses. A file that does not exist yet must be creatable.
func checkAuditLog(path string) string {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(path)
		f, err := os.CreateTemp(dir, ".imsproxy-audit-check-")
		if err != nil {
			return "cannot create " + path + " in " + dir + ": " + readError(err)
		}
		_ = f.Close()
		_ = os.Remove(f.Name())
		return ""
	case err != nil:
		return "cannot use " + path + ": " + readError(err)
	case !info.Mode().IsRegular():
		return path + " is not a regular file"
	}
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "cannot append to " + path + ": " + readError(err)
	}
	_ = w.Close()
	r, err := os.Open(path)
	if err != nil {
		return "cannot read " + path + " (the day's licenses are counted from it at start): " + readError(err)
	}
	_ = r.Close()
	return ""
}
