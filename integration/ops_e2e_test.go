package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// runCommand runs the imsproxy binary with args and exactly env (plus
// PATH), bounded to 20 s, and returns its exit code, stdout and stderr.
func runCommand(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	full := map[string]string{"PATH": os.Getenv("PATH")}
	maps.Copy(full, env)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, imsproxyBin, args...)
	cmd.Env = environ(full)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("imsproxy %v did not end within 20 s", args)
	}
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// podEnv is the environment a probe runs with in the proxy's container:
// the proxy's own, with the admin listener it actually bound.
func podEnv(p *proxyProcess, env map[string]string) map[string]string {
	pod := maps.Clone(env)
	pod["IMSPROXY_ADMIN_LISTEN"] = strings.TrimPrefix(p.AdminURL(), "http://")
	return pod
}

// TestE2E_HealthProbesTheRunningProxy runs `imsproxy health` as an exec
// probe does, with the proxy's environment: not ready while IMS is down
// (saying which route and why) but alive; ready once the token is in;
// failing once the proxy is gone.
func TestE2E_HealthProbesTheRunningProxy(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	a.SetIMSDown(true)
	env := a.stockOAuthEnv(a.newCredentials(t, fakeadobe.CredentialOptions{}))
	p := startProxy(t, env)
	pod := podEnv(p, env)

	p.waitLog("token exchange failed")
	code, stdout, stderr := runCommand(t, pod, "health")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "/readyz answered 503 Service Unavailable: route stock: ") {
		t.Errorf("health while IMS is down: exit %d, stdout %q, stderr %q; want 1 and route stock's error", code, stdout, stderr)
	}
	if code, stdout, stderr := runCommand(t, pod, "health", "-live"); code != 0 || !strings.Contains(stdout, "/healthz: 200 OK") {
		t.Errorf("health -live while IMS is down: exit %d, stdout %q, stderr %q; want 0", code, stdout, stderr)
	}

	a.SetIMSDown(false)
	p.waitReady()
	if code, stdout, stderr := runCommand(t, pod, "health"); code != 0 || !strings.Contains(stdout, "/readyz: 200 OK") || stderr != "" {
		t.Errorf("health when ready: exit %d, stdout %q, stderr %q; want 0", code, stdout, stderr)
	}
	if code, _, stderr := runCommand(t, nil, "health", "-url", p.AdminURL()); code != 0 {
		t.Errorf("health -url %s: exit %d, stderr %q", p.AdminURL(), code, stderr)
	}

	if code := p.stop(); code != 0 {
		t.Fatalf("the proxy exited %d", code)
	}
	code, _, stderr = runCommand(t, pod, "health", "-live")
	if code != 1 || !strings.Contains(stderr, "is imsproxy running") {
		t.Errorf("health -live with the proxy gone: exit %d, stderr %q; want 1", code, stderr)
	}
}

// stopWithDelay starts a proxy whose SHUTDOWN_DELAY is delay in front of
// the emulator, sends it SIGTERM once ready and returns when /readyz
// answers 503, with when the signal was sent.
func stopWithDelay(t *testing.T, delay string) (*proxyProcess, map[string]string, time.Time) {
	t.Helper()
	a := startAdobe(t, fakeadobe.Options{})
	env := a.stockOAuthEnv(a.newCredentials(t, fakeadobe.CredentialOptions{}))
	env["IMSPROXY_SHUTDOWN_DELAY"] = delay
	p := startProxy(t, env)
	p.waitReady()
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "/readyz to answer 503", func() bool {
		status, _, _ := httpGet(t, p.AdminURL()+"/readyz")
		return status == http.StatusServiceUnavailable
	})
	return p, podEnv(p, env), sent
}

// searchesDuringTheDelay sends n searches, each on a new connection (the
// application's last calls), and fails unless every one succeeds.
func searchesDuringTheDelay(t *testing.T, p *proxyProcess, n int) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for i := range n {
		resp, err := client.Get(p.URL("stock") + searchPath)
		if err != nil {
			t.Fatalf("search %d during the shutdown delay: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("search %d during the shutdown delay: %d", i, resp.StatusCode)
		}
	}
}

// TestE2E_ShutdownDelayServesTheLastCalls: on SIGTERM the proxy turns
// /readyz to 503 at once and goes on serving new requests (on new
// connections) for IMSPROXY_SHUTDOWN_DELAY, then drains and exits 0; a
// second signal ends the delay at once.
func TestE2E_ShutdownDelayServesTheLastCalls(t *testing.T) {
	// What is served during the delay is checked where the delay lasts
	// until the test ends it: within a 2 s delay, a slow machine could
	// see it run out halfway through the checks.
	t.Run("the delay runs out", func(t *testing.T) {
		const delay = 2 * time.Second
		// Timed from the signal: from the start, a slow start alone
		// could outlast the delay.
		p, _, sent := stopWithDelay(t, delay.String())
		if code := p.wait(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
		if took := time.Since(sent); took < delay {
			t.Errorf("exited %v after SIGTERM, before the %v delay was over", took, delay)
		}
		for _, want := range []string{`"msg":"stopping: /readyz answers 503, new requests are still served for the shutdown delay","delay":2`, `"msg":"shutting down"`} {
			if !strings.Contains(p.stderr.String(), want) {
				t.Errorf("the log lacks %s", want)
			}
		}
	})
	t.Run("a second signal ends it", func(t *testing.T) {
		p, pod, _ := stopWithDelay(t, "1h")
		_, _, body := httpGet(t, p.AdminURL()+"/readyz")
		var readyz struct{ Ready, Stopping bool }
		if err := json.Unmarshal(body, &readyz); err != nil || readyz.Ready || !readyz.Stopping {
			t.Errorf("/readyz during the delay: %s", body)
		}
		searchesDuringTheDelay(t, p, 5)
		if code, _, stderr := runCommand(t, pod, "health"); code != 1 || !strings.Contains(stderr, "shutting down") {
			t.Errorf("health during the delay: exit %d, stderr %q; want 1, shutting down", code, stderr)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(20 * time.Second); code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
		if !strings.Contains(p.stderr.String(), "shutdown delay cut short by a second signal") {
			t.Error("the log does not say the delay was cut short")
		}
	})
}

// TestE2E_AdminToken: with IMSPROXY_ADMIN_TOKEN_FILE, POST /cache/purge
// needs the token; the file is read again when it changes; the token is
// never logged. GET / lists the endpoints.
func TestE2E_AdminToken(t *testing.T) {
	const tokenA, tokenB = "first-admin-token-0123456789abcdef", "second-admin-token-0123456789abcdef"
	path := filepath.Join(t.TempDir(), "admin-token")
	writeAtomic(t, path, []byte(tokenA+"\n"))
	_, p, _ := startCachedStock(t, map[string]string{"IMSPROXY_ADMIN_TOKEN_FILE": path, "IMSPROXY_LOG_LEVEL": "debug"})
	purge := func(token string) (int, http.Header, []byte) {
		var headers []string
		if token != "" {
			headers = []string{"Authorization", "Bearer " + token}
		}
		return httpDo(t, http.MethodPost, p.AdminURL()+"/cache/purge?route=stock", nil, headers...)
	}
	if status, h, body := purge(""); status != 401 || h.Get("X-Imsproxy-Error") != "unauthorized_caller" {
		t.Errorf("purge without the token: %d %s", status, body)
	}
	if status, _, body := purge(tokenB); status != 401 {
		t.Errorf("purge with another token: %d %s", status, body)
	}
	if status, _, body := purge(tokenA); status != 200 {
		t.Errorf("purge with the token: %d %s", status, body)
	}
	writeAtomic(t, path, []byte(tokenB+"\n"))
	waitFor(t, 10*time.Second, "the rotated token to be accepted", func() bool { s, _, _ := purge(tokenB); return s == 200 })
	if status, _, _ := purge(tokenA); status != 401 {
		t.Errorf("the replaced token: %d, want 401", status)
	}

	status, _, body := httpGet(t, p.AdminURL()+"/")
	if status != 200 || !strings.Contains(string(body), `"path": "/cache/purge?route=NAME"`) || !strings.Contains(string(body), "Authorization: Bearer <admin token>") {
		t.Errorf("GET /: %d %s", status, body)
	}
	if logs := p.stderr.String(); strings.Contains(logs, tokenA) || strings.Contains(logs, tokenB) {
		t.Error("the log holds an admin token")
	}
}

// TestE2E_AdminListenerOffLoopbackNeedsPermissionAndAToken: the binary
// refuses to start (exit 2) with an admin listener off loopback that is
// not allowed, or allowed without a token, naming the variable; a callers
// file opens the routes, not the admin listener.
func TestE2E_AdminListenerOffLoopbackNeedsPermissionAndAToken(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	base := a.stockOAuthEnv(a.newCredentials(t, fakeadobe.CredentialOptions{}))
	base["IMSPROXY_STOCK_LISTEN"] = "127.0.0.1:0"
	callers := filepath.Join(t.TempDir(), "callers.json")
	if err := os.WriteFile(callers, []byte("[]"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		more map[string]string
		want string
	}{
		{"not allowed", map[string]string{"IMSPROXY_ADMIN_LISTEN": "0.0.0.0:0", "IMSPROXY_CALLERS_FILE": callers},
			"IMSPROXY_ADMIN_LISTEN: 0.0.0.0:0 is not a loopback address: set IMSPROXY_ADMIN_ALLOW_REMOTE=true"},
		{"allowed without a token", map[string]string{"IMSPROXY_ADMIN_LISTEN": "0.0.0.0:0", "IMSPROXY_ADMIN_ALLOW_REMOTE": "true"},
			"IMSPROXY_ADMIN_TOKEN: required because IMSPROXY_ADMIN_LISTEN=0.0.0.0:0 is not a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(base)
			maps.Copy(env, tc.more)
			code, stderr := runToExit(t, env)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
}

// TestE2E_PortInUseNamesTheVariable: a listener whose port is taken stops
// the start with exit 1 and one line naming its variable.
func TestE2E_PortInUseNamesTheVariable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Close() })
	a := startAdobe(t, fakeadobe.Options{})
	env := a.stockOAuthEnv(a.newCredentials(t, fakeadobe.CredentialOptions{}))
	env["IMSPROXY_STOCK_LISTEN"] = busy.Addr().String()
	env["IMSPROXY_ADMIN_LISTEN"] = "127.0.0.1:0"
	code, stderr := runToExit(t, env)
	want := "imsproxy: IMSPROXY_STOCK_LISTEN " + busy.Addr().String() + " is in use: another process listens there; stop it, or set IMSPROXY_STOCK_LISTEN to a free address\n"
	if code != 1 || stderr != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// TestE2E_OperatorMetrics: a scrape of the binary carries
// imsproxy_build_info, the request-duration histogram of the requests
// made, and a token expiry for an OAuth route but none for a fixed token
// whose expiry is unknown.
func TestE2E_OperatorMetrics(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	env := a.stockOAuthEnv(a.newCredentials(t, fakeadobe.CredentialOptions{}))
	env["IMSPROXY_ROUTES"] = "stock,aem"
	env["IMSPROXY_AEM_UPSTREAM"] = a.URL
	env["IMSPROXY_AEM_ACCESS_TOKEN"] = "an-opaque-local-development-token"
	p := startProxy(t, env)
	p.waitReady()
	for range 3 {
		if status, _, body := httpGet(t, p.URL("stock")+searchPath); status != 200 {
			t.Fatalf("search: %d %s", status, body)
		}
	}
	_, _, body := httpGet(t, p.AdminURL()+"/metrics")
	scrape := string(body)
	for _, want := range []string{
		`imsproxy_build_info{goversion="go`,
		`imsproxy_request_duration_seconds_count{code="2xx",route="stock"} 3`,
		`imsproxy_request_duration_seconds_bucket{code="2xx",route="stock",le="+Inf"} 3`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("the scrape lacks %s", want)
		}
	}
	if v := p.metricValue(`imsproxy_token_expiry_seconds{route="stock"}`); v <= 0 {
		t.Errorf("stock's token expiry = %v, want the seconds left", v)
	}
	if strings.Contains(scrape, `imsproxy_token_expiry_seconds{route="aem"}`) {
		t.Error("a token expiry for the fixed token of unknown expiry")
	}
}
