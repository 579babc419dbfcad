// Package integration holds the end-to-end tests: they build the real
// imsproxy binary and drive it against the Adobe emulator (fakeadobe).
package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// imsproxyBin is the binary under test, built once by TestMain.
var imsproxyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imsproxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imsproxyBin = filepath.Join(dir, "imsproxy")
	args := []string{"build", "-o", imsproxyBin}
	if raceEnabled {
		// The binary is race-checked too when the tests are.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/imsproxy")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building imsproxy:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// adobe is an emulator started for one test.
type adobe struct {
	*fakeadobe.Server
	URL string
}

// startAdobe runs the emulator on 127.0.0.1 for the rest of the test.
func startAdobe(t *testing.T, opts fakeadobe.Options) *adobe {
	t.Helper()
	if opts.SigningKey == nil {
		opts.SigningKey = sharedKey(t) // a fresh key takes seconds under -race
	}
	srv := fakeadobe.New(opts)
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &adobe{Server: srv, URL: base}
}

// newCredentials registers a fresh credential set with the emulator. Keys
// are slow to generate, so tests share one unless they need their own.
func (a *adobe) newCredentials(t *testing.T, opts fakeadobe.CredentialOptions) *fakeadobe.Credentials {
	t.Helper()
	if opts.Key == nil {
		opts.Key = sharedKey(t)
	}
	creds, err := a.NewCredentials(opts)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// stockOAuthEnv configures one stock route with OAuth against a.
func (a *adobe) stockOAuthEnv(c *fakeadobe.Credentials) map[string]string {
	return map[string]string{
		"IMSPROXY_ROUTES":                  "stock",
		"IMSPROXY_IMS_URL":                 a.URL,
		"IMSPROXY_STOCK_UPSTREAM":          a.URL,
		"IMSPROXY_STOCK_DOWNLOAD_UPSTREAM": a.URL,
		"IMSPROXY_STOCK_CLIENT_ID":         c.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET":     c.ClientSecret,
		"IMSPROXY_STOCK_SCOPES":            strings.Join(c.Scopes, ","),
	}
}

// proxyProcess is a running imsproxy binary.
type proxyProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout testutil.Buffer
	stderr testutil.Buffer

	// Addresses learnt from the proxy's own "listening" log lines, set
	// (under mu) before the listening channel is closed.
	mu     sync.Mutex
	Admin  string
	Routes map[string]string

	exited  chan struct{}
	waitErr error
}

// startProxy runs imsproxy with exactly env (plus PATH and HOME), every
// listener on a free loopback port unless env says otherwise, JSON logs.
// It returns once every listener is bound; it does not wait for /readyz.
func startProxy(t *testing.T, env map[string]string, args ...string) *proxyProcess {
	t.Helper()
	full := map[string]string{
		"PATH":                  os.Getenv("PATH"),
		"HOME":                  t.TempDir(),
		"IMSPROXY_LOG_FORMAT":   "json",
		"IMSPROXY_ADMIN_LISTEN": "127.0.0.1:0",
	}
	for _, route := range routeNames(env) {
		full["IMSPROXY_"+strings.ToUpper(route)+"_LISTEN"] = "127.0.0.1:0"
	}
	for k, v := range env {
		full[k] = v
	}
	p := &proxyProcess{t: t, Routes: make(map[string]string), exited: make(chan struct{})}
	p.cmd = exec.Command(imsproxyBin, args...)
	p.cmd.Env = environ(full)
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)

	listening := make(chan struct{})
	want := len(routeNames(env)) + 1
	go func() {
		defer close(p.exited)
		p.scan(stderr, want, listening)
		p.waitErr = p.cmd.Wait()
	}()
	select {
	case <-listening:
	case <-p.exited:
		t.Fatalf("imsproxy exited before listening: %v\nstderr:\n%s", p.waitErr, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("imsproxy did not listen within 30 s\nstderr:\n%s", p.stderr.String())
	}
	return p
}

// scan copies the proxy's stderr into p.stderr and closes listening once
// want listeners have reported their address.
func (p *proxyProcess) scan(r io.Reader, want int, listening chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := 0
	for sc.Scan() {
		line := sc.Bytes()
		p.stderr.Write(append(line, '\n'))
		rec := logFields(string(line))
		if rec["msg"] != "listening" {
			continue
		}
		p.mu.Lock()
		if rec["listener"] == "admin" {
			p.Admin = rec["addr"]
		} else {
			p.Routes[strings.TrimPrefix(rec["listener"], "route ")] = rec["addr"]
		}
		p.mu.Unlock()
		if seen++; seen == want {
			close(listening)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// logFields reads one log line of either IMSPROXY_LOG_FORMAT: a JSON
// object, or slog's text of key=value pairs with Go-quoted values. Values
// are returned as text; nil when the line is neither.
func logFields(line string) map[string]string {
	fields := map[string]string{}
	var obj map[string]any
	if json.Unmarshal([]byte(line), &obj) == nil {
		for k, v := range obj {
			if s, ok := v.(string); ok {
				fields[k] = s
			} else {
				fields[k] = fmt.Sprint(v)
			}
		}
		return fields
	}
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimLeft(rest, " ") {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || strings.Contains(key, " ") {
			return nil
		}
		value := after
		if q, err := strconv.QuotedPrefix(after); err == nil {
			value, _ = strconv.Unquote(q)
			rest = after[len(q):]
		} else {
			value, rest, _ = strings.Cut(after, " ")
		}
		fields[key] = value
	}
	return fields
}

// URL is the base URL of a route.
func (p *proxyProcess) URL(route string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr, ok := p.Routes[route]
	if !ok {
		p.t.Fatalf("no route %q (have %v)", route, p.Routes)
	}
	return "http://" + addr
}

// AdminURL is the base URL of the admin listener.
func (p *proxyProcess) AdminURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "http://" + p.Admin
}

// readyz fetches /readyz.
func (p *proxyProcess) readyz() (int, map[string]any) {
	p.t.Helper()
	resp, err := http.Get(p.AdminURL() + "/readyz")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// waitReady polls /readyz — the readiness signal operators use — until it
// answers 200, failing the test after 20 s or if the proxy exits.
func (p *proxyProcess) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, body := p.readyz()
		if status == http.StatusOK {
			return
		}
		select {
		case <-p.exited:
			p.t.Fatalf("imsproxy exited: %v\nstderr:\n%s", p.waitErr, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("not ready after 20 s: %v\nstderr:\n%s", body, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit code, failing after 30 s.
func (p *proxyProcess) stop() int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(30 * time.Second)
}

// wait returns the exit code once the process ends, failing after d.
func (p *proxyProcess) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		p.t.Fatalf("imsproxy still running after %v\nstderr:\n%s", d, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proxyProcess) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if p.t.Failed() {
		p.t.Logf("imsproxy stderr:\n%s", p.stderr.String())
	}
}

// waitLog waits until the proxy has logged a line containing s, failing
// after 20 s.
func (p *proxyProcess) waitLog(s string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.stderr.String(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("imsproxy did not log %q within 20 s\nstderr:\n%s", s, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// routeNames are the routes env enables: IMSPROXY_ROUTES, or stock and aem
// when one of their variables is set (as config infers them).
func routeNames(env map[string]string) []string {
	if v, ok := env["IMSPROXY_ROUTES"]; ok {
		var names []string
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(strings.ToLower(n)); n != "" {
				names = append(names, n)
			}
		}
		return names
	}
	var names []string
	for _, n := range []string{"stock", "aem"} {
		for k := range env {
			if strings.HasPrefix(k, "IMSPROXY_"+strings.ToUpper(n)+"_") {
				names = append(names, n)
				break
			}
		}
	}
	return names
}

func environ(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// httpGet performs a GET with optional headers and returns status, headers
// and body.
func httpGet(t *testing.T, url string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	return httpDo(t, http.MethodGet, url, nil, headers...)
}

func httpDo(t *testing.T, method, url string, body io.Reader, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	return clientDo(t, http.DefaultClient, method, url, body, headers...)
}

// clientDo sends a request through client, bounded to 30 s, with headers
// given as name, value pairs, and returns status, headers and body.
func clientDo(t *testing.T, client *http.Client, method, url string, body io.Reader, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}
