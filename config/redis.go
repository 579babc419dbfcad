package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// redis validates the fleet-mode variables into a *Redis; nil when
// neither IMSPROXY_REDIS_URL nor IMSPROXY_REDIS_URL_FILE is set (then the
// others must be unset too, since they would silently do nothing).
func (l *loader) redis(ps *Problems, g globalVars) *Redis {
	if g.RedisURL.IsZero() && g.RedisURLFile == "" {
		for _, s := range []string{"REDIS_CACHE_URL", "REDIS_CACHE_URL_FILE", "REDIS_PREFIX", "REDIS_TIMEOUT", "REDIS_CA_FILE"} {
			if _, set := l.env[prefix+s]; set {
				ps.add(prefix+s, "applies only in fleet mode: set IMSPROXY_REDIS_URL too, or remove it")
			}
		}
		return nil
	}
	r := &Redis{Prefix: g.RedisPrefix, Timeout: g.RedisTimeout, CAFile: g.RedisCAFile}
	var msg string
	if url, from := redisURL(ps, "REDIS_URL", g.RedisURL, g.RedisURLFile); from != "" {
		r.URL = url
		if r.TLS, msg = checkRedisURL(url.Reveal()); msg != "" {
			ps.add(from, "%s", msg)
		}
	}
	if !g.RedisCacheURL.IsZero() || g.RedisCacheFile != "" {
		if url, from := redisURL(ps, "REDIS_CACHE_URL", g.RedisCacheURL, g.RedisCacheFile); from != "" {
			r.CacheURL = url
			if r.CacheTLS, msg = checkRedisURL(url.Reveal()); msg != "" {
				ps.add(from, "%s", msg)
			}
		}
	}
	if strings.ContainsFunc(r.Prefix, func(c rune) bool { return c <= ' ' || c == 0x7f || c == '{' || c == '}' }) || r.Prefix == "" {
		ps.add(prefix+"REDIS_PREFIX", "must be printable text without spaces or braces, e.g. imsproxy (braces would change which Cluster slot a key is in)")
	}
	if r.Timeout <= 0 && !ps.has(prefix+"REDIS_TIMEOUT") {
		ps.add(prefix+"REDIS_TIMEOUT", "must be positive, e.g. 500ms")
	} else if r.Timeout > time.Minute {
		ps.add(prefix+"REDIS_TIMEOUT", "must be at most 1m: a license waits this long for Redis before it is refused")
	}
	if r.CAFile != "" {
		urlsRead := !ps.has(prefix+"REDIS_URL", prefix+"REDIS_URL_FILE", prefix+"REDIS_CACHE_URL", prefix+"REDIS_CACHE_URL_FILE")
		if urlsRead && !r.TLS && !r.CacheTLS {
			ps.add(prefix+"REDIS_CA_FILE", "applies only to a rediss:// (TLS) IMSPROXY_REDIS_URL or IMSPROXY_REDIS_CACHE_URL")
		}
		r.RootCAs = rootCAs(ps, prefix+"REDIS_CA_FILE", r.CAFile)
	}
	return r
}

// redisURL is the URL of the variable name (REDIS_URL, REDIS_CACHE_URL),
// set inline or read from the file its _FILE variable names (a URL with a
// password is a secret, which a file keeps out of the environment), and the
// variable it came from; "" when it could not be read.
func redisURL(ps *Problems, name string, inline Secret, file string) (Secret, string) {
	switch {
	case file == "":
		return inline, prefix + name
	case !inline.IsZero():
		ps.add(prefix+name, "set either %s or %s_FILE, not both", prefix+name, prefix+name)
		return "", ""
	}
	b, msg := readSecretFile(file)
	if msg != "" {
		ps.add(prefix+name+"_FILE", "%s", msg)
		return "", ""
	}
	u := strings.TrimSpace(string(b))
	if u == "" {
		ps.add(prefix+name+"_FILE", "the file it names is empty: write the Redis URL in it, e.g. redis://:password@redis:6379/0")
		return "", ""
	}
	return Secret(u), prefix + name + "_FILE"
}

// checkRedisURL validates a Redis URL as go-redis reads it:
// redis://[[user]:password@]host[:port][/db] or rediss://..., with no query
// (go-redis would take it as client options). The message never repeats
// the URL: it may carry a password.
func checkRedisURL(s string) (tls bool, msg string) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return false, "is not a URL: want redis://host:6379/0 or rediss://host:6380/0"
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		tls = true
	default:
		return false, "must start with redis:// or rediss:// (TLS), e.g. redis://127.0.0.1:6379/0"
	}
	host, port := u.Hostname(), u.Port()
	switch {
	case host == "":
		return tls, "must name the Redis host, e.g. redis://127.0.0.1:6379/0"
	case u.Opaque != "" || u.RawQuery != "" || u.Fragment != "":
		return tls, "must be redis://[user:password@]host:port[/db], without a query or a fragment"
	case port != "":
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return tls, "has a port that is not a number from 1 to 65535"
		}
	}
	if strings.ContainsAny(host, " /") || (strings.Contains(u.Host, ":") && port == "" && net.ParseIP(host) == nil) {
		return tls, "has a malformed host"
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 || strings.Contains(db, "/") {
			return tls, "must end with a database number, e.g. /0, or nothing"
		}
	}
	return tls, ""
}

// LoadRedis reads only the fleet-mode variables (IMSPROXY_REDIS_*), for the
// commands that talk to Redis alone (imsproxy audit). It returns every
// problem at once, and a nil *Redis without IMSPROXY_REDIS_URL (or _FILE).
func LoadRedis(environ []string) (*Redis, error) {
	l := &loader{env: make(map[string]string), now: time.Now}
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && val != "" && strings.HasPrefix(k, prefix+"REDIS_") {
			l.env[k] = val
		}
	}
	var g globalVars
	ps := parseEnv(&g, l.env, prefix)
	r := l.redis(&ps, g)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// checkFleet validates what needs fleet mode: a shared token needs Redis
// and a token that is exchanged.
func checkFleet(ps *Problems, cfg *Config) {
	for _, r := range cfg.Routes {
		switch {
		case !r.ShareToken:
		case cfg.Redis == nil && !ps.has(prefix+"REDIS_URL"):
			ps.add(r.Var("SHARE_TOKEN"), "needs IMSPROXY_REDIS_URL: the replicas share the token through Redis")
		case r.Auth != AuthJWT && r.Auth != AuthOAuth && r.Auth != "":
			ps.add(r.Var("SHARE_TOKEN"), "applies only to AUTH=jwt or oauth: a fixed token (or none) is not exchanged")
		}
	}
}
