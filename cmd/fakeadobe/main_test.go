package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRun_ServesWritesCredentialsAndShutsDown starts the binary's run on a
// free loopback port, uses the credentials it wrote, and stops it the way
// SIGTERM does (by cancelling its context).
func TestRun_ServesWritesCredentialsAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-credentials-out", dir, "-token-lifetime", "3s", "-client-id", "cli-test"}, pw)
		pw.Close()
	}()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var base string
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("run ended before it started: %v", <-done)
			}
			if rest, found := strings.CutPrefix(l, "fakeadobe listening on "); found {
				base = strings.Fields(rest)[0]
			}
			if strings.HasPrefix(l, "try:") {
				break wait
			}
		case <-timeout:
			t.Fatal("run did not start")
		}
	}
	env := readEnv(t, filepath.Join(dir, "imsproxy.env"))
	if env["IMSPROXY_STOCK_CLIENT_ID"] != "cli-test" || env["IMSPROXY_IMS_URL"] != base {
		t.Fatalf("env file %v", env)
	}
	resp, err := http.PostForm(base+"/ims/token/v3", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"cli-test"}, "client_secret": {env["IMSPROXY_STOCK_CLIENT_SECRET"]}, "scope": {"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok["expires_in"] != float64(2) {
		t.Fatalf("token with the written credentials: %d %v", resp.StatusCode, tok)
	}
	for _, f := range []string{"aem-service-credentials.json", "private.key", "certificate.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if !strings.Contains(strings.Join(rest, "\n"), "shutting down") {
		t.Errorf("no shutdown message: %v", rest)
	}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			m[k] = v
		}
	}
	return m
}

func TestRun_RefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-listen", "0.0.0.0:0"}, {"-no-such-flag"}} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}
