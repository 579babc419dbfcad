// Package callers is the first stage of every route: it decides whether a
// request may be served at all. It refuses what would make the route a
// forward proxy, identifies the caller by its key when the operator keeps
// a callers file (IMSPROXY_CALLERS_FILE) and checks that the caller may
// use the route, and bounds the request body (MAX_BODY_BYTES), in that
// order, so that nobody's body is read before the caller is known.
package callers

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// PollInterval is how often the callers file is checked for changes.
const PollInterval = time.Second

// File is the current content of IMSPROXY_CALLERS_FILE, reloaded when the
// file changes. A file that no longer parses leaves the previous callers
// in force (and is logged): a typo must neither lock every caller out nor
// let everyone in.
type File struct {
	path    string
	routes  []string // the configured route names
	log     *slog.Logger
	callers atomic.Pointer[[]config.Caller]

	mu     sync.Mutex // serialises reloads
	loaded [sha256.Size]byte
}

// NewFile serves the callers config.Load read from path and reloads the
// file when it changes; routes are the configured route names, which every
// caller's routes must be among.
func NewFile(path string, routes []string, loaded []config.Caller, log *slog.Logger) *File {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &File{path: path, routes: routes, log: log}
	f.callers.Store(&loaded)
	if _, err := f.reload(); err != nil { // changed since it was loaded: keep what was checked
		f.log.Error("callers file not reloaded; the previous callers stay in force", "error", err)
	}
	return f
}

// Reload re-reads the file now (SIGHUP). It reports whether the callers
// changed; on error the previous callers stay in force.
func (f *File) Reload() (bool, error) {
	changed, err := f.reload()
	if err != nil {
		f.log.Error("callers file not reloaded; the previous callers stay in force", "error", err)
	}
	return changed, err
}

func (f *File) reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := config.ReadCallersFile(f.path)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(data)
	if sum == f.loaded {
		return false, nil
	}
	callers, err := config.ParseCallersFile(f.path, data, f.routes)
	if err != nil {
		return false, err
	}
	f.callers.Store(&callers)
	f.loaded = sum
	f.log.Info("callers file loaded", "path", f.path, "callers", len(callers))
	if len(callers) == 0 {
		f.log.Warn("the callers file lists no callers: every request is refused with 401", "path", f.path)
	}
	return true, nil
}

// Watch reloads the file whenever its content changes, until ctx is done.
func (f *File) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := f.reload()
		switch {
		case err != nil && err.Error() != lastErr:
			// Logged once per distinct problem, not once a second.
			f.log.Error("callers file not reloaded; the previous callers stay in force", "error", err)
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
		}
	}
}

// identify returns the caller presenting r's key: x-api-key first (a
// legacy app keeps sending one, now a proxy key), then Authorization:
// Bearer. Every caller's digest is compared in constant time, and all of
// them are, so the time taken does not tell which entry (if any) matched.
func (f *File) identify(r *http.Request) *config.Caller {
	callers := *f.callers.Load()
	if k := r.Header.Get("X-Api-Key"); k != "" {
		if c := lookup(callers, k); c != nil {
			return c
		}
	}
	if k, ok := bearerCredential(r.Header.Get("Authorization")); ok {
		return lookup(callers, k)
	}
	return nil
}

func lookup(callers []config.Caller, key string) *config.Caller {
	digest := sha256.Sum256([]byte(key))
	var found *config.Caller
	for i := range callers {
		if callers[i].HasKey(&digest) && found == nil {
			found = &callers[i]
		}
	}
	return found
}

// bearerCredential returns the credential of an "Authorization: Bearer" value.
func bearerCredential(v string) (string, bool) {
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}
