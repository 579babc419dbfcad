package config

import (
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/internal/version"
)

// loader holds what one Load works from.
type loader struct {
	env     map[string]string // the IMSPROXY_ variables with a non-empty value
	now     func() time.Time  // for certificate expiry
	version string            // in the default X-Product, "imsproxy/<version>"
	unknown unknownVars       // the variables that configure nothing
}

// Load reads the configuration from environ, in os.Environ form ("K=V"),
// and validates it. Besides the files the variables name it does
// no I/O. A variable set to the empty string counts as unset, as for env
// defaults, so a compose file can pass "${X:-}" through.
//
// On any problem it returns a nil Config and Problems holding every problem
// found, so that an operator fixes them all in one round.
func Load(environ []string) (*Config, error) { return load(environ, time.Now, version.String()) }

// load is Load with the clock and the version injected.
func load(environ []string, now func() time.Time, version string) (*Config, error) {
	l := &loader{env: make(map[string]string), now: now, version: version}
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && val != "" && strings.HasPrefix(k, prefix) {
			l.env[k] = val
		}
	}
	var g globalVars
	ps := parseEnv(&g, l.env, prefix)
	cfg := &Config{
		AdminListen:     g.AdminListen,
		ShutdownTimeout: g.ShutdownTimeout,
		ShutdownDelay:   g.ShutdownDelay,
		CallersFile:     g.CallersFile,
		AllowRemote:     g.AllowRemote,
		AuditLog:        g.AuditLog,
	}
	l.globals(&ps, cfg, g)
	hardening(&ps, cfg, g)
	cfg.Redis = l.redis(&ps, g)
	l.checkAdmin(&ps, cfg, g)

	names := l.routeNames(&ps, g.Routes)
	l.unknown = l.findUnknown(names, g.Routes != "")
	_, imsSet := l.env[prefix+"IMS_URL"]
	for _, n := range names {
		r, rps := l.route(n, cfg.IMSURL, imsSet)
		ps = append(ps, rps...)
		cfg.Routes = append(cfg.Routes, r)
	}
	if len(names) == 0 && !ps.has(prefix+"ROUTES") {
		ps.add(prefix+"ROUTES", "no route is configured: set IMSPROXY_STOCK_CLIENT_ID and IMSPROXY_STOCK_CLIENT_SECRET "+
			"(Adobe Stock, OAuth server-to-server), or IMSPROXY_AEM_CREDENTIALS_FILE (AEM as a Cloud Service "+
			"service credentials), or name your routes in IMSPROXY_ROUTES; "+
			"`imsproxy sandbox` shows the proxy working without any credentials")
	}
	checkNameClashes(&ps, names)
	checkListeners(&ps, cfg)
	checkGuards(&ps, cfg)
	checkFleet(&ps, cfg)
	checkUnknown(&ps, l.unknown)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// globals validates the global variables into cfg.
func (l *loader) globals(ps *Problems, cfg *Config, g globalVars) {
	if u, msg := imsBase(g.IMSURL); msg != "" {
		ps.add(prefix+"IMS_URL", "%s", msg)
	} else {
		cfg.IMSURL = u
	}
	if _, _, msg := checkListen(g.AdminListen); msg != "" {
		ps.add(prefix+"ADMIN_LISTEN", "%s", msg)
	}
	switch strings.ToLower(strings.TrimSpace(g.LogLevel)) {
	case "debug":
		cfg.LogLevel = slog.LevelDebug
	case "info":
		cfg.LogLevel = slog.LevelInfo
	case "warn":
		cfg.LogLevel = slog.LevelWarn
	case "error":
		cfg.LogLevel = slog.LevelError
	default:
		ps.add(prefix+"LOG_LEVEL", "must be one of debug, info, warn, error")
	}
	switch f := strings.ToLower(strings.TrimSpace(g.LogFormat)); f {
	case "text", "json":
		cfg.LogFormat = f
	default:
		ps.add(prefix+"LOG_FORMAT", "must be text or json")
	}
	if g.ShutdownTimeout < 0 {
		ps.add(prefix+"SHUTDOWN_TIMEOUT", "must be 0 or more, e.g. 15s")
	}
	if g.ShutdownDelay < 0 {
		ps.add(prefix+"SHUTDOWN_DELAY", "must be 0 or more, e.g. 5s")
	}
}

// routeNames returns the enabled routes: IMSPROXY_ROUTES, or else stock and
// aem, each when one of its variables is set.
func (l *loader) routeNames(ps *Problems, routes string) []string {
	var names []string
	if routes == "" {
		for _, n := range []string{"stock", "aem"} {
			for k := range l.env {
				if strings.HasPrefix(k, routePrefix(n)) {
					names = append(names, n)
					break
				}
			}
		}
		return names
	}
	seen := map[string]bool{}
	for _, n := range splitList(routes) {
		n = strings.ToLower(n)
		switch {
		case !validRouteName(n):
			ps.add(prefix+"ROUTES", "route name %q cannot be part of a variable name: use letters, digits and single underscores", n)
		case seen[n]:
			ps.add(prefix+"ROUTES", "route %s is listed twice", n)
		default:
			seen[n] = true
			names = append(names, n)
		}
	}
	return names
}

// checkNameClashes refuses route names whose variables would also be
// another route's or a global one: route "admin" would read
// IMSPROXY_ADMIN_LISTEN, and routes "x" and "x_download" would share
// IMSPROXY_X_DOWNLOAD_UPSTREAM.
func checkNameClashes(ps *Problems, names []string) {
	owner := map[string]string{}
	for _, g := range globalNames() {
		owner[g] = "the global variable"
	}
	reported := map[string]bool{}
	for _, n := range names {
		for _, s := range routeSuffixes() {
			k := routePrefix(n) + s
			o, taken := owner[k]
			if taken && !reported[n+"\x00"+o] {
				reported[n+"\x00"+o] = true
				ps.add(prefix+"ROUTES", "route %s cannot be used: its variable %s is also %s; choose another name", n, k, o)
			}
			if !taken {
				owner[k] = "a variable of route " + n
			}
		}
	}
}

// checkListeners keeps the credentials off the network by default: a
// route's listener binds to loopback unless the operator says who may call
// (or accepts that anyone may), and no two listeners share an address.
// The admin listener's own rule is checkAdmin's.
func checkListeners(ps *Problems, cfg *Config) {
	type listener struct{ v, addr, host, port string }
	var ls []listener
	add := func(v, addr string) {
		if host, port, msg := checkListen(addr); addr != "" && msg == "" {
			ls = append(ls, listener{v, addr, host, port})
		}
	}
	add(prefix+"ADMIN_LISTEN", cfg.AdminListen)
	for _, r := range cfg.Routes {
		add(routePrefix(r.Name)+"LISTEN", r.Listen)
	}
	for i, l := range ls {
		if l.v != prefix+"ADMIN_LISTEN" && !isLoopback(l.host) && cfg.CallersFile == "" && !cfg.AllowRemote {
			ps.add(l.v, "%s is not a loopback address: set IMSPROXY_CALLERS_FILE (who may call) "+
				"or IMSPROXY_ALLOW_REMOTE=true to listen on it", l.addr)
		}
		for _, prev := range ls[:i] {
			// Port 0 picks a free port, so those never clash; a wildcard
			// host clashes with every host on the same port.
			if l.port != "0" && l.port == prev.port &&
				(strings.EqualFold(l.host, prev.host) || unspecified(l.host) || unspecified(prev.host)) {
				ps.add(l.v, "%s clashes with %s=%s: each listener needs its own address", l.addr, prev.v, prev.addr)
			}
		}
	}
}

// unspecified reports whether host means every interface.
func unspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}
