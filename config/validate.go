package config

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// routeNameRE is what a route name may look like once lower-cased: it
// becomes part of variable names (IMSPROXY_<NAME>_...), so letters, digits
// and single underscores between them.
var routeNameRE = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// validRouteName reports whether name (lower case) can name a route.
func validRouteName(name string) bool { return routeNameRE.MatchString(name) }

// splitList splits a comma list, trims each entry and drops empty ones, so
// "a, b," and "a,b" mean the same (Adobe's own files put no space after the
// comma, operators often do).
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// splitScopes splits a list of OAuth scopes on commas, as Adobe writes
// them, and on white space, as OAuth's own scope parameter does: no scope
// name contains either.
func splitScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// parseHTTPURL parses an absolute http or https URL. The message does not
// repeat the value: a URL may carry a password in its user information.
func parseHTTPURL(s string) (*url.URL, string) {
	u, err := url.Parse(strings.TrimSpace(s))
	switch {
	case err != nil:
		return nil, "is not a URL: want an absolute http(s) URL such as https://example.com"
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "must be an absolute http or https URL (with the scheme, e.g. https://example.com)"
	case u.Host == "" || u.Hostname() == "":
		return nil, "must be an absolute http or https URL with a host"
	case u.Fragment != "" || u.RawQuery != "":
		return nil, "must not have a query or a fragment"
	case u.User != nil:
		// It would be logged with the URL, and the proxy never sends it.
		return nil, "must not carry a user name or password: the proxy authenticates with the route's credentials"
	}
	return u, ""
}

// imsBase validates an IMS base URL and returns it without trailing slash,
// the form the token endpoints are appended to ("https://ims-na1.adobelogin.com/"
// as Adobe's own pages spell it becomes "https://ims-na1.adobelogin.com").
func imsBase(s string) (string, string) {
	u, msg := parseHTTPURL(s)
	if u == nil {
		return "", msg
	}
	return strings.TrimRight(u.String(), "/"), ""
}

// checkListen validates a host:port listen address and returns its host.
func checkListen(addr string) (host, port, msg string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", "must be host:port, e.g. 127.0.0.1:8080"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", "must be host:port with a port number from 0 to 65535"
	}
	if msg := localHost(host); msg != "" {
		return "", "", msg
	}
	return host, port, ""
}

// localHost reports why this machine cannot listen on host: an IP address
// it does not have, or a name that does not resolve. (Whether the port is
// free is not judged: a running proxy holds its own ports while
// `imsproxy check` runs.)
func localHost(host string) string {
	ip := net.ParseIP(host)
	switch {
	case host == "" || strings.EqualFold(host, "localhost") || ip != nil && (ip.IsUnspecified() || ip.IsLoopback()):
		return ""
	case ip == nil:
		if _, err := net.LookupHost(host); err != nil {
			return "names host " + host + ", which does not resolve here: use an IP address of this machine, or 0.0.0.0"
		}
		return ""
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "" // cannot tell: let the listener say
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return ""
		}
	}
	return host + " is not an address of this machine: use one of its addresses, or 0.0.0.0 for all of them"
}

// LoopbackAddress reports whether a listener on addr (host:port) is
// reachable from this machine only.
func LoopbackAddress(addr string) bool {
	host, _, msg := checkListen(addr)
	return msg == "" && isLoopback(host)
}

// isLoopback reports whether a listener on host is reachable from this
// machine only. An empty host and 0.0.0.0 mean every interface; a host name
// other than localhost cannot be judged without resolving it, so it is not
// trusted either.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
