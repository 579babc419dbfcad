package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// searchPath is a small Stock search every test can make.
const searchPath = "/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=2"

// writeTestFile writes data to a new file of the test and returns its path.
func writeTestFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mintToken obtains an access token from the emulator's IMS the way an
// operator's script would (client credentials), for the fixed-token kind.
func (a *adobe) mintToken(t *testing.T, c *fakeadobe.Credentials) (string, fakeadobe.TokenInfo) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID},
		"client_secret": {c.ClientSecret}, "scope": {strings.Join(c.Scopes, ",")}}
	resp, err := http.PostForm(a.URL+"/ims/token/v3", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body.AccessToken == "" {
		t.Fatalf("minting a token: %d %v", resp.StatusCode, err)
	}
	return body.AccessToken, a.LookupToken(body.AccessToken)
}

// credentialsFile writes c as an AEM service-credentials file for a's IMS.
func (a *adobe) credentialsFile(t *testing.T, c *fakeadobe.Credentials) string {
	t.Helper()
	js, err := c.ServiceCredentialsJSON(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	return writeTestFile(t, "aem-service-credentials.json", js)
}

// stockAndAEMEnv configures two routes against a: stock with OAuth, aem
// with the service-credentials file (JWT).
func (a *adobe) stockAndAEMEnv(t *testing.T, c *fakeadobe.Credentials) map[string]string {
	t.Helper()
	env := a.stockOAuthEnv(c)
	env["IMSPROXY_ROUTES"] = "stock,aem"
	env["IMSPROXY_AEM_UPSTREAM"] = a.URL
	env["IMSPROXY_AEM_CREDENTIALS_FILE"] = a.credentialsFile(t, c)
	return env
}

// lastRecord is the emulator's most recent record of endpoint.
func (a *adobe) lastRecord(t *testing.T, endpoint string) fakeadobe.RequestRecord {
	t.Helper()
	recs := a.Requests(0)
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Endpoint == endpoint {
			return recs[i]
		}
	}
	t.Fatalf("the emulator recorded no %s request", endpoint)
	return fakeadobe.RequestRecord{}
}

// waitFor polls cond every 10 ms, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closedPortURL is the URL of a loopback port that was bound and closed
// again: nothing listens there, so a connection is refused at once.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// proxyError is the body of an error the proxy made.
type proxyError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Route   string `json:"route"`
}

// checkProxyError asserts the shape of an answer: the status,
// Content-Type application/json, X-Imsproxy-Error naming the code, and a
// JSON body of exactly error, message and route.
func checkProxyError(t *testing.T, status int, h http.Header, body []byte, wantStatus int, wantCode, wantRoute string) proxyError {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", status, wantStatus, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if got := h.Get("X-Imsproxy-Error"); got != wantCode {
		t.Errorf("X-Imsproxy-Error = %q, want %q", got, wantCode)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, body)
	}
	if len(fields) != 3 {
		t.Errorf("body has fields %v, want exactly error, message, route", fields)
	}
	var e proxyError
	_ = json.Unmarshal(body, &e)
	if e.Error != wantCode || e.Route != wantRoute || e.Message == "" {
		t.Errorf("body = %+v, want error %q, route %q and a message", e, wantCode, wantRoute)
	}
	return e
}

// runProxyToExit runs imsproxy with exactly env (plus PATH and HOME) and
// returns its exit code and output, failing if it runs for more than d.
func runProxyToExit(t *testing.T, env map[string]string, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	full := map[string]string{"PATH": os.Getenv("PATH"), "HOME": t.TempDir()}
	for k, v := range env {
		full[k] = v
	}
	cmd := exec.CommandContext(ctx, imsproxyBin, args...)
	cmd.Env = environ(full)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("imsproxy still running after %v\nstderr:\n%s", d, stderr.String())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// traffic sends GETs to urls in turn, one at a time, until stopped, and
// counts the answers by status.
type traffic struct {
	stop     context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	statuses map[int]int
	failures []string // the first few non-200 answers
}

func startTraffic(t *testing.T, urls ...string) *traffic {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{stop: cancel, done: make(chan struct{}), statuses: make(map[int]int)}
	client := &http.Client{Timeout: 30 * time.Second}
	go func() {
		defer close(tr.done)
		for i := 0; ctx.Err() == nil; i++ {
			u := urls[i%len(urls)]
			status, detail := -1, ""
			resp, err := client.Get(u)
			if err != nil {
				detail = err.Error()
			} else {
				var b bytes.Buffer
				_, _ = b.ReadFrom(resp.Body)
				resp.Body.Close()
				status, detail = resp.StatusCode, b.String()
			}
			tr.mu.Lock()
			tr.statuses[status]++
			if status != http.StatusOK && len(tr.failures) < 5 {
				tr.failures = append(tr.failures, u+": "+strconv.Itoa(status)+" "+detail)
			}
			tr.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(tr.finish)
	return tr
}

// finish stops the traffic (at once if it already is).
func (tr *traffic) finish() {
	tr.stop()
	<-tr.done
}

// results stops the traffic and returns the answers by status and the
// first failures.
func (tr *traffic) results() (map[int]int, []string) {
	tr.finish()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.statuses, tr.failures
}
