// Package config turns the environment (the IMSPROXY_ variables) into a
// validated Config. It is pure: besides reading the files the variables name, it does no I/O
// and touches no globals, so tests pass their own environment.
package config

import (
	"crypto/x509"
	"log/slog"
	"net/url"
	"time"
)

// RouteType decides a route's extras and defaults.
type RouteType string

// Route types.
const (
	TypeStock   RouteType = "stock"   // search cache, licensing guard, X-Product
	TypeAEM     RouteType = "aem"     // AEM as a Cloud Service or 6.5
	TypeGeneric RouteType = "generic" // anything else, e.g. Brand Portal
)

// AuthKind is how a route obtains its access token.
type AuthKind string

// Auth kinds.
const (
	AuthJWT   AuthKind = "jwt"   // signed JWT exchanged at /ims/exchange/jwt
	AuthOAuth AuthKind = "oauth" // client_credentials at /ims/token/v3
	AuthToken AuthKind = "token" // a fixed token, used as is
	AuthNone  AuthKind = "none"  // no Authorization added
)

// Config is the whole validated configuration.
type Config struct {
	IMSURL          string        // IMSPROXY_IMS_URL, no trailing slash
	AdminListen     string        // IMSPROXY_ADMIN_LISTEN
	LogLevel        slog.Level    // IMSPROXY_LOG_LEVEL
	LogFormat       string        // IMSPROXY_LOG_FORMAT: "text" or "json"
	ShutdownTimeout time.Duration // IMSPROXY_SHUTDOWN_TIMEOUT
	ShutdownDelay   time.Duration // IMSPROXY_SHUTDOWN_DELAY
	CallersFile     string        // IMSPROXY_CALLERS_FILE, "" when unset
	AllowRemote     bool          // IMSPROXY_ALLOW_REMOTE
	AuditLog        string        // IMSPROXY_AUDIT_LOG, "" when unset, "-" for stdout
	Redis           *Redis        // fleet mode; nil without IMSPROXY_REDIS_URL

	// AllowedHosts are the extra Host names (lower case, without port)
	// accepted on loopback listeners without a callers file
	// (IMSPROXY_ALLOWED_HOSTS).
	AllowedHosts []string
	// AllowedOrigins are the browser origins that may call
	// (IMSPROXY_ALLOWED_ORIGINS), as browsers send them: scheme://host
	// with a port only when it is not the scheme's default, lower case.
	AllowedOrigins []string
	// TokenWait is the longest a request waits for a token when none is
	// valid (IMSPROXY_TOKEN_WAIT).
	TokenWait time.Duration
	// MaxInflightBytes bounds the memory all requests together hold for
	// answers being cached or rewritten (IMSPROXY_MAX_INFLIGHT_BYTES).
	MaxInflightBytes int64

	Routes []Route // in the order of IMSPROXY_ROUTES (or stock, aem)

	// AdminAllowRemote is IMSPROXY_ADMIN_ALLOW_REMOTE: the admin listener
	// may be off loopback (the routes stay as they are).
	AdminAllowRemote bool
	// AdminToken is the bearer token the admin listener's mutating
	// endpoints require: IMSPROXY_ADMIN_TOKEN, or the content of
	// AdminTokenFile as Load read it; "" when neither is set.
	AdminToken     Secret
	AdminTokenFile string // IMSPROXY_ADMIN_TOKEN_FILE, "" when unset; reloaded when it changes

	// Callers is the content of CallersFile as loaded; the proxy reloads
	// the file when it changes.
	Callers []Caller
}

// RouteNames lists the routes' names in configuration order.
func (c *Config) RouteNames() []string {
	names := make([]string, len(c.Routes))
	for i, r := range c.Routes {
		names[i] = r.Name
	}
	return names
}

// Route is one upstream with its own listener and credentials.
type Route struct {
	Name   string    // lower case, as in IMSPROXY_ROUTES
	Type   RouteType // IMSPROXY_<NAME>_TYPE or inferred
	Listen string    // host:port
	// Upstream is the base URL requests are forwarded to (paths unchanged).
	Upstream *url.URL
	Auth     AuthKind
	IMSURL   string // effective IMS base URL, no trailing slash

	Credentials Credentials

	Product           string // stock: X-Product sent when the caller sent none
	Cache             Cache
	AllowLicense      bool     // stock: forward licensing calls
	DownloadUpstream  *url.URL // stock: host of licensed and watermarked downloads
	LicenseDailyLimit int      // stock: 0 = no limit
	// ShareToken: in fleet mode, the replicas share this route's token
	// through Redis (SHARE_TOKEN).
	ShareToken bool

	CAFile       string         // "" when unset
	RootCAs      *x509.CertPool // system roots plus CA_FILE; nil = system roots only
	Timeout      time.Duration  // upstream response-header timeout
	MaxBodyBytes int64          // largest request body accepted

	// Files lists the credential files this route was loaded from
	// (CREDENTIALS_FILE, CLIENT_SECRET_FILE, PRIVATE_KEY_FILE,
	// JWT_PAYLOAD_FILE, ACCESS_TOKEN_FILE, CERTIFICATE_FILE): a change to any
	// of them reloads the credentials.
	Files []string

	// reload re-reads the credentials as Load did (ReloadCredentials); nil
	// for a Route not made by Load. It is a closure rather than a struct on
	// purpose: fmt reads unexported fields by reflection, bypassing Secret's
	// redaction, so raw variable values must not sit in a field it can walk.
	reload func() (Credentials, string, []string, Problems)
}

// Var returns the full name of the route's variable with this suffix:
// Var("TIMEOUT") of route stock is IMSPROXY_STOCK_TIMEOUT.
func (r *Route) Var(suffix string) string { return routePrefix(r.Name) + suffix }

// Credentials is what a route needs to obtain a token. Secret fields never
// print (see Secret and PrivateKey).
type Credentials struct {
	ClientID           string // API key; also sent as x-api-key
	ClientSecret       Secret
	OrgID              string // ...@AdobeOrg, the JWT iss
	TechnicalAccountID string // ...@techacct.adobe.com, the JWT sub
	PrivateKey         PrivateKey
	// Metascopes as configured, trimmed: short names ("ent_user_sdk") or
	// full claim URLs ("https://ims-na1.adobelogin.com/s/ent_user_sdk").
	Metascopes []string
	Scopes     []string // oauth
	// JWTClaims holds the claims of JWT_PAYLOAD[_FILE] (without exp and jti,
	// which are always set fresh); nil when no payload was given.
	JWTClaims   map[string]any
	AccessToken Secret // token auth

	// CertificateExpiry is the NotAfter of the certificate registered for
	// the key (credentials file publicKey or CERTIFICATE_FILE); zero when
	// unknown.
	CertificateExpiry time.Time
}

// Cache configures the stock search cache.
type Cache struct {
	Size         int           // entries; 0 disables the cache
	TTL          time.Duration // how long an answer is served
	MaxBytes     int64         // total bytes of cached bodies
	StaleIfError time.Duration // how long past TTL an entry may serve on upstream failure; 0 disables
}

// Redis is the shared state of fleet mode (IMSPROXY_REDIS_*).
type Redis struct {
	// URL is redis://[user:password@]host:port[/db] or rediss://...; it
	// may carry a password, so it never prints.
	URL Secret
	TLS bool // rediss://
	// CacheURL is the Redis of the search cache's second level when it is
	// another instance (one that may evict); "" when the cache shares URL.
	CacheURL Secret
	CacheTLS bool
	Prefix   string         // the first part of every key
	Timeout  time.Duration  // bound on one operation
	CAFile   string         // "" when unset
	RootCAs  *x509.CertPool // system roots plus CA_FILE; nil = system roots only
}
