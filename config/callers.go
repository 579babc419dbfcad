package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"
)

// maxCallersFile bounds the callers file: a few thousand callers at most.
const maxCallersFile = 1 << 20

// Caller is one entry of IMSPROXY_CALLERS_FILE: an application that may
// call the proxy with its own key. The key itself is never held, only its
// SHA-256.
type Caller struct {
	Name    string
	Routes  []string
	License bool // may license Stock content (which spends credits)
	digest  [sha256.Size]byte
}

// MayUse reports whether the caller may call route.
func (c *Caller) MayUse(route string) bool { return slices.Contains(c.Routes, route) }

// HasKey reports, in constant time, whether digest is the SHA-256 of the
// caller's key.
func (c *Caller) HasKey(digest *[sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(digest[:], c.digest[:]) == 1
}

// callerEntry is the JSON form of a Caller.
type callerEntry struct {
	Name      string   `json:"name"`
	KeySHA256 string   `json:"key_sha256"`
	Routes    []string `json:"routes"`
	License   bool     `json:"license"`
}

// ReadCallers reads and parses the callers file at path (see ParseCallers).
// Its error is Problems of IMSPROXY_CALLERS_FILE.
func ReadCallers(path string, routes []string) ([]Caller, error) {
	data, err := ReadCallersFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCallersFile(path, data, routes)
}

// ReadCallersFile reads the callers file at path, at most 1 MiB. Its error
// is Problems of IMSPROXY_CALLERS_FILE.
func ReadCallersFile(path string) ([]byte, error) {
	data, err := readSmallFile(path, maxCallersFile)
	if err != nil {
		return nil, callersProblems("cannot read "+path, err)
	}
	return data, nil
}

// ParseCallersFile is ParseCallers with its problems reported as Problems
// of IMSPROXY_CALLERS_FILE, each after path.
func ParseCallersFile(path string, data []byte, routes []string) ([]Caller, error) {
	callers, err := ParseCallers(data, routes)
	if err != nil {
		return nil, callersProblems(path, err)
	}
	return callers, nil
}

// callersProblems turns err's lines into problems of IMSPROXY_CALLERS_FILE,
// each after what (the path, or "cannot read <path>").
func callersProblems(what string, err error) Problems {
	var ps Problems
	for _, line := range strings.Split(err.Error(), "\n") {
		ps = append(ps, Problem{Var: prefix + "CALLERS_FILE", Message: what + ": " + line})
	}
	return ps
}

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
			case !validRouteName(r):
				shown := fmt.Sprintf("%q", r)
				if len(r) > 64 {
					shown = "a value too long to be a route name"
				}
				add(i, e.Name, "routes holds %s: a route name is lower-case letters, digits and single underscores, as in IMSPROXY_ROUTES", shown)
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

// readSmallFile reads a file of at most limit bytes. Its errors do not
// repeat the path.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.New(readError(err))
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
