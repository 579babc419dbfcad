package deploytest

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
)

// secretVariables are the route and global variables that hold a secret
// themselves. A deployment sets their _FILE form instead: a file of a
// mounted secret can be rotated in place and is reloaded, while an
// environment variable is fixed when the process starts and is shown by
// `docker inspect` and `kubectl describe`.
var secretVariables = []string{"CLIENT_SECRET", "PRIVATE_KEY", "JWT_PAYLOAD", "ACCESS_TOKEN", "ADMIN_TOKEN"}

// checkEnvNames fails for every IMSPROXY_ variable imsproxy does not read
// (the product's own list) and for every secret set inline rather than
// through its _FILE variable.
func checkEnvNames(t *testing.T, where string, names []string) {
	t.Helper()
	slices.Sort(names)
	for _, k := range names {
		if !strings.HasPrefix(k, "IMSPROXY_") {
			continue
		}
		if !config.KnownVariable(k) {
			t.Errorf("%s sets %s, which imsproxy does not know", where, k)
		}
		for _, s := range secretVariables {
			if strings.HasSuffix(k, "_"+s) {
				t.Errorf("%s sets the secret %s itself: set %s_FILE to a file of a mounted secret", where, k, k)
			}
		}
	}
}

// checkConfigLoads fails unless imsproxy accepts env as its configuration
// (config.Load is what serve and check run first).
func checkConfigLoads(t *testing.T, what string, env map[string]string) {
	t.Helper()
	if err := loadConfig(env); err != nil {
		t.Errorf("%s: imsproxy refuses the configuration: %v", what, err)
	}
}

// loadConfig is config.Load of env.
func loadConfig(env map[string]string) error {
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	_, err := config.Load(environ)
	return err
}

func mustAtoi(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("%q is not a port: %v", s, err)
	}
	return uint32(n)
}
