package testutil

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode"
)

// LenientLicense is a license as the most lenient server in front of Stock
// could read a request: the asset it would license and the license type.
type LenientLicense struct {
	ContentID string // canonical decimal
	License   string
}

// ReadLenientLicense reads a request (its request target as sent, its
// Content-Type and body) the way the most forgiving server could, and
// reports whether it is a license request and of what. It is the oracle
// of the license guard's tests, written apart from the guard on purpose:
// it reads
//
//   - the path percent-decoded as often as it decodes, backslashes as
//     slashes, without ";" path parameters, every character folded to the
//     ASCII letter it may stand for (Licenſe), dot segments resolved, and
//     "//host/…" also as a network-path reference (the first segment a
//     host);
//   - parameter names as PHP does ("." and " " become "_", "name[…]" is
//     name), in any case, with ";" as well as "&" between parameters;
//   - the body's parameters too when the Content-Type mentions a form,
//     however malformed, after the query's (PHP's $_REQUEST);
//   - the last value of a repeated parameter, and a content_id's leading
//     digits as PHP's intval does.
func ReadLenientLicense(requestURI, contentType string, body []byte) (LenientLicense, bool) {
	rawPath, rawQuery, _ := strings.Cut(requestURI, "?")
	if !lenientLicensePath(rawPath) {
		return LenientLicense{}, false
	}
	params := map[string]string{}
	lenientParams(params, rawQuery)
	if strings.Contains(strings.ToLower(contentType), "form") {
		lenientParams(params, string(body))
	}
	id, ok := intval(params["content_id"])
	if !ok {
		return LenientLicense{}, false // Stock would refuse it
	}
	return LenientLicense{ContentID: id, License: params["license"]}, true
}

const lenientLicensePrefix = "/rest/libraries/1/content/license"

func lenientLicensePath(raw string) bool {
	p := raw
	for range 4 {
		u, err := url.PathUnescape(p)
		if err != nil || u == p {
			break
		}
		p = u
	}
	p = strings.ReplaceAll(p, `\`, "/")
	segments := strings.Split(p, "/")
	for i, s := range segments {
		s, _, _ = strings.Cut(s, ";")
		segments[i] = foldASCII(s)
	}
	readings := []string{strings.Join(segments, "/")}
	if len(segments) > 3 && segments[0] == "" && segments[1] == "" {
		readings = append(readings, "/"+strings.Join(segments[3:], "/")) // //host/rest/…
	}
	for _, r := range readings {
		if strings.HasPrefix(path.Clean("/"+r), lenientLicensePrefix) || strings.HasPrefix(r, lenientLicensePrefix) {
			return true
		}
	}
	return false
}

// lenientParams adds the parameters of a query or form to params, a later
// value replacing an earlier one.
func lenientParams(params map[string]string, raw string) {
	for _, pair := range strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' }) {
		name, value, _ := strings.Cut(pair, "=")
		params[phpName(lenientUnescape(name))] = lenientUnescape(value)
	}
}

// lenientUnescape decodes '+' and %XX, keeping malformed escapes as they
// are, as PHP's urldecode does.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// phpName is the variable a parameter name fills in PHP, in lower case
// (for the servers that ignore case): leading spaces dropped, "name[…]"
// is name, and "." and " " (and a "[" never closed) become "_".
func phpName(name string) string {
	name = strings.TrimLeft(name, " ")
	if i := strings.IndexByte(name, '['); i > 0 && strings.Contains(name[i:], "]") {
		name = name[:i]
	}
	name = strings.NewReplacer(".", "_", " ", "_", "[", "_").Replace(name)
	return foldASCII(name)
}

// foldASCII lower-cases s, turning each character that case mapping or
// folding relates to an ASCII letter into that letter (ſ is s, K is k, İ
// is i).
func foldASCII(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(asciiOf(r))
	}
	return b.String()
}

func asciiOf(r rune) rune {
	candidates := []rune{r, unicode.ToLower(r), unicode.ToUpper(r)}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		candidates = append(candidates, f)
	}
	for _, c := range candidates {
		if c < 0x80 {
			return unicode.ToLower(c)
		}
	}
	return r
}

// intval reads a content_id as PHP's intval: spaces, a sign, then the
// leading digits. A positive id is returned in canonical decimal.
func intval(s string) (string, bool) {
	s = strings.TrimLeft(s, " \t\n\r\v\f")
	s = strings.TrimPrefix(s, "+")
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, err := strconv.ParseUint(s[:end], 10, 63)
	if err != nil || n == 0 {
		return "", false
	}
	return strconv.FormatUint(n, 10), true
}
