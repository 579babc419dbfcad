package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLoad_FleetModeProblems(t *testing.T) {
	fleet := with(oauthStock(), "IMSPROXY_REDIS_URL", "redis://127.0.0.1:6379/0")
	pem := writeFile(t, "ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"an http URL", with(oauthStock(), "IMSPROXY_REDIS_URL", "http://127.0.0.1:6379"),
			"IMSPROXY_REDIS_URL: must start with redis:// or rediss:// (TLS), e.g. redis://127.0.0.1:6379/0"},
		{"no host", with(oauthStock(), "IMSPROXY_REDIS_URL", "redis:///0"),
			"IMSPROXY_REDIS_URL: must name the Redis host, e.g. redis://127.0.0.1:6379/0"},
		{"a query", with(oauthStock(), "IMSPROXY_REDIS_URL", "redis://h:6379/0?dial_timeout=1s"),
			"IMSPROXY_REDIS_URL: must be redis://[user:password@]host:port[/db], without a query or a fragment"},
		{"a port out of range", with(oauthStock(), "IMSPROXY_REDIS_URL", "redis://h:99999"),
			"IMSPROXY_REDIS_URL: has a port that is not a number from 1 to 65535"},
		{"a database that is not a number", with(oauthStock(), "IMSPROXY_REDIS_URL", "redis://h:6379/x"),
			"IMSPROXY_REDIS_URL: must end with a database number, e.g. /0, or nothing"},
		{"a prefix with a brace", with(fleet, "IMSPROXY_REDIS_PREFIX", "a{b}"), "IMSPROXY_REDIS_PREFIX: ..."},
		{"a prefix with a space", with(fleet, "IMSPROXY_REDIS_PREFIX", "a b"), "IMSPROXY_REDIS_PREFIX: ..."},
		{"a zero timeout", with(fleet, "IMSPROXY_REDIS_TIMEOUT", "0s"), "IMSPROXY_REDIS_TIMEOUT: must be positive, e.g. 500ms"},
		{"a CA file without TLS", with(fleet, "IMSPROXY_REDIS_CA_FILE", pem), "IMSPROXY_REDIS_CA_FILE: applies only to a rediss:// (TLS) IMSPROXY_REDIS_URL or IMSPROXY_REDIS_CACHE_URL"},
		{"a cache URL that is not Redis", with(fleet, "IMSPROXY_REDIS_CACHE_URL", "https://u:secretpw@h"),
			"IMSPROXY_REDIS_CACHE_URL: must start with redis:// or rediss:// (TLS), e.g. redis://127.0.0.1:6379/0"},
		{"a cache URL without Redis", with(oauthStock(), "IMSPROXY_REDIS_CACHE_URL", "redis://h"),
			"IMSPROXY_REDIS_CACHE_URL: applies only in fleet mode: set IMSPROXY_REDIS_URL too, or remove it"},
		{"a CA file that is not PEM", with(fleet, "IMSPROXY_REDIS_URL", "rediss://h:6380", "IMSPROXY_REDIS_CA_FILE", writeFile(t, "x", "x")),
			"IMSPROXY_REDIS_CA_FILE: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"},
		{"a Redis variable without the URL", with(oauthStock(), "IMSPROXY_REDIS_PREFIX", "p"),
			"IMSPROXY_REDIS_PREFIX: applies only in fleet mode: set IMSPROXY_REDIS_URL too, or remove it"},
		{"both the URL and its file", with(fleet, "IMSPROXY_REDIS_URL_FILE", writeFile(t, "url", "redis://:secretpw@h:6379\n")),
			"IMSPROXY_REDIS_URL: set either IMSPROXY_REDIS_URL or IMSPROXY_REDIS_URL_FILE, not both"},
		{"a URL file that cannot be read", with(oauthStock(), "IMSPROXY_REDIS_URL_FILE", "/nonexistent/redis-url"),
			"IMSPROXY_REDIS_URL_FILE: cannot read /nonexistent/redis-url: no such file or directory"},
		{"the URL itself in the file variable", with(oauthStock(), "IMSPROXY_REDIS_URL_FILE", "redis://:secretpw@h:6379"),
			"IMSPROXY_REDIS_URL_FILE: cannot read the file it names: no such file or directory (the value is not repeated: it does not look like a path, and may be the secret itself)"},
		{"an empty URL file", with(oauthStock(), "IMSPROXY_REDIS_URL_FILE", writeFile(t, "empty", "\n")),
			"IMSPROXY_REDIS_URL_FILE: the file it names is empty: write the Redis URL in it, e.g. redis://:password@redis:6379/0"},
		{"a URL file holding no Redis URL", with(oauthStock(), "IMSPROXY_REDIS_URL_FILE", writeFile(t, "http", "https://u:secretpw@h")),
			"IMSPROXY_REDIS_URL_FILE: must start with redis:// or rediss:// (TLS), e.g. redis://127.0.0.1:6379/0"},
		{"a cache URL file without Redis", with(oauthStock(), "IMSPROXY_REDIS_CACHE_URL_FILE", writeFile(t, "cache", "redis://h")),
			"IMSPROXY_REDIS_CACHE_URL_FILE: applies only in fleet mode: set IMSPROXY_REDIS_URL too, or remove it"},
		{"a shared token without Redis", with(oauthStock(), "IMSPROXY_STOCK_SHARE_TOKEN", "true"),
			"IMSPROXY_STOCK_SHARE_TOKEN: needs IMSPROXY_REDIS_URL: the replicas share the token through Redis"},
		{"a shared fixed token", with(map[string]string{"IMSPROXY_STOCK_ACCESS_TOKEN": "t", "IMSPROXY_REDIS_URL": "redis://h"}, "IMSPROXY_STOCK_SHARE_TOKEN", "true"),
			"IMSPROXY_STOCK_SHARE_TOKEN: applies only to AUTH=jwt or oauth: a fixed token (or none) is not exchanged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loadProblems(t, tc.env)
			wantProblems(t, got, tc.want)
			for _, g := range got {
				if strings.Contains(g, "secretpw") {
					t.Errorf("a problem repeats the URL's password: %s", g)
				}
			}
		})
	}
}

func TestLoad_FleetModeLifts(t *testing.T) {
	t.Run("a daily limit needs no audit log with Redis", func(t *testing.T) {
		cfg := mustLoad(t, with(oauthStock(), "IMSPROXY_STOCK_ALLOW_LICENSE", "true", "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "5",
			"IMSPROXY_REDIS_URL", "rediss://app:secretpw@redis.internal:6380/2", "IMSPROXY_STOCK_SHARE_TOKEN", "true"))
		r := cfg.Redis
		if r == nil || !r.TLS || r.Prefix != "imsproxy" || r.Timeout != 500*time.Millisecond || !cfg.Routes[0].ShareToken {
			t.Fatalf("Redis = %+v, share token %v", r, cfg.Routes[0].ShareToken)
		}
		if s := fmt.Sprintf("%v %+v %#v", r, r, r.URL); strings.Contains(s, "secretpw") {
			t.Errorf("the Redis configuration prints its password: %s", s)
		}
	})
	t.Run("a cache instance of its own", func(t *testing.T) {
		cfg := mustLoad(t, with(oauthStock(), "IMSPROXY_REDIS_URL", "redis://state:6379", "IMSPROXY_REDIS_CACHE_URL", "rediss://cache:6380/1",
			"IMSPROXY_REDIS_CA_FILE", writeFile(t, "ca.pem", certPEM(t, rsaKey(0), testNow.Add(time.Hour)))))
		if r := cfg.Redis; r.CacheURL.Reveal() != "rediss://cache:6380/1" || !r.CacheTLS || r.TLS || r.RootCAs == nil {
			t.Errorf("Redis = %+v", r)
		}
	})
	t.Run("the URLs from files", func(t *testing.T) {
		cfg := mustLoad(t, with(oauthStock(), "IMSPROXY_REDIS_URL_FILE", writeFile(t, "url", "rediss://app:secretpw@state:6380/2\n"),
			"IMSPROXY_REDIS_CACHE_URL_FILE", writeFile(t, "cache-url", "redis://:secretpw@cache:6379")))
		if r := cfg.Redis; r == nil || r.URL.Reveal() != "rediss://app:secretpw@state:6380/2" || !r.TLS || r.CacheURL.Reveal() != "redis://:secretpw@cache:6379" {
			t.Fatalf("Redis = %+v", r)
		}
		r, err := LoadRedis([]string{"IMSPROXY_REDIS_URL_FILE=" + writeFile(t, "url", "redis://127.0.0.1:1")})
		if err != nil || r == nil || r.URL.Reveal() != "redis://127.0.0.1:1" {
			t.Fatalf("LoadRedis = %+v, %v", r, err)
		}
	})
	t.Run("no Redis without the URL", func(t *testing.T) {
		if cfg := mustLoad(t, oauthStock()); cfg.Redis != nil {
			t.Errorf("Redis = %+v", cfg.Redis)
		}
	})
	t.Run("LoadRedis reads the Redis variables alone", func(t *testing.T) {
		r, err := LoadRedis([]string{"IMSPROXY_REDIS_URL=redis://127.0.0.1:1", "IMSPROXY_REDIS_PREFIX=p", "IMSPROXY_STOCK_TIMEOUT=bad"})
		if err != nil || r == nil || r.Prefix != "p" {
			t.Fatalf("LoadRedis = %+v, %v", r, err)
		}
		if _, err := LoadRedis([]string{"IMSPROXY_REDIS_URL=http://x"}); err == nil || !strings.Contains(err.Error(), "IMSPROXY_REDIS_URL") {
			t.Errorf("LoadRedis of an http URL: %v", err)
		}
	})
}
