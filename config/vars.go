package config

import (
	"cmp"
	"errors"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// prefix starts every variable imsproxy reads.
const prefix = "IMSPROXY_"

// globalVars are the global variables, as the environment spells them. The
// tags are the single list of global variable names: KnownVariable, the
// unknown-variable check and the documentation test derive theirs from it.
type globalVars struct {
	Routes          string        `env:"ROUTES"`
	IMSURL          string        `env:"IMS_URL" envDefault:"https://ims-na1.adobelogin.com"`
	AdminListen     string        `env:"ADMIN_LISTEN" envDefault:"127.0.0.1:9090"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"text"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s"`
	ShutdownDelay   time.Duration `env:"SHUTDOWN_DELAY" envDefault:"0s"`
	CallersFile     string        `env:"CALLERS_FILE"`
	AllowRemote     bool          `env:"ALLOW_REMOTE" envDefault:"false"`
	AuditLog        string        `env:"AUDIT_LOG"`
	RedisURL        Secret        `env:"REDIS_URL"` // may carry a password
	RedisURLFile    string        `env:"REDIS_URL_FILE"`
	RedisCacheURL   Secret        `env:"REDIS_CACHE_URL"` // likewise
	RedisCacheFile  string        `env:"REDIS_CACHE_URL_FILE"`
	RedisPrefix     string        `env:"REDIS_PREFIX" envDefault:"imsproxy"`
	RedisTimeout    time.Duration `env:"REDIS_TIMEOUT" envDefault:"500ms"`
	RedisCAFile     string        `env:"REDIS_CA_FILE"`

	AllowedHosts     string        `env:"ALLOWED_HOSTS"`
	AllowedOrigins   string        `env:"ALLOWED_ORIGINS"`
	TokenWait        time.Duration `env:"TOKEN_WAIT" envDefault:"5s"`
	MaxInflightBytes int64         `env:"MAX_INFLIGHT_BYTES" envDefault:"268435456"`
	AdminAllowRemote bool          `env:"ADMIN_ALLOW_REMOTE" envDefault:"false"`
	AdminToken       Secret        `env:"ADMIN_TOKEN"`
	AdminTokenFile   string        `env:"ADMIN_TOKEN_FILE"`
}

// routeVars are the per-route variables, without their IMSPROXY_<NAME>_
// prefix. Defaults that depend on the route type are not tags:
// routeDefaults fills them in before parsing, and env leaves a field
// alone when its variable is unset. Secret values are parsed straight into
// Secret so that even this raw form never prints them.
type routeVars struct {
	Listen             string `env:"LISTEN"`
	Upstream           string `env:"UPSTREAM"`
	Type               string `env:"TYPE"`
	Auth               string `env:"AUTH"`
	IMSURL             string `env:"IMS_URL"`
	ClientID           string `env:"CLIENT_ID"`
	ClientSecret       Secret `env:"CLIENT_SECRET"`
	ClientSecretFile   string `env:"CLIENT_SECRET_FILE"`
	OrgID              string `env:"ORG_ID"`
	TechnicalAccountID string `env:"TECHNICAL_ACCOUNT_ID"`
	PrivateKey         Secret `env:"PRIVATE_KEY"`
	PrivateKeyFile     string `env:"PRIVATE_KEY_FILE"`
	JWTPayload         Secret `env:"JWT_PAYLOAD"`
	JWTPayloadFile     string `env:"JWT_PAYLOAD_FILE"`
	Metascopes         string `env:"METASCOPES"`
	Scopes             string `env:"SCOPES"`
	CredentialsFile    string `env:"CREDENTIALS_FILE"`
	CertificateFile    string `env:"CERTIFICATE_FILE"`
	AccessToken        Secret `env:"ACCESS_TOKEN"`
	AccessTokenFile    string `env:"ACCESS_TOKEN_FILE"`

	Product           string        `env:"PRODUCT"`
	CacheSize         int           `env:"CACHE_SIZE"`
	CacheTTL          time.Duration `env:"CACHE_TTL" envDefault:"5m"`
	CacheMaxBytes     int64         `env:"CACHE_MAX_BYTES" envDefault:"67108864"`
	CacheStaleIfError time.Duration `env:"CACHE_STALE_IF_ERROR" envDefault:"1h"`
	AllowLicense      bool          `env:"ALLOW_LICENSE"`
	DownloadUpstream  string        `env:"DOWNLOAD_UPSTREAM" envDefault:"https://stock.adobe.com"`
	LicenseDailyLimit int           `env:"LICENSE_DAILY_LIMIT"`
	ShareToken        bool          `env:"SHARE_TOKEN"`

	CAFile       string        `env:"CA_FILE"`
	Timeout      time.Duration `env:"TIMEOUT" envDefault:"60s"`
	MaxBodyBytes int64         `env:"MAX_BODY_BYTES" envDefault:"104857600"`
}

// stockOnlySuffixes are the route variables that only mean something on a
// stock route (search cache, X-Product, licensing, downloads): setting one
// elsewhere is a mistake worth stopping for, since it would silently do
// nothing.
var stockOnlySuffixes = []string{
	"PRODUCT", "CACHE_SIZE", "CACHE_TTL", "CACHE_MAX_BYTES", "CACHE_STALE_IF_ERROR",
	"ALLOW_LICENSE", "DOWNLOAD_UPSTREAM", "LICENSE_DAILY_LIMIT",
}

// parseEnv fills dst (a pointer to globalVars or routeVars) from environment,
// reading the variables prefix+tag. env reports a value that does not parse
// by struct field and with the value in its message; parseEnv translates that
// into the variable name and the kind of value expected, and never repeats
// the value: it may be a secret put in the wrong variable.
func parseEnv(dst any, environment map[string]string, pfx string) Problems {
	err := env.ParseWithOptions(dst, env.Options{Environment: environment, Prefix: pfx})
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		agg.Errors = []error{err}
	}
	t := reflect.TypeOf(dst).Elem()
	var ps Problems
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			// Only ParseError can come from the fixed structs above; anything
			// else is a programming error, still reported, never swallowed.
			ps.add(pfx+"*", "internal error reading the environment: %T", e)
			continue
		}
		f, _ := t.FieldByName(pe.Name)
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		ps.add(pfx+key, "cannot be parsed: %s", expected(f.Type))
	}
	return ps
}

// expected describes the values a field of type t accepts.
func expected(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "want a duration such as 15s, 5m or 1h"
	case t.Kind() == reflect.Bool:
		return "want true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "want a whole number"
	}
	return "want a " + t.String()
}

// varNames lists the variable names (without prefix) declared by the env
// tags of the struct dst points to.
func varNames(dst any) []string {
	params, err := env.GetFieldParamsWithOptions(dst, env.Options{Environment: map[string]string{}})
	if err != nil {
		// The tags are fixed at compile time and covered by tests.
		panic("config: bad env tags: " + err.Error())
	}
	names := make([]string, len(params))
	for i, p := range params {
		names[i] = p.Key
	}
	return names
}

// globalNames returns the full names of the global variables.
func globalNames() []string {
	names := varNames(&globalVars{})
	for i, n := range names {
		names[i] = prefix + n
	}
	return names
}

// routeSuffixes returns the per-route variable names without their prefix.
func routeSuffixes() []string { return varNames(&routeVars{}) }

// AdminListen returns the admin listener's address as environ sets it (the
// last setting wins, as in a process's environment), or its default when
// unset or empty. It is what `imsproxy health` needs to find the listener
// without loading the rest of the configuration, which is the server's
// business: a probe must not fail on a setting that has nothing to do with
// reaching it.
func AdminListen(environ []string) string {
	addr := ""
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == AdminListenVariable {
			addr = v
		}
	}
	return cmp.Or(addr, AdminListenDefault)
}

// AdminListenVariable names the admin listener's address, and
// AdminListenDefault is its default, as the tags in globalVars have them.
var (
	AdminListenVariable = prefix + adminListenField().Tag.Get("env")
	AdminListenDefault  = adminListenField().Tag.Get("envDefault")
)

func adminListenField() reflect.StructField {
	field, _ := reflect.TypeFor[globalVars]().FieldByName("AdminListen")
	return field
}

// GlobalVariables lists the global variables imsproxy reads, e.g.
// IMSPROXY_LOG_LEVEL.
func GlobalVariables() []string { return globalNames() }

// RouteVariables lists the suffixes of the per-route variables, which
// follow IMSPROXY_<ROUTE>_ (e.g. CLIENT_ID).
func RouteVariables() []string { return routeSuffixes() }

// KnownVariable reports whether name is a variable imsproxy reads: a global
// variable (IMSPROXY_LOG_LEVEL) or a per-route one for any route name
// (IMSPROXY_<NAME>_CLIENT_ID). Whether the route is enabled is not checked.
func KnownVariable(name string) bool {
	for _, g := range globalNames() {
		if name == g {
			return true
		}
	}
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	for _, s := range routeSuffixes() {
		if route, ok := strings.CutSuffix(rest, "_"+s); ok && route == strings.ToUpper(route) && validRouteName(strings.ToLower(route)) {
			return true
		}
	}
	return false
}

// routePrefix is the prefix of a route's variables: IMSPROXY_ + NAME + _.
func routePrefix(name string) string { return prefix + strings.ToUpper(name) + "_" }
