package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/imsproxy/imsproxy/config"
)

// maxCallersFile bounds the callers file: a few thousand callers at most.
const maxCallersFile = 1 << 20

// callersPollInterval is how often the callers file is checked for changes.
const callersPollInterval = time.Second

// Caller is one entry of IMSPROXY_CALLERS_FILE (SPEC §6): an application
// that may call the proxy with its own key.
type Caller struct {
	Name    string
	Routes  []string
	License bool
	digest  [sha256.Size]byte // SHA-256 of the key; the key itself is never stored
}

// mayUse reports whether the caller may call route.
func (c *Caller) mayUse(route string) bool { return slices.Contains(c.Routes, route) }

// callerEntry is the JSON form of a Caller.
type callerEntry struct {
	Name      string   `json:"name"`
	KeySHA256 string   `json:"key_sha256"`
	Routes    []string `json:"routes"`
	License   bool     `json:"license"`
}

// callerSet is one parsed version of the callers file.
type callerSet struct{ callers []Caller }

// ParseCallers parses a callers file: a JSON list of
// {"name", "key_sha256", "routes": [...], "license": bool}. When routes is
// not nil, every caller's routes must be among them (the configured
// routes). Every problem is reported, one per line; a message never
// repeats a key_sha256 value (an operator may have pasted the key itself
// there).
func ParseCallers(data []byte, routes []string) ([]Caller, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var entries []callerEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("want a JSON list of {\"name\", \"key_sha256\", \"routes\", \"license\"}: %s", jsonProblem(data, err))
	}
	if entries == nil {
		return nil, errors.New("want a JSON list of {\"name\", \"key_sha256\", \"routes\", \"license\"}: the file holds null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("has data after the JSON list")
	}
	var problems []string
	add := func(i int, name, format string, args ...any) {
		who := fmt.Sprintf("caller %d", i+1)
		if name != "" && printableName(name) {
			who += fmt.Sprintf(" (%s)", name)
		}
		problems = append(problems, who+": "+fmt.Sprintf(format, args...))
	}
	callers := make([]Caller, 0, len(entries))
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]bool{}
	for i, e := range entries {
		c := Caller{Name: e.Name, License: e.License}
		switch {
		case e.Name == "":
			add(i, "", "name is required (it names the caller in logs and the audit log)")
		case !printableName(e.Name):
			add(i, "", "name must be at most 100 printable characters")
		case names[e.Name]:
			add(i, e.Name, "name is used by another caller")
		}
		names[e.Name] = true
		digest, err := hex.DecodeString(e.KeySHA256)
		switch {
		case e.KeySHA256 == "":
			add(i, e.Name, "key_sha256 is required: the SHA-256 of the caller's key in hex (imsproxy caller-key prints it)")
		case err != nil || len(digest) != sha256.Size:
			add(i, e.Name, "key_sha256 must be the 64 hex digits of the SHA-256 of the key (imsproxy caller-key prints it), not the key itself")
		default:
			copy(c.digest[:], digest)
			if digests[c.digest] {
				add(i, e.Name, "key_sha256 is the same as another caller's: give each caller its own key")
			}
			digests[c.digest] = true
		}
		if len(e.Routes) == 0 {
			add(i, e.Name, "routes is empty: list the routes this caller may use, e.g. [\"stock\"]")
		}
		for _, r := range e.Routes {
			switch {
			case r == "" || r != strings.ToLower(strings.TrimSpace(r)) || !printableName(r):
				add(i, e.Name, "routes holds %q: route names are lower case, as in IMSPROXY_ROUTES", r)
			case routes != nil && !slices.Contains(routes, r):
				add(i, e.Name, "route %q is not configured (routes: %s)", r, strings.Join(routes, ", "))
			}
		}
		c.Routes = slices.Clone(e.Routes)
		callers = append(callers, c)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return callers, nil
}

// jsonProblem describes a decoding error with its line and column.
func jsonProblem(data []byte, err error) string {
	var offset int64 = -1
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		offset = syntax.Offset
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s must be a JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		}
		return "the file must hold a JSON list"
	case errors.Is(err, io.EOF):
		return "the file is empty"
	}
	msg := err.Error()
	if field, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		// The name comes quoted; a long one is more likely pasted data
		// than a typo, so it is not repeated.
		if len(field) > 40 {
			return "an unknown field (its name is too long to show)"
		}
		return "unknown field " + field
	}
	if offset < 0 || offset > int64(len(data)) {
		return msg
	}
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return fmt.Sprintf("line %d, column %d: %s", line, col, msg)
}

func jsonKind(kind string) string {
	switch kind {
	case "slice":
		return "list"
	case "bool":
		return "boolean (true or false)"
	}
	return kind
}

// printableName accepts up to 100 printable characters: names end up in
// log lines and the audit log.
func printableName(s string) bool {
	if len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// lookup finds the caller whose key is key. Every caller's digest is
// compared in constant time, and all of them are, so the time taken does
// not tell which entry (if any) matched.
func (s *callerSet) lookup(key string) *Caller {
	if key == "" {
		return nil
	}
	digest := sha256.Sum256([]byte(key))
	var found *Caller
	for i := range s.callers {
		c := &s.callers[i]
		if subtle.ConstantTimeCompare(digest[:], c.digest[:]) == 1 && found == nil {
			found = c
		}
	}
	return found
}

// Callers is the current content of IMSPROXY_CALLERS_FILE, reloaded when
// the file changes. A file that no longer parses leaves the previous
// callers in force (and is logged): a typo must neither lock every caller
// out nor let everyone in.
type Callers struct {
	path   string
	routes []string // the configured route names
	log    *slog.Logger
	set    atomic.Pointer[callerSet]

	mu     sync.Mutex // serialises reloads
	loaded [sha256.Size]byte
}

// LoadCallers reads the callers file at path; routes are the configured
// route names, which every caller's routes must be among. Its error is a
// config.Problems.
func LoadCallers(path string, routes []string, log *slog.Logger) (*Callers, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Callers{path: path, routes: routes, log: log}
	if _, err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the file now (SIGHUP). It reports whether the callers
// changed; on error the previous callers stay in force.
func (c *Callers) Reload() (bool, error) {
	changed, err := c.reload()
	if err != nil {
		c.log.Error("callers file not reloaded; the previous callers stay in force", "error", err)
	}
	return changed, err
}

func (c *Callers) reload() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	data, err := readSmallFile(c.path, maxCallersFile)
	if err != nil {
		return false, callersProblems("cannot read "+c.path, err)
	}
	sum := sha256.Sum256(data)
	if c.set.Load() != nil && sum == c.loaded {
		return false, nil
	}
	callers, err := ParseCallers(data, c.routes)
	if err != nil {
		return false, callersProblems(c.path, err)
	}
	c.set.Store(&callerSet{callers: callers})
	c.loaded = sum
	c.log.Info("callers file loaded", "path", c.path, "callers", len(callers))
	if len(callers) == 0 {
		c.log.Warn("the callers file lists no callers: every request is refused with 401", "path", c.path)
	}
	return true, nil
}

// callersProblems turns err's lines into configuration problems of
// IMSPROXY_CALLERS_FILE.
func callersProblems(prefix string, err error) config.Problems {
	var ps config.Problems
	for _, line := range strings.Split(err.Error(), "\n") {
		ps = append(ps, config.Problem{Var: "IMSPROXY_CALLERS_FILE", Message: prefix + ": " + line})
	}
	return ps
}

// watch reloads the file whenever its content changes, until ctx is done.
func (c *Callers) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := c.reload()
		switch {
		case err != nil && err.Error() != lastErr:
			// Logged once per distinct problem, not once a second.
			c.log.Error("callers file not reloaded; the previous callers stay in force", "error", err)
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
		}
	}
}

// identify returns the caller presenting r's key: x-api-key first (a legacy
// app keeps sending one, now a proxy key), then Authorization: Bearer.
func (c *Callers) identify(r *http.Request) *Caller {
	set := c.set.Load()
	if k := r.Header.Get("X-Api-Key"); k != "" {
		if cl := set.lookup(k); cl != nil {
			return cl
		}
	}
	if k, ok := bearerCredential(r.Header.Get("Authorization")); ok {
		return set.lookup(k)
	}
	return nil
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

// readSmallFile reads a file of at most limit bytes. Its errors do not
// repeat the path.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// admit screens a request before anything else looks at it: no forward
// proxying (CONNECT, absolute-form targets); with a callers file, a known
// caller allowed on this route; then MAX_BODY_BYTES (limitBody), so that
// nobody's body is read before the caller is known. It answers refused
// requests itself (and audits a refused licensing call). The caller is nil
// when no callers file is configured.
func (rt *Route) admit(w http.ResponseWriter, r *http.Request) (*Caller, bool) {
	if !rt.originForm(w, r) {
		return nil, false
	}
	caller, ok := rt.knownCaller(w, r)
	if !ok {
		return nil, false
	}
	if !rt.limitBody(w, r) {
		outcome, status := outcomeBadRequest, http.StatusBadRequest
		if st, ok := w.(interface{ Status() int }); ok && st.Status() == http.StatusRequestEntityTooLarge {
			outcome, status = CodeBodyTooLarge, http.StatusRequestEntityTooLarge
		}
		rt.auditRefusal(w, r, caller, outcome, status)
		return nil, false
	}
	return caller, true
}

// knownCaller identifies the caller when a callers file is configured.
func (rt *Route) knownCaller(w http.ResponseWriter, r *http.Request) (*Caller, bool) {
	if rt.guards.callers == nil {
		return nil, true
	}
	caller := rt.guards.callers.identify(r)
	switch {
	case caller == nil:
		reason := "no caller key"
		if r.Header.Get("X-Api-Key") != "" || r.Header.Get("Authorization") != "" {
			reason = "unknown caller key"
		}
		rt.refuseCaller(w, r, reason, "")
		w.Header().Set("WWW-Authenticate", `Bearer realm="imsproxy"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthorizedCaller,
			"Send your imsproxy caller key as x-api-key or Authorization: Bearer; the operator lists the keys that may call in IMSPROXY_CALLERS_FILE.",
			rt.cfg.Name)
		rt.auditRefusal(w, r, nil, CodeUnauthorizedCaller, http.StatusUnauthorized)
		return nil, false
	case !caller.mayUse(rt.cfg.Name):
		rt.refuseCaller(w, r, "route not allowed", caller.Name)
		writeError(w, http.StatusForbidden, CodeForbidden,
			"Caller "+caller.Name+" may not use route "+rt.cfg.Name+"; ask the operator to add the route to its entry in IMSPROXY_CALLERS_FILE.",
			rt.cfg.Name)
		rt.auditRefusal(w, r, caller, CodeForbidden, http.StatusForbidden)
		return nil, false
	}
	return caller, true
}

func (rt *Route) refuseCaller(w http.ResponseWriter, r *http.Request, reason, caller string) {
	rt.noteError(w, r, slog.LevelInfo, "caller refused",
		slog.String("reason", reason), slog.String("caller", caller), slog.String("remote", remoteIP(r)))
}

// originForm refuses what would make the route a forward proxy: CONNECT
// tunnels and absolute-form targets ("GET http://elsewhere/ HTTP/1.1").
// Requests always go to the route's upstream anyway; refusing them tells a
// misconfigured client (HTTP_PROXY pointed at the route) what is wrong.
func (rt *Route) originForm(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case r.Method == http.MethodConnect:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			"imsproxy is not a forward proxy and does not tunnel CONNECT; call the route's address as the base URL of the API.",
			rt.cfg.Name)
		return false
	case r.URL.IsAbs() || r.URL.Host != "" || r.RequestURI != "" && !strings.HasPrefix(r.RequestURI, "/"):
		writeError(w, http.StatusBadRequest, "bad_request",
			"imsproxy is not a forward proxy: send origin-form requests (a path such as /Rest/Media/1/Search/Files) to the route's address instead of setting it as an HTTP proxy.",
			rt.cfg.Name)
		return false
	}
	return true
}
