package config

import (
	"net"
	"strings"
)

// minAdminToken is the shortest admin token accepted: long enough that it
// cannot be guessed over the network (openssl rand -hex 32 makes 64).
const minAdminToken = 16

// checkAdmin validates who may reach the admin listener. Off loopback it
// serves probes and scrapes to the network, which needs saying so
// (IMSPROXY_ADMIN_ALLOW_REMOTE, or IMSPROXY_ALLOW_REMOTE for everything),
// and then a token, so that its mutating endpoints are not open to
// everyone who can reach it. The callers file does not guard the admin
// listener, so it does not count here.
func (l *loader) checkAdmin(ps *Problems, cfg *Config, g globalVars) {
	cfg.AdminAllowRemote = g.AdminAllowRemote
	cfg.AdminTokenFile = g.AdminTokenFile
	switch {
	case g.AdminToken != "" && g.AdminTokenFile != "":
		ps.add(prefix+"ADMIN_TOKEN", "set either IMSPROXY_ADMIN_TOKEN or IMSPROXY_ADMIN_TOKEN_FILE, not both")
	case g.AdminToken != "":
		token, msg := parseAdminToken([]byte(g.AdminToken.Reveal()))
		if msg != "" {
			ps.add(prefix+"ADMIN_TOKEN", "%s", msg)
		}
		cfg.AdminToken = token
	case g.AdminTokenFile != "":
		token, err := readAdminToken(g.AdminTokenFile)
		if err != "" {
			ps.add(prefix+"ADMIN_TOKEN_FILE", "%s", err)
		}
		cfg.AdminToken = token
	}

	host, _, msg := checkListen(cfg.AdminListen)
	if msg != "" || isLoopback(host) {
		return
	}
	switch {
	case !cfg.AdminAllowRemote && !cfg.AllowRemote:
		ps.add(prefix+"ADMIN_LISTEN", "%s is not a loopback address: set IMSPROXY_ADMIN_ALLOW_REMOTE=true "+
			"(and IMSPROXY_ADMIN_TOKEN_FILE) to serve the admin endpoints on it", cfg.AdminListen)
	case g.AdminToken == "" && g.AdminTokenFile == "":
		ps.add(prefix+"ADMIN_TOKEN", "required because IMSPROXY_ADMIN_LISTEN=%s is not a loopback address: "+
			"set IMSPROXY_ADMIN_TOKEN_FILE to a file holding the bearer token POST /cache/purge requires "+
			"(openssl rand -hex 32 makes one)", cfg.AdminListen)
	}
}

// ReadAdminToken reads the admin token file at path as Load does. Its
// error names IMSPROXY_ADMIN_TOKEN_FILE and never the token.
func ReadAdminToken(path string) (Secret, error) {
	token, msg := readAdminToken(path)
	if msg != "" {
		return "", Problems{{Var: prefix + "ADMIN_TOKEN_FILE", Message: msg}}
	}
	return token, nil
}

func readAdminToken(path string) (Secret, string) {
	b, err := readSmallFile(path, 4096)
	if err != nil {
		if !looksLikePath(path) {
			// The token itself, put in the _FILE variable by mistake.
			return "", "cannot read the file it names: " + err.Error() +
				" (the value is not repeated: it does not look like a path, and may be the token itself)"
		}
		return "", "cannot read " + path + ": " + err.Error()
	}
	return parseAdminToken(b)
}

// parseAdminToken validates an admin token. White space around it is
// ignored (a file usually ends with a line break); inside, it must be
// what an Authorization header can carry.
func parseAdminToken(b []byte) (Secret, string) {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "":
		return "", "is empty: want the bearer token POST /cache/purge requires (openssl rand -hex 32 makes one)"
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }):
		return "", "must be printable ASCII without spaces: it is sent in an Authorization header"
	case len(s) < minAdminToken:
		return "", "is too short: use at least 16 characters (openssl rand -hex 32 makes 64)"
	}
	return Secret(s), ""
}

// OnLoopback reports whether a listener on addr (host:port) can be
// reached from this machine only.
func OnLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopback(host)
}
