package stock

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"
)

// A license request is read strictly: wherever Stock, or a server in front
// of it, could read the same request differently from the guard — another
// path, another content_id — the guard and the audit would check one asset
// while another is licensed. So what some server reads as a license path
// or a license parameter, and the guard does not read the same way, is
// refused.

// licenseRequest is what a licensing call asks for.
type licenseRequest struct {
	ContentID string // canonical decimal digits
	License   string // "" when absent
	Again     bool   // license_again=true: license (and pay) again
}

// licenseParams are the parameters of a license request, as the guard
// reads them; skeletons are what other spellings of them reduce to.
var (
	licenseParams = []string{"content_id", "license", "license_again"}
	skeletons     = []string{"contentid", "license", "licenseagain"}
)

// parseLicenseQuery reads the query of a Content/License call. It is
// strict where Stock and the proxy could read the same query differently:
// one content_id, in canonical digits (the editorial check must look up
// the asset Stock will license); at most one license and license_again;
// no other spelling of those names — content_id[], content.id or
// "content id" (PHP reads both as content_id), Content_ID (a server that
// ignores case), Content_İD or contentid — which some server would read
// as one of them.
func parseLicenseQuery(rawQuery string) (licenseRequest, error) {
	var lr licenseRequest
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return lr, errors.New("the query does not parse; send content_id and license as ordinary query parameters")
	}
	for k := range q {
		i := indexOf(skeletons, skeleton(k))
		if base, _, ok := strings.Cut(k, "["); ok && i < 0 {
			i = indexOf(skeletons, skeleton(base)) // PHP: content_id[0] is content_id, an array
		}
		if i >= 0 && k != licenseParams[i] {
			return lr, errors.New("send " + licenseParams[i] + " under that name only, once, as a plain value: a parameter such as " +
				licenseParams[i] + "[], Content_ID or content.id is read as it by some servers")
		}
	}
	ids := q["content_id"]
	if len(ids) != 1 || !canonicalID(ids[0]) {
		return lr, errors.New("send exactly one content_id: the asset's numeric id, without leading zeros")
	}
	lr.ContentID = ids[0]
	switch lics := q["license"]; {
	case len(lics) > 1:
		return lr, errors.New("send license at most once")
	case len(lics) == 1:
		if !licenseName(lics[0]) {
			return lr, errors.New("license must be a license type such as Standard, Extended or Video_HD")
		}
		lr.License = lics[0]
	}
	switch again := q["license_again"]; {
	case len(again) > 1:
		return lr, errors.New("send license_again at most once")
	case len(again) == 1:
		lr.Again = again[0] == "true" || again[0] == "1"
	}
	return lr, nil
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// skeleton reduces a parameter name to what the most lenient server could
// take it for: percent-decoded as often as it decodes, every letter in
// lower case by Unicode case folding (the long s, ſ, folds to s; the
// Kelvin sign to k), anything but ASCII letters and digits dropped
// (PHP turns "." and " " into "_", and "[…]" makes an array).
func skeleton(name string) string {
	for range 3 {
		if !strings.Contains(name, "%") {
			break
		}
		u, err := url.QueryUnescape(name)
		if err != nil {
			break
		}
		name = u
	}
	var b strings.Builder
	for _, r := range name {
		if c, ok := asciiFold(r); ok {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// asciiFold returns the lower-case ASCII letter or digit r becomes in
// any server's hands: lowered, uppered (the dotless ı is I) or folded.
func asciiFold(r rune) (rune, bool) {
	if c, ok := asciiLower(unicode.ToLower(r)); ok {
		return c, true
	}
	if c, ok := asciiLower(unicode.ToUpper(r)); ok {
		return c, true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if c, ok := asciiLower(f); ok {
			return c, true
		}
	}
	return 0, false
}

func asciiLower(c rune) (rune, bool) {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return c, true
	case c >= 'A' && c <= 'Z':
		return c + ('a' - 'A'), true
	}
	return 0, false
}

// canonicalID accepts 1 to 18 decimal digits without a leading zero.
func canonicalID(s string) bool {
	if s == "" || len(s) > 18 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// licenseName accepts the shape of Stock's license types (Standard,
// Video_HD, Standard_M, Internal_Use...): at most 64 letters, digits,
// underscores and hyphens.
func licenseName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkLicenseBody refuses a body that could carry parameters the guard
// does not read: a form (the documented body is JSON license references,
// and a form could carry a second content_id), or a Content-Type that does
// not parse cleanly, which a lenient server may still take for a form.
func checkLicenseBody(r *http.Request) error {
	cts := r.Header["Content-Type"]
	if len(cts) == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(cts[0])
	switch {
	case len(cts) > 1 || err != nil:
		return errors.New("send at most one Content-Type, well formed, such as application/json")
	case strings.Contains(mt, "form") || strings.HasPrefix(mt, "multipart/"):
		return errors.New("send license references as a JSON body ({\"cce_agency\":[...]}), not a form")
	}
	return nil
}

// scanPath reads a path (decoded, as net/http gives it) once, as every
// request on a stock route needs. It reports whether the path may be a
// licensing, license-information or download path in a spelling classify
// recognises (a path without "%", "\", "icens", "info" or "download" in
// any case cannot be), and whether it is ambiguous: one that servers read
// differently, with a ";" (path parameters, which Tomcat and others
// strip), a character outside ASCII (which a server may fold to an ASCII
// letter: Licenſe), or beginning with "//" or "/\" (a network-path
// reference, whose first segment a server may take for a host). A second
// level of percent-encoding is looked through.
func scanPath(path string) (special, ambiguous bool) {
	ambiguous = len(path) >= 2 && path[0] == '/' && (path[1] == '/' || path[1] == '\\')
	escaped := false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c >= 0x80 || c == ';':
			ambiguous = true
		case c == '%':
			escaped, special = true, true
		case c == '\\':
			special = true
		case c|0x20 == 'i':
			special = special || hasPrefixFold(path[i:], "icens") || hasPrefixFold(path[i:], "info")
		case c|0x20 == 'd':
			special = special || hasPrefixFold(path[i:], "download")
		}
	}
	if escaped && !ambiguous {
		if u, err := url.PathUnescape(path); err == nil {
			_, ambiguous = scanPath(u)
		}
	}
	return special, ambiguous
}

// hasPrefixFold reports whether s begins with the lower-case ASCII
// prefix, in any ASCII case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if s[i]|0x20 != prefix[i] {
			return false
		}
	}
	return true
}
