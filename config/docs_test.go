package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/internal/doccheck"
)

// docNameRE matches a variable name as the documentation writes it:
// IMSPROXY_STOCK_CLIENT_ID, IMSPROXY_<ROUTE>_LISTEN, IMSPROXY_*_LISTEN, or a
// prefix such as IMSPROXY_<ROUTE>_ or IMSPROXY_<NAME>_….
var docNameRE = regexp.MustCompile(`IMSPROXY_[A-Z0-9_<>*…]*`)

// routePlaceholders stand for any route name in the documentation.
var routePlaceholders = strings.NewReplacer("<ROUTE>", "ROUTE", "<NAME>", "ROUTE", "*", "ROUTE")

// TestDocs_EveryVariableIsInTheReference fails when the code reads a
// variable that docs/configuration.md does not list in its reference
// tables: the names come from the env tags, so a new variable needs its
// row.
func TestDocs_EveryVariableIsInTheReference(t *testing.T) {
	documented := referenceRows(t, filepath.Join("..", "docs", "configuration.md"))
	want := globalNames()
	for _, s := range routeSuffixes() {
		want = append(want, prefix+"<ROUTE>_"+s)
	}
	if len(want) < 30 {
		t.Fatalf("only %d variables derived from the code: the env tags were not read", len(want))
	}
	for _, name := range want {
		if !documented[name] {
			t.Errorf("%s is read by the code but has no row in the reference tables of docs/configuration.md", name)
		}
	}
}

// TestDocs_EveryVariableMentionedExists fails when a Markdown file of the
// repository names an IMSPROXY_ variable the code does not read (a typo,
// or a variable that was removed). Placeholders stand for any route name;
// an error message quoting an unknown variable is allowed on its line.
func TestDocs_EveryVariableMentionedExists(t *testing.T) {
	files, err := doccheck.Files("..")
	if err != nil {
		t.Fatal(err)
	}
	mentions := 0
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "unknown variable") {
				continue // quotes a typo on purpose, as the proxy reports it
			}
			for _, name := range docNameRE.FindAllString(line, -1) {
				mentions++
				if !documentedName(name) {
					t.Errorf("%s:%d: %s is not a variable imsproxy reads", f, i+1, name)
				}
			}
		}
	}
	if mentions < 100 {
		t.Fatalf("only %d mentions of IMSPROXY_ variables in %v: the files were not read", mentions, files)
	}
}

func TestDocumentedName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"IMSPROXY_ROUTES", true},
		{"IMSPROXY_STOCK_CLIENT_ID", true},
		{"IMSPROXY_BRANDPORTAL_PRIVATE_KEY_FILE", true},
		{"IMSPROXY_<ROUTE>_CLIENT_SECRET_FILE", true},
		{"IMSPROXY_*_LISTEN", true},
		{"IMSPROXY_", true},
		{"IMSPROXY_*", true},
		{"IMSPROXY_<ROUTE>_", true},
		{"IMSPROXY_<NAME>_…", true},
		{"IMSPROXY_STOCK_", true},
		{"IMSPROXY_STOCK_CLIENTID", false},
		{"IMSPROXY_LOGLEVEL", false},
		{"IMSPROXY_<ROUTE>_CACHE_TTTL", false},
		{"IMSPROXY_<X>_LISTEN", false},
		{"IMSPROXY_STOCK__", false},
	} {
		if got := documentedName(c.name); got != c.ok {
			t.Errorf("documentedName(%q) = %v, want %v", c.name, got, c.ok)
		}
	}
}

// documentedName reports whether name, as the documentation writes it, is
// a variable imsproxy reads or the prefix of a route's variables.
func documentedName(name string) bool {
	// A trailing * or … marks a prefix: IMSPROXY_*, IMSPROXY_<NAME>_….
	n := strings.TrimRight(name, "*…")
	n = routePlaceholders.Replace(n)
	if strings.Contains(n, "<") || strings.Contains(n, ">") {
		return false // a placeholder other than a route name
	}
	if n == prefix {
		return true
	}
	if route, ok := strings.CutSuffix(strings.TrimPrefix(n, prefix), "_"); ok {
		return route == strings.ToUpper(route) && validRouteName(strings.ToLower(route))
	}
	return KnownVariable(n)
}

// referenceRows returns the names in the first cell of the table rows of
// the Markdown file at path, placeholders kept as written.
func referenceRows(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "|") || len(cells) < 3 {
			continue
		}
		for _, name := range docNameRE.FindAllString(cells[1], -1) {
			rows[name] = true
		}
	}
	return rows
}
