package config

import (
	"crypto/x509"
	"slices"
	"strings"

	"github.com/caarlos0/env/v11"
)

// routeDefaults returns the defaults that depend on the route type.
// env leaves a field alone when its variable is unset, so these survive
// parsing unless the operator overrides them.
func routeDefaults(t RouteType, version string) routeVars {
	var d routeVars
	switch t {
	case TypeStock:
		d.Listen = "127.0.0.1:8080"
		d.Upstream = "https://stock.adobe.io"
		d.CacheSize = 1024
		d.Product = "imsproxy/" + version
	case TypeAEM:
		d.Listen = "127.0.0.1:8081"
	}
	return d
}

// routeType returns the route's type: TYPE when set, else the name when it
// is stock or aem, else generic. An invalid TYPE is reported by
// ok=false; the name's default is returned so that validation goes on with
// the type the operator most likely meant.
func routeType(name, typ string) (t RouteType, ok bool) {
	switch t := RouteType(strings.ToLower(strings.TrimSpace(typ))); t {
	case TypeStock, TypeAEM, TypeGeneric:
		return t, true
	case "":
		ok = true
	}
	if t := RouteType(name); t == TypeStock || t == TypeAEM {
		return t, ok
	}
	return TypeGeneric, ok
}

// authChosenBy lists, in order of precedence, the variables whose presence
// chooses a route's auth kind when AUTH is not set: JWT material means jwt,
// a fixed token token, a client id or secret alone oauth
// (docs/configuration.md has the table). A JWT payload also means jwt: it
// is useless to anything else, and saying "the private key is missing"
// helps more than "set AUTH". CLIENT_ID or CLIENT_SECRET[_FILE] alone means
// oauth, so that the missing half is named rather than a generic "cannot
// tell".
var authChosenBy = []struct {
	kind     AuthKind
	suffixes []string
}{
	{AuthJWT, []string{"CREDENTIALS_FILE", "PRIVATE_KEY", "PRIVATE_KEY_FILE", "JWT_PAYLOAD", "JWT_PAYLOAD_FILE"}},
	{AuthToken, []string{"ACCESS_TOKEN", "ACCESS_TOKEN_FILE"}},
	{AuthOAuth, []string{"CLIENT_ID", "CLIENT_SECRET", "CLIENT_SECRET_FILE"}},
}

// inferAuth guesses the auth kind from the variables that are set, by
// authChosenBy; "" when none is.
func inferAuth(set func(suffix string) bool) AuthKind {
	for _, a := range authChosenBy {
		if slices.ContainsFunc(a.suffixes, set) {
			return a.kind
		}
	}
	return ""
}

// route builds and validates the route name from the environment.
func (l *loader) route(name string, globalIMS string, globalIMSSet bool) (Route, Problems) {
	var ps Problems
	pfx := routePrefix(name)
	v := func(suffix string) string { return pfx + suffix }
	set := func(suffix string) bool { _, ok := l.env[pfx+suffix]; return ok }

	// The type goes first: the other defaults depend on it.
	var probe struct {
		Type string `env:"TYPE"`
	}
	_ = env.ParseWithOptions(&probe, env.Options{Environment: l.env, Prefix: pfx}) // a string cannot fail
	typ, ok := routeType(name, probe.Type)
	if !ok {
		ps.add(v("TYPE"), "must be stock, aem or generic")
	}
	vs := routeDefaults(typ, l.version)
	ps = append(ps, parseEnv(&vs, l.env, pfx)...)
	r := Route{Name: name, Type: typ, CAFile: vs.CAFile, Timeout: vs.Timeout, MaxBodyBytes: vs.MaxBodyBytes, ShareToken: vs.ShareToken}

	switch _, _, msg := checkListen(vs.Listen); {
	case vs.Listen == "":
		ps.addMissing([]string{v("LISTEN")}, "required for this %s route: the address to listen on, e.g. 127.0.0.1:8082", typ)
	case msg != "":
		ps.add(v("LISTEN"), "%s", msg)
	default:
		r.Listen = vs.Listen
	}
	if vs.Upstream == "" {
		hint := "the base URL requests are forwarded to"
		if typ == TypeAEM {
			hint = "the AEM URL, e.g. https://author-p12345-e67890.adobeaemcloud.com"
		}
		ps.addMissing([]string{v("UPSTREAM")}, "required for this %s route: %s", typ, hint)
	} else if u, msg := parseHTTPURL(vs.Upstream); msg != "" {
		ps.add(v("UPSTREAM"), "%s", msg)
	} else {
		r.Upstream = u
	}

	// A misspelt variable (reported as such) chooses the kind as its
	// meant name would, so that what else the kind needs is said in this
	// round rather than once the name is fixed.
	chooses := func(suffix string) bool { return set(suffix) || l.unknown.misspelling(v(suffix)) != "" }
	authValue, authSet := vs.Auth, set("AUTH")
	if typo := l.unknown.misspelling(v("AUTH")); !authSet && typo != "" {
		authValue = l.env[typo]
	}
	switch a := AuthKind(strings.ToLower(strings.TrimSpace(authValue))); {
	case a == AuthJWT || a == AuthOAuth || a == AuthToken || a == AuthNone:
		r.Auth = a
	case authSet:
		ps.add(v("AUTH"), "must be one of jwt, oauth, token, none")
	default:
		if r.Auth = inferAuth(chooses); r.Auth == "" {
			// AUTH set under a misspelt name is reported as the misspelling.
			ps.addMissing([]string{v("AUTH")}, "no credentials for route %s: set %s and %s or %s (OAuth server-to-server), "+
				"%s (AEM service credentials), %s with the other JWT variables, %s (a fixed token), or %s=none",
				name, v("CLIENT_ID"), v("CLIENT_SECRET"), v("CLIENT_SECRET_FILE"), v("CREDENTIALS_FILE"), v("PRIVATE_KEY_FILE"),
				v("ACCESS_TOKEN"), v("AUTH"))
		}
	}

	src := &credentialSource{prefix: pfx, typ: typ, auth: r.Auth, vars: vs, now: l.now,
		globalIMS: globalIMS, globalIMSSet: globalIMSSet}
	r.reload = src.load
	creds, ims, files, cps := src.load()
	ps = append(ps, cps...)
	r.Credentials, r.IMSURL, r.Files = creds, ims, files

	if typ == TypeStock {
		stockOptions(&ps, &r, vs, v)
	} else {
		for _, s := range stockOnlySuffixes {
			if set(s) {
				ps.add(v(s), "applies only to stock routes, and this route's type is %s", typ)
			}
		}
	}

	if vs.CAFile != "" {
		r.RootCAs = rootCAs(&ps, v("CA_FILE"), vs.CAFile)
	}
	if vs.Timeout <= 0 && !ps.has(v("TIMEOUT")) {
		ps.add(v("TIMEOUT"), "must be positive, e.g. 60s")
	}
	if vs.MaxBodyBytes <= 0 && !ps.has(v("MAX_BODY_BYTES")) {
		ps.add(v("MAX_BODY_BYTES"), "must be a positive number of bytes")
	}
	return r, ps
}

// stockOptions fills and checks the options of a stock route: the search
// cache, X-Product, licensing and downloads.
// A variable that did not parse is in ps already and not judged again.
func stockOptions(ps *Problems, r *Route, vs routeVars, v func(string) string) {
	check := func(bad bool, suffix, format string, args ...any) {
		if bad && !ps.has(v(suffix)) {
			ps.add(v(suffix), format, args...)
		}
	}
	r.Product = strings.TrimSpace(vs.Product)
	r.AllowLicense = vs.AllowLicense
	r.LicenseDailyLimit = vs.LicenseDailyLimit
	r.Cache = Cache{Size: vs.CacheSize, TTL: vs.CacheTTL, MaxBytes: vs.CacheMaxBytes, StaleIfError: vs.CacheStaleIfError}

	check(r.Product == "" || strings.ContainsFunc(r.Product, func(c rune) bool { return c < 0x20 || c == 0x7f }),
		"PRODUCT", "must be printable text such as MyApp/1.0: it is sent as the X-Product header")
	u, msg := parseHTTPURL(vs.DownloadUpstream)
	check(msg != "", "DOWNLOAD_UPSTREAM", "%s", msg)
	r.DownloadUpstream = u
	check(vs.LicenseDailyLimit < 0, "LICENSE_DAILY_LIMIT", "must be 0 (no limit) or more")
	check(vs.CacheSize < 0, "CACHE_SIZE", "must be 0 (no cache) or more")
	if vs.CacheSize > 0 {
		check(vs.CacheTTL <= 0, "CACHE_TTL", "must be positive (or set %s=0 to disable the cache)", v("CACHE_SIZE"))
		check(vs.CacheMaxBytes <= 0, "CACHE_MAX_BYTES", "must be positive (or set %s=0 to disable the cache)", v("CACHE_SIZE"))
	}
	check(vs.CacheStaleIfError < 0, "CACHE_STALE_IF_ERROR", "must be 0 (disabled) or more")
}

// rootCAs returns the system roots plus the PEM certificates of file, for a
// corporate proxy that inspects TLS with a certificate of its own.
func rootCAs(ps *Problems, v, file string) *x509.CertPool {
	b, msg := readFile(file)
	if msg != "" {
		ps.add(v, "%s", msg)
		return nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		// No system pool on this platform: the file alone is the trust.
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(normalizePEM(b)) {
		ps.add(v, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
		return nil
	}
	return pool
}
