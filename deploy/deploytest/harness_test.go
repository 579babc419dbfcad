package deploytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// repoRoot is the product repository, two levels up from this module.
const repoRoot = "../.."

// bin holds the binaries the tests run: built once by TestMain with the
// Dockerfile's own build lines, so they are the binaries the image ships.
var bin struct{ imsproxy, fakeadobe, dir string }

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "imsproxy-deploytest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		stages, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
		if err == nil {
			err = buildAsDockerfile(stages, dir, hostPlatform())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "building as the Dockerfile does:", err)
			return 1
		}
		bin.dir = dir
		bin.imsproxy, bin.fakeadobe = filepath.Join(dir, "imsproxy"), filepath.Join(dir, "fakeadobe")
		return m.Run()
	}()
	os.Exit(code)
}

// emulator is the Adobe emulator, started in this process for one test.
type emulator struct {
	*fakeadobe.Server
	URL string
}

// startEmulator runs the Adobe emulator on 127.0.0.1 for the rest of the test.
func startEmulator(t *testing.T) *emulator {
	t.Helper()
	srv := fakeadobe.New(fakeadobe.Options{})
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &emulator{Server: srv, URL: base}
}

// credentials registers a credential set with the emulator; the tests
// share one RSA key (a fresh one takes a while).
func (e *emulator) credentials(t *testing.T) *fakeadobe.Credentials {
	t.Helper()
	c, err := e.NewCredentials(fakeadobe.CredentialOptions{Key: testutil.RSA(0)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// proxyProcess is a running imsproxy.
type proxyProcess struct {
	env    map[string]string // what it was started with
	stderr testutil.Buffer
	exited chan struct{}

	mu     sync.Mutex
	admin  string            // from its "listening" log lines
	routes map[string]string // route name → address
}

// startProxy runs the imsproxy binary with exactly env (plus PATH and HOME)
// and JSON logs, every listener moved to a free loopback port. It returns
// once every listener is bound; the env it ran with, listeners included,
// is in p.env.
func startProxy(t *testing.T, env map[string]string) *proxyProcess {
	t.Helper()
	full := map[string]string{"PATH": os.Getenv("PATH"), "HOME": t.TempDir()}
	maps.Copy(full, env)
	full["IMSPROXY_LOG_FORMAT"] = "json"
	full["IMSPROXY_ADMIN_LISTEN"] = "127.0.0.1:0"
	routes := routeNames(full)
	for _, r := range routes {
		full["IMSPROXY_"+strings.ToUpper(r)+"_LISTEN"] = "127.0.0.1:0"
	}
	listeners := len(routes) + 1
	p := &proxyProcess{routes: map[string]string{}, exited: make(chan struct{})}
	cmd := exec.Command(bin.imsproxy, "serve")
	for _, k := range slices.Sorted(maps.Keys(full)) {
		cmd.Env = append(cmd.Env, k+"="+full[k])
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	listening := make(chan struct{})
	go func() {
		defer close(p.exited)
		p.scan(stderr, listeners, listening)
		_ = cmd.Wait()
	}()
	select {
	case <-listening:
	case <-p.exited:
		t.Fatalf("imsproxy exited before listening:\n%s", p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("imsproxy did not listen within 30 s:\n%s", p.stderr.String())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	full["IMSPROXY_ADMIN_LISTEN"] = p.admin
	for name, addr := range p.routes {
		full["IMSPROXY_"+strings.ToUpper(name)+"_LISTEN"] = addr
	}
	p.env = full
	return p
}

// scan copies the proxy's log into p.stderr and closes listening once want
// listeners have logged their address.
func (p *proxyProcess) scan(r io.Reader, want int, listening chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := 0
	for sc.Scan() {
		p.stderr.Write(append(sc.Bytes(), '\n'))
		var rec struct{ Msg, Listener, Addr string }
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Msg != "listening" {
			continue
		}
		p.mu.Lock()
		if rec.Listener == "admin" {
			p.admin = rec.Addr
		} else {
			p.routes[strings.TrimPrefix(rec.Listener, "route ")] = rec.Addr
		}
		p.mu.Unlock()
		if seen++; seen == want {
			close(listening)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// routeNames are the routes an environment enables: IMSPROXY_ROUTES, or
// else stock and aem when any of their variables is set.
func routeNames(env map[string]string) []string {
	if v, ok := env["IMSPROXY_ROUTES"]; ok {
		var names []string
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		return names
	}
	var names []string
	for _, r := range []string{"stock", "aem"} {
		for k := range env {
			if strings.HasPrefix(k, "IMSPROXY_"+strings.ToUpper(r)+"_") {
				names = append(names, r)
				break
			}
		}
	}
	return names
}

// adminURL is the base URL of the admin listener.
func (p *proxyProcess) adminURL() string { return "http://" + p.env["IMSPROXY_ADMIN_LISTEN"] }

// routeURL is the base URL of a route's listener.
func (p *proxyProcess) routeURL(route string) string {
	return "http://" + p.env["IMSPROXY_"+strings.ToUpper(route)+"_LISTEN"]
}

// waitReady waits for /readyz to answer 200.
func (p *proxyProcess) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, 30*time.Second, "imsproxy /readyz to answer 200", func() bool {
		status, _ := httpGet(t, p.adminURL()+"/readyz")
		return status == http.StatusOK
	})
}

// waitFor polls cond every 50 ms until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpClient bounds every request the tests make.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// httpGet returns the status and body of a GET (status 0 when the request
// failed).
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// runWithEnv runs a command with exactly env, bounded in time, and returns
// its exit code (-1 when it could not run) and output.
func runWithEnv(env map[string]string, name string, args ...string) (int, string) {
	cmd := exec.Command(name, args...)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return -1, err.Error()
	}
	timer := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	if err != nil && cmd.ProcessState == nil {
		return -1, err.Error()
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// closedAddr is a loopback address where nothing listens: a port bound and
// closed again, so a connection is refused at once.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// startRedis runs a redis-server on a free loopback port for the rest of
// the test, without persistence, and returns its URL. It fails the test
// when redis-server is not installed: .ci/run installs it.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed (apt-get install redis-server)")
	}
	addr := closedAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	var out testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitFor(t, 10*time.Second, "redis-server to answer PING", func() bool {
		select {
		case <-exited:
			t.Fatalf("redis-server exited:\n%s", out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return false
		}
		reply, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && reply == "+PONG\r\n"
	})
	return "redis://" + addr + "/0"
}
