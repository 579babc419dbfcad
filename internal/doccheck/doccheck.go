// Package doccheck reads the repository's Markdown for the tests that keep
// the documentation honest: which Markdown files there are, the links in
// them, and the anchors GitHub gives their headings. It understands the
// Markdown this repository writes (ATX headings, fenced code, inline links
// and reference definitions), not all of CommonMark.
package doccheck

import (
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Files returns the Markdown files under root, as slash-separated paths
// relative to root, sorted. Hidden directories (.git), node_modules and
// testdata hold no documentation of the project and are skipped.
func Files(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// link is the target of a link in a Markdown file and the line it is on.
type link struct {
	target string
	line   int
}

var (
	// inlineLinkRE matches [text](target) and [text](target "title"), and
	// so images too; the target may be written <like this>.
	inlineLinkRE = regexp.MustCompile(`\]\(\s*(<[^>\n]*>|[^()\s]+)(?:\s+"[^"\n]*")?\s*\)`)
	// refDefRE matches a reference definition: [name]: target.
	refDefRE = regexp.MustCompile(`(?m)^ {0,3}\[[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)`)
	// hrefRE matches the target of an HTML link.
	hrefRE = regexp.MustCompile(`\bhref="([^"]*)"`)
	// headingRE matches an ATX heading and captures its text.
	headingRE = regexp.MustCompile(`^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	// htmlAnchorRE matches an anchor set by HTML: id="x" or name="x".
	htmlAnchorRE = regexp.MustCompile(`\b(?:id|name)="([^"]+)"`)
	// schemeRE matches a target that names its scheme: an external link.
	schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

// links returns the link targets of md outside code: inline links,
// reference definitions and HTML hrefs.
func links(md []byte) []link {
	text := prose(md)
	var out []link
	for _, re := range []*regexp.Regexp{inlineLinkRE, refDefRE, hrefRE} {
		for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
			target := strings.TrimSuffix(strings.TrimPrefix(text[m[2]:m[3]], "<"), ">")
			out = append(out, link{target: target, line: 1 + strings.Count(text[:m[2]], "\n")})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].line < out[j].line })
	return out
}

// prose returns md with the content of fenced code blocks and code spans
// blanked out, line breaks kept, so that what looks like a link in code is
// not taken for one and line numbers stay right.
func prose(md []byte) string {
	lines := strings.Split(string(md), "\n")
	fence := ""
	for i, l := range lines {
		t := strings.TrimLeft(l, " ")
		if fence != "" {
			if strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]+" \t") == "" {
				fence = ""
			}
			lines[i] = ""
			continue
		}
		if f := fenceOf(t); f != "" {
			fence = f
			lines[i] = ""
		}
	}
	return blankCodeSpans(strings.Join(lines, "\n"))
}

// fenceOf returns the fence a line opens (``` or ~~~, or longer), or "".
func fenceOf(line string) string {
	for _, c := range "`~" {
		n := 0
		for n < len(line) && rune(line[n]) == c {
			n++
		}
		if n >= 3 {
			return line[:n]
		}
	}
	return ""
}

// blankCodeSpans replaces the content of every code span (a run of
// backticks up to the next run of the same length) with spaces.
func blankCodeSpans(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(b) && b[i+n] == '`' {
			n++
		}
		end := closingRun(b, i+n, n)
		if end < 0 {
			i += n
			continue
		}
		for j := i + n; j < end; j++ {
			if b[j] != '\n' {
				b[j] = ' '
			}
		}
		i = end + n
	}
	return string(b)
}

// closingRun returns where the next run of exactly n backticks from i
// starts, or -1.
func closingRun(b []byte, i, n int) int {
	for i < len(b) {
		if b[i] != '`' {
			i++
			continue
		}
		m := 0
		for i+m < len(b) && b[i+m] == '`' {
			m++
		}
		if m == n {
			return i
		}
		i += m
	}
	return -1
}

// anchors returns the fragments that lead to a place in md on GitHub: the
// slug of every heading, numbered -1, -2… when repeated, and HTML ids.
func anchors(md []byte) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	lines := strings.Split(string(md), "\n")
	fence := ""
	for _, l := range lines {
		t := strings.TrimLeft(l, " ")
		if fence != "" {
			if strings.HasPrefix(t, fence) && strings.Trim(t, fence[:1]+" \t") == "" {
				fence = ""
			}
			continue
		}
		if fence = fenceOf(t); fence != "" {
			continue
		}
		for _, m := range htmlAnchorRE.FindAllStringSubmatch(l, -1) {
			out[m[1]] = true
		}
		m := headingRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

var (
	// mdLinkRE matches a link or image in a heading, to keep its text.
	mdLinkRE = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	// tagRE matches an HTML tag, which leaves no text.
	tagRE = regexp.MustCompile(`<[^>]+>`)
)

// slug is GitHub's anchor for a heading (github-slugger): the heading's
// text in lower case, without punctuation and symbols but for - and _,
// spaces turned into hyphens.
func slug(heading string) string {
	text := mdLinkRE.ReplaceAllString(heading, "$1")
	text = tagRE.ReplaceAllString(text, "")
	text = strings.NewReplacer("`", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// lineRefRE matches GitHub's fragment for lines of a source file.
var lineRefRE = regexp.MustCompile(`^L\d+(-L\d+)?$`)

// brokenLinks returns a sentence for every relative link in the Markdown
// files under root that leads nowhere: a file that does not exist, or a
// fragment that is no anchor of the Markdown file it points into.
func brokenLinks(root string) ([]string, error) {
	files, err := Files(root)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, f := range files {
		md, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		for _, l := range links(md) {
			if msg := resolve(root, f, md, l.target); msg != "" {
				problems = append(problems, f+":"+strconv.Itoa(l.line)+": "+l.target+": "+msg)
			}
		}
	}
	return problems, nil
}

// resolve checks one link target of file (whose content is md) and says
// what is wrong with it, or "".
func resolve(root, file string, md []byte, target string) string {
	if schemeRE.MatchString(target) || strings.HasPrefix(target, "//") {
		return "" // external: not checked, the tests have no network
	}
	p, frag, _ := strings.Cut(target, "#")
	if p == "" {
		if !anchors(md)[frag] {
			return "no heading or anchor #" + frag + " in this file"
		}
		return ""
	}
	unescaped, err := url.PathUnescape(p)
	if err != nil {
		return "not a valid path"
	}
	rel := path.Join(path.Dir(file), unescaped)
	if strings.HasPrefix(unescaped, "/") {
		rel = path.Clean(strings.TrimPrefix(unescaped, "/"))
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "points outside the repository"
	}
	full := filepath.Join(root, filepath.FromSlash(rel))
	info, err := os.Stat(full)
	if err != nil {
		return "no such file or directory " + rel
	}
	if frag == "" {
		return ""
	}
	if info.IsDir() {
		// GitHub shows a directory's README.md below its listing.
		full = filepath.Join(full, "README.md")
	} else if !strings.HasSuffix(full, ".md") {
		if lineRefRE.MatchString(frag) {
			return ""
		}
		return "#" + frag + " is not a line reference (#L10 or #L10-L20) of " + rel
	}
	target2, err := os.ReadFile(full)
	if err != nil {
		return "no README.md in " + rel + " for #" + frag
	}
	if !anchors(target2)[frag] {
		return "no heading or anchor #" + frag + " in " + rel
	}
	return ""
}
