package aemlinks

import (
	"net"
	"net/url"
	"strings"
)

// origin recognises the absolute URLs of one upstream: its scheme and host
// (compared without regard to ASCII case), its port (a default port is the
// same as none), and the path the route forwards under, when it has one.
type origin struct {
	scheme string // lower case
	host   string // lower case; an IPv6 literal keeps its brackets
	// port is the upstream's port when it is not the scheme's default.
	// Otherwise "", and a URL may spell the default port as none, an empty
	// one (RFC 3986 §3.2.3) or its number.
	port        string
	defaultPort string
	path        string // the upstream's base path, without its final slash

	// window is how many decoded bytes a match can need: the longest
	// spelling of the origin and the byte after it.
	window int
}

func newOrigin(u *url.URL) *origin {
	o := &origin{scheme: strings.ToLower(u.Scheme), path: strings.TrimRight(u.EscapedPath(), "/")}
	o.host = strings.ToLower(u.Host)
	if h, p, err := net.SplitHostPort(u.Host); err == nil {
		o.host, o.port = strings.ToLower(h), p
		if strings.Contains(h, ":") {
			o.host = "[" + o.host + "]"
		}
	}
	switch o.scheme {
	case "https":
		o.defaultPort = "443"
	case "http":
		o.defaultPort = "80"
	}
	if o.port == o.defaultPort {
		o.port = ""
	}
	o.window = len(o.scheme) + len("://") + len(o.host) + 1 + max(len(o.port), len(o.defaultPort)) + len(o.path) + 1
	return o
}

// match returns the length of the origin at the start of d, or -1 when d
// does not start with it followed by "/", "?", "#" or its end. complete
// says d is the whole value: when it is a prefix, a match must be followed
// by one of those bytes within d.
func match[T string | []byte](o *origin, d T, complete bool) int {
	i := len(o.scheme)
	if len(d) < i+3 || !equalFold(d[:i], o.scheme) || string(d[i:i+3]) != "://" {
		return -1
	}
	i += 3
	if len(d) < i+len(o.host) || !equalFold(d[i:i+len(o.host)], o.host) {
		return -1
	}
	i += len(o.host)
	portOK := o.port == "" // no port written: the default
	if i < len(d) && d[i] == ':' {
		j := i + 1
		for j < len(d) && '0' <= d[j] && d[j] <= '9' {
			j++
		}
		p := d[i+1 : j]
		portOK = string(p) == o.port || o.port == "" && (len(p) == 0 || string(p) == o.defaultPort)
		i = j
	}
	if !portOK || len(d) < i+len(o.path) || string(d[i:i+len(o.path)]) != o.path {
		return -1
	}
	i += len(o.path)
	if i == len(d) {
		if complete {
			return i
		}
		return -1
	}
	if c := d[i]; c == '/' || c == '?' || c == '#' {
		return i
	}
	return -1
}

// equalFold compares ASCII case-insensitively; any other byte must be
// equal (a URL's scheme and host are ASCII, and "K" is not the Kelvin sign).
func equalFold[T string | []byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(b) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// rewriteURL returns s with the origin at its start replaced by base, and
// whether it was there.
func (o *origin) rewriteURL(s, base string) (string, bool) {
	n := match(o, s, true)
	if n < 0 {
		return s, false
	}
	return base + s[n:], true
}

// rewriteLink rewrites the targets of a Link header value (RFC 8288): the
// URI references between "<" and ">". Parameters are left alone.
func (o *origin) rewriteLink(v, base string) (string, bool) {
	var b strings.Builder
	last, changed := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"': // a quoted parameter value may hold "<"
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' {
					i++
				}
			}
		case '<':
			end := strings.IndexByte(v[i+1:], '>')
			if end < 0 {
				return v, false
			}
			target := v[i+1 : i+1+end]
			if n := match(o, target, true); n >= 0 {
				b.WriteString(v[last : i+1])
				b.WriteString(base)
				last, changed = i+1+n, true
			}
			i += end + 1
		}
	}
	if !changed {
		return v, false
	}
	b.WriteString(v[last:])
	return b.String(), true
}
