package fleet

import (
	"testing"

	"github.com/imsproxy/imsproxy/config"
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
