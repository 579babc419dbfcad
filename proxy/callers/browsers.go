package callers

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/imsproxy/imsproxy/proxy/route"
)

// Browsers is what the stage checks of requests that a web browser may
// send on a page's behalf. A page on any site can make a browser send
// requests to a proxy on the user's machine — an <img> or a form needs no
// permission — and the proxy would add the organisation's credentials to
// them; a page behind a name that resolves to 127.0.0.1 (DNS rebinding)
// can even read the answers. Browsers say where a request comes from in
// Sec-Fetch-Site and Origin; rebinding shows in the Host header.
type Browsers struct {
	// Origins are the origins that may call (IMSPROXY_ALLOWED_ORIGINS),
	// as browsers write them.
	Origins []string
	// CheckHost requires Host to name this machine: a listener without a
	// callers file, where no key tells a caller from a page.
	CheckHost bool
	// Addresses accepts any IP address as Host too: a listener off
	// loopback is called by the machine's addresses (a kubelet's probe by
	// the pod's), and a rebinding page can only send a name.
	Addresses bool
	// Hosts are the other Host names accepted (IMSPROXY_ALLOWED_HOSTS),
	// in lower case.
	Hosts []string
}

// Refusal is why a request is refused: the status, code and message of
// the answer.
type Refusal struct {
	Status        int
	Code, Message string
}

// Check returns why r is refused, or nil: a cross-site browser request
// whose origin is not allowed, or, with CheckHost, a Host that does not
// name this machine.
func (b *Browsers) Check(r *http.Request) *Refusal {
	if origins := r.Header["Origin"]; len(origins) > 0 {
		if len(origins) > 1 || !b.originAllowed(origins[0]) {
			return refusedCrossSite
		}
	} else if site := r.Header["Sec-Fetch-Site"]; len(site) > 0 && (site[0] == "cross-site" || site[0] == "same-site") {
		return refusedCrossSite
	}
	if b.CheckHost && !b.hostAllowed(r.Host) {
		if b.Addresses {
			return refusedHostOffLoopback
		}
		return refusedHost
	}
	return nil
}

var (
	refusedCrossSite = &Refusal{http.StatusForbidden, route.CodeCrossSiteRequest,
		"imsproxy does not answer requests a browser makes for another site's page (Origin, Sec-Fetch-Site), which could spend the organisation's credits or read its assets; " +
			"the operator can allow a web application's origin in IMSPROXY_ALLOWED_ORIGINS."}
	refusedHost = &Refusal{http.StatusForbidden, route.CodeHostNotAllowed,
		"This listener answers only requests addressed to this machine (localhost, 127.0.0.1, [::1]), as DNS rebinding sends another name; " +
			"call it by one of those, or ask the operator to list the name in IMSPROXY_ALLOWED_HOSTS."}
	refusedHostOffLoopback = &Refusal{http.StatusForbidden, route.CodeHostNotAllowed,
		"This listener answers only requests addressed to an IP address, a loopback name or a name listed in IMSPROXY_ALLOWED_HOSTS, as DNS rebinding sends another name; " +
			"call it by one of those, or ask the operator to list the name in IMSPROXY_ALLOWED_HOSTS."}
)

func (b *Browsers) originAllowed(origin string) bool {
	return slices.ContainsFunc(b.Origins, func(o string) bool { return strings.EqualFold(o, origin) })
}

// hostAllowed reports whether host, a Host header, is absent, a loopback
// name or address with an optional port, one of Hosts, or with Addresses
// any address.
func (b *Browsers) hostAllowed(host string) bool {
	if host == "" {
		return true // HTTP/1.0 without Host (a load balancer's check): no browser sends that
	}
	name, ok := cutPort(host)
	switch {
	case !ok || name == "":
		return false
	case name == "127.0.0.1" || name == "localhost" || name == "[::1]":
		return true // what nearly every request names: decided without parsing
	}
	if strings.EqualFold(name, "localhost") || slices.ContainsFunc(b.Hosts, func(h string) bool { return strings.EqualFold(h, name) }) {
		return true
	}
	if ip, ok := strings.CutPrefix(name, "["); ok {
		name = strings.TrimSuffix(ip, "]")
	} else if strings.Contains(name, ":") {
		return false // an IPv6 address must be bracketed
	}
	a, err := netip.ParseAddr(name)
	return err == nil && a.Zone() == "" && (a.IsLoopback() || b.Addresses)
}

// cutPort returns host without its :port (IPv6 addresses keep their
// brackets), and false when the port is not a number.
func cutPort(host string) (string, bool) {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || strings.HasSuffix(host, "]") {
		return host, true
	}
	if host[0] == '[' && !strings.HasSuffix(host[:i], "]") {
		return host, true // [::1] without port: the colon is the address's
	}
	port := host[i+1:]
	if port == "" || len(port) > 5 {
		return "", false
	}
	for j := 0; j < len(port); j++ {
		if port[j] < '0' || port[j] > '9' {
			return "", false
		}
	}
	return host[:i], true
}
