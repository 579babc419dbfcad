package deploytest

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// The compose files, relative to this module.
var (
	demoCompose    = filepath.Join(repoRoot, "docker-compose.yml")
	sidecarCompose = filepath.Join(repoRoot, "deploy", "compose", "sidecar.yml")
)

// loadCompose parses a compose file as docker compose would, validated
// against the compose schema, with exactly env for interpolation (not this
// process's environment) and the given profiles enabled.
func loadCompose(t *testing.T, path string, env []string, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)), cli.WithEnv(env), cli.WithDiscardEnvFile,
		cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s does not load: %v", path, err)
	}
	return p
}

// serviceEnv is a service's environment as NAME=value pairs.
func serviceEnv(s types.ServiceConfig) map[string]string {
	env := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// proxyServices are the services that run imsproxy: those setting an
// IMSPROXY_ variable.
func proxyServices(p *types.Project) map[string]types.ServiceConfig {
	out := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		for k := range s.Environment {
			if strings.HasPrefix(k, "IMSPROXY_") {
				out[name] = s
				break
			}
		}
	}
	return out
}

// checkComposeProxy checks what every imsproxy service must get right:
// variables imsproxy knows, secrets only as files, and the compose secrets
// those files come from declared.
func checkComposeProxy(t *testing.T, p *types.Project, name string, s types.ServiceConfig) {
	t.Helper()
	env := serviceEnv(s)
	checkEnvNames(t, "service "+name, slices.Collect(maps.Keys(env)))
	for k, v := range env {
		if !strings.HasSuffix(k, "_FILE") || !strings.HasPrefix(v, "/run/secrets/") {
			continue
		}
		// compose-go fills in the default target, /run/secrets/<source>.
		mounted := slices.ContainsFunc(s.Secrets, func(sec types.ServiceSecretConfig) bool {
			return sec.Target == v || (sec.Target == "" && "/run/secrets/"+sec.Source == v)
		})
		if !mounted {
			t.Errorf("service %s: %s=%s names no secret of the service (%+v)", name, k, v, s.Secrets)
		}
	}
	for _, sec := range s.Secrets {
		if _, ok := p.Secrets[sec.Source]; !ok {
			t.Errorf("service %s uses secret %s: not declared", name, sec.Source)
		}
	}
}

// checkHardened fails unless the service runs with a read-only root file
// system, no capabilities, no-new-privileges and a non-root user (its own
// user: or the USER of the Dockerfile stage it builds).
func checkHardened(t *testing.T, name string, s types.ServiceConfig, stages []dockerStage) {
	t.Helper()
	if !s.ReadOnly {
		t.Errorf("service %s: want read_only: true", name)
	}
	if !slices.Equal(s.CapDrop, []string{"ALL"}) || len(s.CapAdd) > 0 {
		t.Errorf("service %s: cap_drop %v cap_add %v, want cap_drop: [ALL] and nothing added", name, s.CapDrop, s.CapAdd)
	}
	if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("service %s: security_opt %v, want no-new-privileges:true", name, s.SecurityOpt)
	}
	user := s.User
	if user == "" && s.Build != nil {
		if st := stageNamed(stages, s.Build.Target); st != nil {
			for _, l := range st.lines {
				if l.op == "USER" {
					user = l.args
				}
			}
		}
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root:") {
		t.Errorf("service %s runs as %q, want a non-root user", name, user)
	}
}

// TestCompose_FileIsConsistent: docker-compose.yml parses with every
// profile, sets only variables imsproxy knows, names only stages, services,
// volumes and secrets that exist, and publishes every imsproxy listener on
// the host's loopback.
func TestCompose_FileIsConsistent(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, demoCompose, nil, "*")
	stages := dockerfile(t)
	for name, s := range p.Services {
		if s.Build != nil && stageNamed(stages, s.Build.Target) == nil {
			t.Errorf("service %s builds target %q: no such Dockerfile stage", name, s.Build.Target)
		}
		if other, ok := strings.CutPrefix(s.NetworkMode, "service:"); ok {
			if _, exists := p.Services[other]; !exists {
				t.Errorf("service %s: network_mode %s names no service", name, s.NetworkMode)
			}
		}
		for dep := range s.DependsOn {
			if _, exists := p.Services[dep]; !exists {
				t.Errorf("service %s depends on %s: no such service", name, dep)
			}
		}
		for _, v := range s.Volumes {
			if _, exists := p.Volumes[v.Source]; v.Type == types.VolumeTypeVolume && !exists {
				t.Errorf("service %s mounts volume %s: not declared", name, v.Source)
			}
		}
	}
	for name, sec := range p.Secrets {
		if _, err := os.Stat(sec.File); sec.File == "" || err != nil {
			t.Errorf("secret %s: file %q: %v", name, sec.File, err)
		}
	}

	adobe := p.Services["fakeadobe"]
	proxies := proxyServices(p)
	if len(proxies) < 3 {
		t.Errorf("imsproxy services %v: want the demo and two fleet replicas", slices.Sorted(maps.Keys(proxies)))
	}
	for name, s := range proxies {
		checkComposeProxy(t, p, name, s)
		if s.NetworkMode != "service:fakeadobe" {
			t.Errorf("service %s: network_mode %q: it must share the emulator's loopback", name, s.NetworkMode)
		}
		// imsproxy's published ports are the emulator service's: each of
		// its listeners is published, on the host's loopback only.
		env := serviceEnv(s)
		for _, v := range []string{"IMSPROXY_STOCK_LISTEN", "IMSPROXY_AEM_LISTEN", "IMSPROXY_ADMIN_LISTEN"} {
			_, port, err := net.SplitHostPort(env[v])
			if err != nil {
				t.Errorf("service %s: %s = %q: %v", name, v, env[v], err)
				continue
			}
			published := slices.ContainsFunc(adobe.Ports, func(pc types.ServicePortConfig) bool {
				return pc.Published == port && pc.HostIP == "127.0.0.1" && pc.Target == mustAtoi(t, port)
			})
			if !published {
				t.Errorf("service %s: %s port %s is not published on 127.0.0.1", name, v, port)
			}
		}
		if env["IMSPROXY_ALLOW_REMOTE"] != "true" || env["IMSPROXY_ADMIN_TOKEN_FILE"] == "" {
			t.Errorf("service %s listens on 0.0.0.0 inside the container: it needs IMSPROXY_ALLOW_REMOTE=true and an admin token", name)
		}
		if dep, ok := s.DependsOn["fakeadobe"]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("service %s must wait for the emulator to be healthy (its credentials written): %+v", name, s.DependsOn)
		}
		for _, v := range s.Volumes {
			if v.Source == "creds" && !v.ReadOnly {
				t.Errorf("service %s should mount the credentials read-only", name)
			}
		}
	}
	// Every published port belongs to exactly one listener.
	seen := map[string]string{}
	for name, s := range proxies {
		for k, v := range serviceEnv(s) {
			if strings.HasSuffix(k, "_LISTEN") {
				if other, dup := seen[v]; dup {
					t.Errorf("%s %s and %s listen on the same %s in one namespace", name, k, other, v)
				}
				seen[v] = name + " " + k
			}
		}
	}
}

// TestCompose_ContainersAreHardened: every service of the demo, the fleet
// and the sidecar example runs read-only, without capabilities or
// privilege escalation, as a non-root user.
func TestCompose_ContainersAreHardened(t *testing.T) {
	t.Parallel()
	stages := dockerfile(t)
	for name, s := range loadCompose(t, demoCompose, nil, "*").Services {
		checkHardened(t, name, s, stages)
	}
	side := loadCompose(t, sidecarCompose, []string{"STOCK_CLIENT_ID=0123456789abcdef0123456789abcdef"})
	s := side.Services["myapp-imsproxy"]
	// The sidecar runs the image built from the Dockerfile's default
	// (last) stage.
	s.Build = &types.BuildConfig{Target: stages[len(stages)-1].name}
	checkHardened(t, "myapp-imsproxy", s, stages)
}

// TestCompose_FleetSharesOneRedis: the fleet profile runs at least two
// imsproxy replicas with the same credentials and one Redis URL, and that
// Redis keeps its state: an append-only file on a volume, noeviction,
// healthy before the replicas start. Each replica's configuration loads.
func TestCompose_FleetSharesOneRedis(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, demoCompose, nil, "fleet")
	var replicas []string
	redisURL := ""
	for name, s := range proxyServices(p) {
		env := serviceEnv(s)
		u, ok := env["IMSPROXY_REDIS_URL"]
		if !ok {
			continue
		}
		replicas = append(replicas, name)
		if redisURL != "" && u != redisURL {
			t.Errorf("replica %s uses Redis %s, another %s: the fleet must share one", name, u, redisURL)
		}
		redisURL = u
	}
	if len(replicas) < 2 {
		t.Fatalf("the fleet profile has imsproxy replicas %v with IMSPROXY_REDIS_URL: want at least two", replicas)
	}
	u, err := url.Parse(redisURL)
	if err != nil || u.Scheme != "redis" {
		t.Fatalf("IMSPROXY_REDIS_URL %q: want redis://service:port", redisURL)
	}
	redis, ok := p.Services[u.Hostname()]
	if !ok {
		t.Fatalf("IMSPROXY_REDIS_URL names host %s: no such service", u.Hostname())
	}
	args := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync always", "--maxmemory-policy noeviction"} {
		if !strings.Contains(args, want) {
			t.Errorf("Redis command %q lacks %s", args, want)
		}
	}
	dataOnVolume := slices.ContainsFunc(redis.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Type == types.VolumeTypeVolume && v.Target == "/data"
	})
	if !dataOnVolume {
		t.Error("Redis keeps /data in the container: its append-only file would not survive a re-creation")
	}
	if redis.HealthCheck == nil || len(redis.HealthCheck.Test) == 0 {
		t.Error("Redis has no health check for the replicas to wait on")
	}

	dir := t.TempDir()
	emu := startEmulator(t)
	files, err := emu.credentials(t).WriteFiles(filepath.Join(dir, "creds"), fakeadobe.Endpoints{IMS: emu.URL, Stock: emu.URL})
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "admin_token")
	if err := os.WriteFile(token, []byte("an-admin-token-of-the-test-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	credentials := ""
	for _, name := range replicas {
		s := p.Services[name]
		if dep, ok := s.DependsOn[redis.Name]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("replica %s must wait for Redis to be healthy: %+v", name, s.DependsOn)
		}
		env := serviceEnv(s)
		if credentials != "" && env["IMSPROXY_STOCK_CREDENTIALS_FILE"] != credentials {
			t.Errorf("replica %s uses other credentials than its peers", name)
		}
		credentials = env["IMSPROXY_STOCK_CREDENTIALS_FILE"]
		for k, v := range env {
			v = strings.ReplaceAll(v, "/creds/aem-service-credentials.json", files.ServiceCredentials)
			env[k] = strings.ReplaceAll(v, "/run/secrets/admin_token", token)
		}
		checkConfigLoads(t, "replica "+name, env)
	}
}

// TestCompose_SidecarExampleIsValid: deploy/compose/sidecar.yml parses,
// sets only known variables, takes its client secret from a compose
// secret file, and is a configuration imsproxy accepts (loopback
// listeners, so no IMSPROXY_ALLOW_REMOTE).
func TestCompose_SidecarExampleIsValid(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, sidecarCompose, []string{"STOCK_CLIENT_ID=0123456789abcdef0123456789abcdef"})
	side, ok := p.Services["myapp-imsproxy"]
	if !ok || side.NetworkMode != "service:myapp" {
		t.Fatalf("the example has no sidecar sharing myapp's network: %v", p.ServiceNames())
	}
	checkComposeProxy(t, p, "myapp-imsproxy", side)
	env := serviceEnv(side)
	secretFile := filepath.Join(t.TempDir(), "stock_client_secret")
	if err := os.WriteFile(secretFile, []byte("p8e-example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if env["IMSPROXY_STOCK_CLIENT_SECRET_FILE"] != "/run/secrets/stock_client_secret" {
		t.Fatalf("IMSPROXY_STOCK_CLIENT_SECRET_FILE = %q, want the compose secret /run/secrets/stock_client_secret", env["IMSPROXY_STOCK_CLIENT_SECRET_FILE"])
	}
	env["IMSPROXY_STOCK_CLIENT_SECRET_FILE"] = secretFile
	checkConfigLoads(t, "the sidecar", env)
	// The sidecar stops before the application (it depends on its
	// network): it must keep serving a while, and compose must wait for it.
	delay, err := time.ParseDuration(env["IMSPROXY_SHUTDOWN_DELAY"])
	if err != nil || delay <= 0 {
		t.Errorf("IMSPROXY_SHUTDOWN_DELAY = %q: the sidecar is stopped before the application and must outlive its last calls", env["IMSPROXY_SHUTDOWN_DELAY"])
	}
	if grace := side.StopGracePeriod; grace == nil || time.Duration(*grace) < delay+15*time.Second {
		t.Errorf("stop_grace_period %v: want at least IMSPROXY_SHUTDOWN_DELAY + the 15 s drain", grace)
	}
}

// TestCompose_RunsAsWired runs the demo's two services as compose would,
// without Docker: fakeadobe (built by the Dockerfile's own lines) with the
// file's command, its health check until healthy, then imsproxy with the
// file's environment — the volume and the secret temporary files, the
// emulator on a free port — and searches Stock and lists AEM through it.
func TestCompose_RunsAsWired(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, demoCompose, nil)
	vol := t.TempDir()
	const image = "/usr/local/bin/fakeadobe"
	adobe := p.Services["fakeadobe"]

	// The emulator's address in the file becomes a free port.
	var fileAddr string
	args := slices.Clone([]string(adobe.Command))
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == "-listen":
			fileAddr, args[i] = a, "127.0.0.1:0"
		case a == "/creds":
			args[i] = vol
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	emu := exec.CommandContext(ctx, bin.fakeadobe, args...)
	var stderr testutil.Buffer
	emu.Stderr = &stderr
	stdout, err := emu.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = emu.Wait() })
	addr, exited := make(chan string, 1), make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "fakeadobe listening on http://"); ok {
				addr <- strings.Fields(rest)[0]
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var emuAddr string
	select {
	case emuAddr = <-addr:
	case <-exited:
		t.Fatalf("fakeadobe %q exited: %s", args, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("fakeadobe did not start with the compose command")
	}

	// The health check, exactly as the file has it.
	test := slices.Clone([]string(adobe.HealthCheck.Test))
	if len(test) < 2 || test[0] != "CMD" || test[1] != image {
		t.Fatalf("healthcheck %q: want [CMD %s ...]", test, image)
	}
	for i, a := range test {
		test[i] = strings.ReplaceAll(strings.ReplaceAll(a, fileAddr, emuAddr), "/creds", vol)
	}
	waitFor(t, 30*time.Second, "the compose health check to pass", func() bool {
		return exec.Command(bin.fakeadobe, test[2:]...).Run() == nil
	})

	secrets := t.TempDir()
	for name, sec := range p.Secrets {
		data, err := os.ReadFile(sec.File)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(secrets, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := serviceEnv(p.Services["imsproxy"])
	for k, v := range env {
		v = strings.ReplaceAll(strings.ReplaceAll(v, fileAddr, emuAddr), "/creds", vol)
		env[k] = strings.ReplaceAll(v, "/run/secrets", secrets)
	}
	proxy := startProxy(t, env)
	proxy.waitReady(t)
	if status, body := httpGet(t, proxy.routeURL("stock")+searchPath); status != http.StatusOK {
		t.Errorf("search through the compose wiring: %d %s", status, body)
	}
	if status, body := httpGet(t, proxy.routeURL("aem")+"/api/assets.json"); status != http.StatusOK {
		t.Errorf("AEM listing through the compose wiring: %d %s", status, body)
	}
}

// searchPath is a Stock search the emulator answers.
const searchPath = "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat&search_parameters%5Blimit%5D=2"
