package fleet

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/redistest"
	"github.com/imsproxy/imsproxy/proxy/audit"
)

// What config accepts, New builds: a configuration that imsproxy check
// passes never fails serve at start.
func TestNew_BuildsEveryURLTheConfigurationAccepts(t *testing.T) {
	accepted := 0
	for _, u := range []string{
		"redis://127.0.0.1:6379/0", "redis://h", "redis://h:6379", "redis://h:6379/", "redis://h/15", "redis://h/+1", "redis://h/00",
		"rediss://h:6380/0", "redis://user@h", "redis://:pass@h", "redis://user:p%40ss@h:1/2", "redis://[::1]:6379/0", "redis://[::1]",
		"redis://H.EXAMPLE.COM:6379", "redis://h:6379/-1", "redis://h:0", "redis://h:65536", "redis://h/0/1", "redis://h?x=1",
		"redis://h#f", "redis:h", "redis://h:x", "unix:///tmp/redis.sock", "redis://h h", "redis://:6379",
	} {
		cfg, err := config.LoadRedis([]string{"IMSPROXY_REDIS_URL=" + u})
		if err != nil {
			continue
		}
		accepted++
		c, err := New(cfg, nil, nil)
		if err != nil {
			t.Errorf("config accepts %q but New refuses it: %v", u, err)
			continue
		}
		_ = c.Close()
	}
	if accepted < 12 {
		t.Errorf("config accepted only %d of the URLs", accepted)
	}
}

// CheckVersion passes on the Redis the tests run (7.x) and trims the audit
// stream as an append does: records younger than the retention stay (the
// trim is approximate: older ones may stay a while too).
func TestCheckVersion_TrimsOnlyWhatAnAppendWould(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := replica(t, srv)
	ctx := context.Background()
	rdb := inspect(t, srv)
	old := strconv.FormatInt(time.Now().Add(-auditRetention-time.Hour).UnixMilli(), 10) + "-0"
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: c.auditKey(), ID: old, Values: []any{"record", "{}"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Trail().Write(audit.Record{Route: "stock"}); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckVersion(ctx); err != nil {
		t.Fatalf("CheckVersion: %v", err)
	}
	recent, err := rdb.XRange(ctx, c.auditKey(), "("+old, "+").Result()
	if err != nil || len(recent) != 1 {
		t.Errorf("after the check the recent records are %v (%v), want the one written", recent, err)
	}
}

// A user that may not trim is told so, not that its Redis is too old.
func TestCheckVersion_NamesWhatFailed(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	if err := inspect(t, srv).Do(ctx, "ACL", "SETUSER", "notrim", "on", ">a-long-password", "~*", "&*", "+@all", "-xtrim").Err(); err != nil {
		t.Fatal(err)
	}
	c := replicaOf(t, &config.Redis{URL: config.Secret("redis://notrim:a-long-password@" + srv.Addr + "/0"), Prefix: "test", Timeout: time.Second})
	err := c.CheckVersion(ctx)
	if err == nil || !strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "6.2") {
		t.Errorf("CheckVersion as a user without XTRIM: %v", err)
	}
}

// A rediss:// URL at a Redis without TLS gets no answer: the error says
// what is likely wrong.
func TestPing_TLSToAPlainRedisSaysSo(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := replicaOf(t, &config.Redis{URL: config.Secret("rediss://" + srv.Addr + "/0"), Prefix: "test", Timeout: 300 * time.Millisecond})
	err := c.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does that Redis speak TLS") {
		t.Errorf("Ping over TLS to a plain Redis: %v", err)
	}
}
