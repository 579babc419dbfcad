package integration

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// loadCompose parses a compose file as docker compose would, with exactly
// env for interpolation (not this process's environment).
func loadCompose(t *testing.T, path string, env []string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)), cli.WithEnv(env), cli.WithDiscardEnvFile)
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

// checkKnownVariables fails for any IMSPROXY_ variable config does not know.
func checkKnownVariables(t *testing.T, p *types.Project) {
	t.Helper()
	for name, s := range p.Services {
		for k := range s.Environment {
			if strings.HasPrefix(k, "IMSPROXY_") && !config.KnownVariable(k) {
				t.Errorf("service %s sets %s, which imsproxy does not know", name, k)
			}
		}
	}
}

// TestCompose_FileIsConsistent: docker-compose.yml parses, sets only
// variables imsproxy knows, and names only stages, services and volumes
// that exist.
func TestCompose_FileIsConsistent(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, "../docker-compose.yml", nil)
	checkKnownVariables(t, p)
	stages := parseDockerfile(t)

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

	proxy, adobe := p.Services["imsproxy"], p.Services["fakeadobe"]
	if proxy.NetworkMode != "service:fakeadobe" {
		t.Fatalf("imsproxy network_mode %q: it must share the emulator's loopback", proxy.NetworkMode)
	}
	// imsproxy's published ports are the emulator service's: each of its
	// listeners is published, on the host's loopback only.
	env := serviceEnv(proxy)
	for _, v := range []string{"IMSPROXY_STOCK_LISTEN", "IMSPROXY_AEM_LISTEN", "IMSPROXY_ADMIN_LISTEN"} {
		_, port, err := net.SplitHostPort(env[v])
		if err != nil {
			t.Errorf("%s = %q: %v", v, env[v], err)
			continue
		}
		published := slices.ContainsFunc(adobe.Ports, func(pc types.ServicePortConfig) bool {
			return pc.Published == port && pc.HostIP == "127.0.0.1"
		})
		if !published {
			t.Errorf("%s port %s is not published on 127.0.0.1 (ports %+v)", v, port, adobe.Ports)
		}
	}
	if env["IMSPROXY_ALLOW_REMOTE"] != "true" {
		t.Error("imsproxy listens on 0.0.0.0 inside the container and needs IMSPROXY_ALLOW_REMOTE=true")
	}
	if dep, ok := proxy.DependsOn["fakeadobe"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("imsproxy must wait for the emulator to be healthy (its credentials written): %+v", proxy.DependsOn)
	}
	readOnly := slices.ContainsFunc(proxy.Volumes, func(v types.ServiceVolumeConfig) bool { return v.ReadOnly })
	if !readOnly {
		t.Error("imsproxy should mount the credentials read-only")
	}
}

// TestCompose_SidecarExampleIsValid: the commented sidecar example, once
// uncommented, parses, sets only known variables and is a configuration
// imsproxy accepts (loopback listeners, so no IMSPROXY_ALLOW_REMOTE).
func TestCompose_SidecarExampleIsValid(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "# --- sidecar example")
	block, _, ok2 := strings.Cut(rest, "# --- end of sidecar example")
	if !ok || !ok2 {
		t.Fatal("docker-compose.yml has no delimited sidecar example")
	}
	// The YAML starts at the first commented service ("  # name:"); from
	// there, "  # " and "  #" uncomment a line.
	var doc strings.Builder
	doc.WriteString("services:\n")
	serviceRE := regexp.MustCompile(`^  # [a-z][a-z0-9-]*:$`)
	started := false
	for _, l := range strings.Split(block, "\n") {
		started = started || serviceRE.MatchString(l)
		if rest, ok := strings.CutPrefix(l, "  #"); started && ok {
			doc.WriteString("  " + strings.TrimPrefix(rest, " ") + "\n")
		}
	}
	path := filepath.Join(t.TempDir(), "docker-compose.yml")
	if err := os.WriteFile(path, []byte(doc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := loadCompose(t, path, []string{"STOCK_CLIENT_ID=0123456789abcdef0123456789abcdef", "STOCK_CLIENT_SECRET=p8e-example"})
	checkKnownVariables(t, p)
	side, ok := p.Services["myapp-imsproxy"]
	if !ok || side.NetworkMode != "service:myapp" {
		t.Fatalf("the example has no sidecar sharing myapp's network: %v\n%s", p.ServiceNames(), doc.String())
	}
	var environ []string
	for k, v := range serviceEnv(side) {
		environ = append(environ, k+"="+v)
	}
	if _, err := config.Load(environ); err != nil {
		t.Errorf("the sidecar's configuration does not load: %v", err)
	}
}

// TestCompose_RunsAsWired runs the two services as compose would, without
// Docker: fakeadobe (built by the Dockerfile's own lines) with the file's
// command, its health check until healthy, then imsproxy with the file's
// environment — the volume a temporary directory, the emulator on a free
// port — and searches Stock and lists AEM through it.
func TestCompose_RunsAsWired(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, "../docker-compose.yml", nil)
	bin := filepath.Join(buildAsDockerfile(t), "fakeadobe")
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
	emu := exec.CommandContext(ctx, bin, args...)
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
		return exec.Command(bin, test[2:]...).Run() == nil
	})

	env := serviceEnv(p.Services["imsproxy"])
	for k, v := range env {
		env[k] = strings.ReplaceAll(strings.ReplaceAll(v, fileAddr, emuAddr), "/creds", vol)
		// startProxy gives every listener a free loopback port and reads
		// the JSON logs.
		if strings.HasSuffix(k, "_LISTEN") || k == "IMSPROXY_LOG_FORMAT" {
			delete(env, k)
		}
	}
	proxy := startProxy(t, env)
	proxy.waitReady()
	if status, _, body := httpGet(t, proxy.URL("stock")+searchPath); status != http.StatusOK {
		t.Errorf("search through the compose wiring: %d %s", status, body)
	}
	if status, _, body := httpGet(t, proxy.URL("aem")+"/api/assets.json"); status != http.StatusOK {
		t.Errorf("AEM listing through the compose wiring: %d %s", status, body)
	}
}
