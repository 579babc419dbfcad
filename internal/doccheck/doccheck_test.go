package doccheck

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestRepository_RelativeLinksResolve is the check the repository's
// documentation must pass: every relative link of every Markdown file
// leads to a file that exists and, with a #fragment, to a heading there.
func TestRepository_RelativeLinksResolve(t *testing.T) {
	files, err := Files("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"README.md", "docs/README.md", "docs/configuration.md", "CONTRIBUTING.md"} {
		if !slices.Contains(files, want) {
			t.Fatalf("Files(repository) = %v: %s is missing, so the check would not look at it", files, want)
		}
	}
	problems, err := brokenLinks("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func TestBrokenLinks_ReportsMissingFilesAndAnchors(t *testing.T) {
	root := t.TempDir()
	write(t, root, "README.md", strings.Join([]string{
		"# Project",
		"## Quick start",
		"[ok](docs/a.md) [ok](docs/a.md#reading-imsproxy-check) [ok](#quick-start) [ok](docs/)",
		"[ok](https://example.com/x#y) [ok](main.go#L3-L5) [ok](docs/#the-docs)",
		"[missing file](docs/nope.md)",
		"[missing anchor](docs/a.md#no-such-heading)",
		"[missing local anchor](#quick-stop)",
		"[outside](../x.md)",
		"[not a line](main.go#top)",
		"`[in code](nope.md)`",
		"```",
		"[in a fence](nope.md)",
		"```",
	}, "\n"))
	write(t, root, "docs/a.md", "# A\n\n## Reading `imsproxy check`\n")
	write(t, root, "docs/README.md", "# The docs\n")
	write(t, root, "main.go", "package main\n")
	write(t, root, "node_modules/pkg/README.md", "[ignored](nope.md)\n")

	got, err := brokenLinks(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"README.md:5: docs/nope.md: no such file or directory docs/nope.md",
		"README.md:6: docs/a.md#no-such-heading: no heading or anchor #no-such-heading in docs/a.md",
		"README.md:7: #quick-stop: no heading or anchor #quick-stop in this file",
		"README.md:8: ../x.md: points outside the repository",
		"README.md:9: main.go#top: #top is not a line reference (#L10 or #L10-L20) of main.go",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("brokenLinks =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSlug_FollowsGitHub(t *testing.T) {
	for _, c := range []struct{ heading, want string }{
		{"Quick start", "quick-start"},
		{"Reading `imsproxy check`", "reading-imsproxy-check"},
		{"Under load: `wrk` against a local upstream", "under-load-wrk-against-a-local-upstream"},
		{"License, security and contributing", "license-security-and-contributing"},
		{"Signals: reload and shutdown", "signals-reload-and-shutdown"},
		{"What's new?", "whats-new"},
		{"`CACHE_SIZE` and **bounds**", "cache_size-and-bounds"},
		{"AEM routes (6.5 too)", "aem-routes-65-too"},
		{"See [the docs](docs/README.md)", "see-the-docs"},
		{"hit ÷ uncached", "hit--uncached"},
		{"Élan vital", "élan-vital"},
	} {
		if got := slug(c.heading); got != c.want {
			t.Errorf("slug(%q) = %q, want %q", c.heading, got, c.want)
		}
	}
}

func TestAnchors_NumbersRepeatsAndSkipsCode(t *testing.T) {
	md := "# Title ##\n## Metrics\n### Metrics\n```sh\n# not a heading\n```\n<a id=\"custom\"></a>\n#hashtag\n"
	got := anchors([]byte(md))
	want := map[string]bool{"title": true, "metrics": true, "metrics-1": true, "custom": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("anchors = %v, want %v", got, want)
	}
}

func TestLinks_FindsEveryFormOutsideCode(t *testing.T) {
	md := strings.Join([]string{
		"See [a](a.md), ![img](<i m g.png>) and [b](b.md \"title\").",
		"`[code](x.md)` and ``[more `code`](y.md)``",
		"  ```json",
		"  [fenced](z.md)",
		"  ```",
		"[ref]: ref.md",
		`<a href="c.md#x">c</a>`,
		"a span `that crosses",
		"a line [no](w.md)` ends here",
	}, "\n")
	var got []string
	for _, l := range links([]byte(md)) {
		got = append(got, l.target+"@"+string(rune('0'+l.line)))
	}
	want := []string{"a.md@1", "i m g.png@1", "b.md@1", "ref.md@6", "c.md#x@7"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("links = %v, want %v", got, want)
	}
}

// write creates root/name with content, and its directories.
func write(t *testing.T, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The repository spells the word one way, as Adobe's APIs do (License,
// license_state): operators search the docs, alerts and logs for it.
// The callers-file test spells it otherwise on purpose: a typo of a field.
func TestRepository_OneSpellingOfLicense(t *testing.T) {
	root := "../.."
	skip := map[string]bool{".git": true, "node_modules": true, "testdata": true}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skip[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		switch filepath.Ext(path) {
		case ".go", ".md", ".yaml", ".yml", ".json", ".js", ".mjs", ".sh", "":
		default:
			return nil
		}
		if rel == "config/callers_test.go" || rel == "LICENSE" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		if i := strings.Index(strings.ToLower(string(b)), "licen"+"ce"); i >= 0 {
			line := strings.Count(string(b[:i]), "\n") + 1
			t.Errorf(`%s:%d: "licen`+`ce": the repository writes "license"`, rel, line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d files checked: the walk missed the repository", checked)
	}
}
