package aemlinks

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
)

// The fuzz targets check the rewrite against an oracle that shares none of
// its code: encoding/json reads both texts, and a URL is recognised by
// comparing it with every spelling of the upstream's origin.

// oracleUpstream is an upstream as the oracle knows it: every way its
// scheme, host and port may be written (compared ignoring ASCII case), and
// the path under which the route forwards.
type oracleUpstream struct {
	url         string
	authorities []string
	path        string
}

var oracleUpstreams = []oracleUpstream{
	{"https://author.example.com", []string{"https://author.example.com", "https://author.example.com:", "https://author.example.com:443"}, ""},
	{"http://127.0.0.1:4502", []string{"http://127.0.0.1:4502"}, ""},
	{"https://h.example/aem/", []string{"https://h.example", "https://h.example:", "https://h.example:443"}, "/aem"},
}

// rewrite is what a string must become: base and the rest when it starts
// with a spelling of the origin followed by "/", "?", "#" or its end.
func (u oracleUpstream) rewrite(s string) (string, bool) {
	for _, a := range u.authorities {
		if len(s) < len(a) || asciiLower(s[:len(a)]) != a {
			continue
		}
		rest, ok := strings.CutPrefix(s[len(a):], u.path)
		if ok && (rest == "" || rest[0] == '/' || rest[0] == '?' || rest[0] == '#') {
			return testBase + rest, true
		}
	}
	return s, false
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// token is one JSON token as encoding/json reads it, with the bytes that
// precede it (white space, a comma or a colon) and, for a string, its
// literal as written.
type token struct {
	before string // for a string: up to its opening quote
	value  any
	raw    string // a string's literal
	key    bool
}

func tokens(t *testing.T, body []byte) (toks []token, trailing string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type level struct{ object, wantKey bool }
	var stack []level
	prev := 0
	for {
		v, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return toks, string(body[prev:])
		}
		if err != nil {
			t.Fatalf("encoding/json cannot read a text json.Valid accepts: %v", err)
		}
		end := int(dec.InputOffset())
		seg := string(body[prev:end])
		prev = end
		tok := token{before: seg, value: v}
		top := len(stack) - 1
		switch v := v.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				if top >= 0 && stack[top].object {
					stack[top].wantKey = true // after this value
				}
				stack = append(stack, level{object: v == '{', wantKey: v == '{'})
			} else {
				stack = stack[:top]
			}
		case string:
			q := strings.IndexByte(seg, '"')
			tok.before, tok.raw = seg[:q], seg[q:]
			if top >= 0 && stack[top].object {
				tok.key = stack[top].wantKey
				stack[top].wantKey = !tok.key
			}
		default:
			if top >= 0 && stack[top].object {
				stack[top].wantKey = true
			}
		}
		toks = append(toks, tok)
	}
}

// checkRewrite checks out, the rewrite of in (nil: unchanged), against the
// oracle.
func checkRewrite(t *testing.T, u oracleUpstream, in, out []byte) {
	t.Helper()
	if !json.Valid(in) {
		if out != nil {
			t.Fatalf("%s: rewrote a text that is not JSON:\n%q\nto\n%q", u.url, in, out)
		}
		return
	}
	if out == nil {
		out = in
	}
	if !json.Valid(out) {
		t.Fatalf("%s: the rewrite of valid JSON is not JSON:\n%q\nto\n%q", u.url, in, out)
	}
	a, aTrail := tokens(t, in)
	b, bTrail := tokens(t, out)
	if len(a) != len(b) || aTrail != bTrail {
		t.Fatalf("%s: %d tokens became %d (trailing %q, %q)", u.url, len(a), len(b), aTrail, bTrail)
	}
	rewrites := 0
	for i := range a {
		x, y := a[i], b[i]
		if x.before != y.before || x.key != y.key {
			t.Fatalf("%s: token %d: the bytes before it changed: %q to %q", u.url, i, x.before, y.before)
		}
		s, isString := x.value.(string)
		if !isString {
			if x.value != y.value {
				t.Fatalf("%s: token %d: %v became %v", u.url, i, x.value, y.value)
			}
			continue
		}
		want, rewritten := u.rewrite(s)
		if x.key {
			rewritten = false // keys are not values: never rewritten
		}
		if !rewritten {
			if x.raw != y.raw {
				t.Fatalf("%s: string %s changed to %s", u.url, x.raw, y.raw)
			}
			continue
		}
		rewrites++
		if y.value != want {
			t.Fatalf("%s: string %s became %s (%q), want %q", u.url, x.raw, y.raw, y.value, want)
		}
	}
	if (rewrites > 0) != !bytes.Equal(in, out) {
		t.Fatalf("%s: %d strings to rewrite, and the text changed: %v", u.url, rewrites, !bytes.Equal(in, out))
	}
}

// FuzzRewriteJSON: for any body, the rewrite is JSON exactly when the
// body is (else it is the body itself); it is the same text but for the
// string values that start with the origin, which start with the proxy's
// address instead; and rewriting twice is rewriting once. Seeds are in
// testdata/fuzz/FuzzRewriteJSON.
func FuzzRewriteJSON(f *testing.F) {
	f.Add([]byte(`{"links":[{"rel":["self"],"href":"https://author.example.com/api/assets.json"}]}`))
	f.Add([]byte(`["https:\/\/h.example\/aem\/x","http://127.0.0.1:4502?x"]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, u := range oracleUpstreams {
			o := mustOrigin(t, u.url)
			out := rewriteJSON(o, body, testBase)
			checkRewrite(t, u, body, out)
			if out != nil {
				if again := rewriteJSON(o, out, testBase); again != nil {
					t.Fatalf("%s: a second rewrite changed\n%q\nto\n%q", u.url, out, again)
				}
			}
		}
	})
}

// FuzzRewriteURL: a header's URL is rewritten exactly when the oracle says
// so, to what it says. Seeds are in testdata/fuzz/FuzzRewriteURL.
func FuzzRewriteURL(f *testing.F) {
	f.Add("https://author.example.com:443/api/assets.json")
	f.Add("HTTP://127.0.0.1:4502#x")
	f.Fuzz(func(t *testing.T, s string) {
		for _, u := range oracleUpstreams {
			want, wantChanged := u.rewrite(s)
			got, changed := mustOrigin(t, u.url).rewriteURL(s, testBase)
			if got != want || changed != wantChanged {
				t.Fatalf("%s: rewriteURL(%q) = %q, %v; want %q, %v", u.url, s, got, changed, want, wantChanged)
			}
		}
	})
}

// FuzzRewriteLink: a Link header value (RFC 8288) keeps everything but its
// link targets, the URI references between "<" and ">" outside quoted
// parameter values, each rewritten exactly as the URL oracle says; a value
// with an unclosed "<" is left whole. Seeds are in
// testdata/fuzz/FuzzRewriteLink.
func FuzzRewriteLink(f *testing.F) {
	f.Add(`<https://author.example.com/api/assets.json?offset=20>; rel="next", <https://cdn.example.net/x.css>; rel=preload`)
	f.Add(`<http://127.0.0.1:4502/a>; title="<http://127.0.0.1:4502/b>", <https://h.example/aem/c>; rel="a\"b"`)
	f.Add(`<https://author.example.com/a`)
	f.Fuzz(func(t *testing.T, v string) {
		for _, u := range oracleUpstreams {
			want, wantChanged := linkOracle(u, v)
			got, changed := mustOrigin(t, u.url).rewriteLink(v, testBase)
			if got != want || changed != wantChanged {
				t.Fatalf("%s: rewriteLink(%q) = %q, %v; want %q, %v", u.url, v, got, changed, want, wantChanged)
			}
		}
	})
}

// linkOracle splits v into link targets and the text around them with a
// regular expression of its own, and rewrites each target with the URL
// oracle.
func linkOracle(u oracleUpstream, v string) (string, bool) {
	// A token is a quoted string (escapes included, possibly unclosed), a
	// link target, an unclosed "<", or any other run of text.
	tokens := linkTokens.FindAllString(v, -1)
	if strings.Join(tokens, "") != v {
		panic("linkTokens does not cover " + v)
	}
	var b strings.Builder
	changed := false
	for _, tok := range tokens {
		switch {
		case tok[0] == '<' && !strings.HasSuffix(tok, ">"):
			return v, false // an unclosed target: the value is left whole
		case tok[0] == '<':
			target, ok := u.rewrite(tok[1 : len(tok)-1])
			changed = changed || ok
			b.WriteString("<" + target + ">")
		default:
			b.WriteString(tok)
		}
	}
	if !changed {
		return v, false
	}
	return b.String(), true
}

var linkTokens = regexp.MustCompile(`(?s)"(?:\\.|[^"\\])*(?:"|\\?$)|<[^>]*>|<[^>]*$|[^"<]+`)
