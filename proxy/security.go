package proxy

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// security is what the routes of a Server share for SPEC §6: who may call
// (the callers file) and the audit log of licensing.
type security struct {
	callers *Callers  // nil: no IMSPROXY_CALLERS_FILE
	audit   *AuditLog // nil: no IMSPROXY_AUDIT_LOG
}

// newSecurity loads the callers file and opens the audit log. What is wrong
// is returned as config.Problems (the program exits 2, as for any invalid
// configuration).
func newSecurity(cfg *config.Config, log *slog.Logger, now time.Time) (*security, error) {
	var ps config.Problems
	sec := &security{}
	if cfg.CallersFile != "" {
		names := make([]string, 0, len(cfg.Routes))
		for _, rc := range cfg.Routes {
			names = append(names, rc.Name)
		}
		callers, err := LoadCallers(cfg.CallersFile, names, log)
		if err != nil {
			ps = appendProblems(ps, err)
		}
		sec.callers = callers
	}
	if cfg.AuditLog != "" {
		audit, err := OpenAuditLog(cfg.AuditLog, now, log)
		if err != nil {
			ps = append(ps, config.Problem{Var: "IMSPROXY_AUDIT_LOG", Message: err.Error()})
		}
		sec.audit = audit
	}
	for _, rc := range cfg.Routes {
		if rc.Type != config.TypeStock || !rc.AllowLicense {
			continue
		}
		v := "IMSPROXY_" + envName(rc.Name) + "_"
		switch {
		case rc.LicenseDailyLimit > 0 && !sec.audit.isFile():
			ps = append(ps, config.Problem{Var: v + "LICENSE_DAILY_LIMIT",
				Message: "needs IMSPROXY_AUDIT_LOG set to a file: the day's licence count is rebuilt from it after a restart"})
		case sec.audit == nil:
			log.Warn("licensing is allowed but IMSPROXY_AUDIT_LOG is not set: licensing attempts are not audited", "route", rc.Name)
		}
	}
	if len(ps) > 0 {
		_ = sec.audit.Close()
		return nil, ps
	}
	return sec, nil
}

func appendProblems(ps config.Problems, err error) config.Problems {
	var more config.Problems
	if errors.As(err, &more) {
		return append(ps, more...)
	}
	return append(ps, config.Problem{Var: "IMSPROXY_CALLERS_FILE", Message: err.Error()})
}

// run watches the callers file until ctx is done.
func (sec *security) run(ctx context.Context) {
	if sec.callers != nil {
		sec.callers.watch(ctx, callersPollInterval)
	}
}

// close closes the audit log.
func (sec *security) close() { _ = sec.audit.Close() }

// ReloadCallers re-reads IMSPROXY_CALLERS_FILE now (for SIGHUP; changes are
// also picked up on their own within a second). Without a callers file it
// does nothing. On error the previous callers stay in force.
func (s *Server) ReloadCallers() error {
	if s.sec.callers == nil {
		return nil
	}
	_, err := s.sec.callers.Reload()
	return err
}
