package config

import (
	"net/netip"
	"net/url"
	"strings"
)

// minInflightBytes is the least IMSPROXY_MAX_INFLIGHT_BYTES accepted: one
// licensing answer held for rewriting may take 8 MiB, and it waits for
// room rather than being cut, so the bound must leave room for it.
const minInflightBytes = 16 << 20

// hardening validates the global variables of the guards against browsers
// and resource exhaustion into cfg.
func hardening(ps *Problems, cfg *Config, g globalVars) {
	for _, h := range splitList(g.AllowedHosts) {
		if name, ok := hostName(h); ok {
			cfg.AllowedHosts = append(cfg.AllowedHosts, name)
		} else {
			ps.add(prefix+"ALLOWED_HOSTS", "%q is not a host name or IP address: list names such as dev.example.test, without scheme or port", h)
		}
	}
	for _, o := range splitList(g.AllowedOrigins) {
		if origin, ok := origin(o); ok {
			cfg.AllowedOrigins = append(cfg.AllowedOrigins, origin)
		} else {
			ps.add(prefix+"ALLOWED_ORIGINS", "%q is not an origin: list each as a browser sends it, scheme and host and a port only when needed, such as https://app.example.com", o)
		}
	}
	cfg.TokenWait = g.TokenWait
	if g.TokenWait <= 0 {
		ps.add(prefix+"TOKEN_WAIT", "must be more than 0, e.g. 5s")
	}
	cfg.MaxInflightBytes = g.MaxInflightBytes
	if g.MaxInflightBytes < minInflightBytes {
		ps.add(prefix+"MAX_INFLIGHT_BYTES", "must be at least %d (16 MiB): one licensing answer held for rewriting may take 8 MiB", minInflightBytes)
	}
}

// hostName accepts a host name or an IP address (IPv6 with or without
// brackets) and returns it as a Host header names it, in lower case.
func hostName(s string) (string, bool) {
	s = strings.ToLower(s)
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil && a.Zone() == "" {
		if a.Is6() {
			return "[" + a.String() + "]", true
		}
		return a.String(), true
	}
	if s == "" || len(s) > 253 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-._") != "" ||
		strings.HasPrefix(s, ".") || strings.Contains(s, "..") {
		return "", false
	}
	return s, true
}

// origin returns s as a browser's Origin header writes it
// (scheme://host[:port], lower case, without the scheme's default port),
// or false when s is not the origin of an http or https page.
func origin(s string) (string, bool) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.User != nil || u.Path != "" ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.ForceQuery {
		return "", false
	}
	host, ok := hostName(u.Hostname())
	if !ok {
		return "", false
	}
	port := u.Port()
	if port == "" && strings.HasSuffix(u.Host, ":") || port != "" && strings.TrimLeft(port, "0123456789") != "" {
		return "", false
	}
	if port == "80" && u.Scheme == "http" || port == "443" && u.Scheme == "https" {
		port = ""
	}
	o := u.Scheme + "://" + host
	if port != "" {
		o += ":" + port
	}
	return o, true
}
