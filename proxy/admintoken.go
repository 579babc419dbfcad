package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// adminToken is the bearer token the admin listener's mutating endpoints
// require (IMSPROXY_ADMIN_TOKEN[_FILE]). Only its SHA-256 is held, so
// that comparing takes the same time whatever the length of what a
// client sends. A token file is read again when it changes (a rotated
// Kubernetes Secret); a file that no longer holds a valid token leaves
// the previous one in force.
type adminToken struct {
	path   string // "" for IMSPROXY_ADMIN_TOKEN
	log    *slog.Logger
	digest atomic.Pointer[[sha256.Size]byte]
}

// newAdminToken returns the token config.Load read, or nil when none is
// set (the endpoints are then open to whoever reaches the listener, which
// is on loopback).
func newAdminToken(cfg *config.Config, log *slog.Logger) *adminToken {
	if cfg.AdminToken.IsZero() {
		return nil
	}
	t := &adminToken{path: cfg.AdminTokenFile, log: log}
	t.store(cfg.AdminToken)
	return t
}

func (t *adminToken) store(token config.Secret) {
	sum := sha256.Sum256([]byte(token.Reveal()))
	t.digest.Store(&sum)
}

// allows reports, in constant time, whether r carries the token as
// "Authorization: Bearer <token>".
func (t *adminToken) allows(r *http.Request) bool {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	match := subtle.ConstantTimeCompare(sum[:], t.digest.Load()[:]) == 1
	return match && strings.EqualFold(scheme, "Bearer")
}

// reload reads the token file again, reporting whether the token changed.
func (t *adminToken) reload() (bool, error) {
	token, err := config.ReadAdminToken(t.path)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256([]byte(token.Reveal()))
	if sum == *t.digest.Load() {
		return false, nil
	}
	t.digest.Store(&sum)
	return true, nil
}

// Reload re-reads the token file now (SIGHUP), logging the outcome.
func (t *adminToken) Reload() {
	if t == nil || t.path == "" {
		return
	}
	changed, err := t.reload()
	switch {
	case err != nil:
		t.log.Error("admin token not reloaded; the previous token stays in force", "error", err)
	case changed:
		t.log.Info("admin token reloaded", "path", t.path)
	}
}

// watch reloads the token file whenever its content changes, until ctx is
// done; a problem is logged once, not once a poll.
func (t *adminToken) watch(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		changed, err := t.reload()
		switch {
		case err != nil && err.Error() != lastErr:
			t.log.Error("admin token not reloaded; the previous token stays in force", "error", err)
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
			if changed {
				t.log.Info("admin token reloaded", "path", t.path)
			}
		}
	}
}
