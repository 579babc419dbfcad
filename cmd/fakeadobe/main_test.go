package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
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

// TestRun_TLSServesHTTPSWithTheWrittenCA: with -tls every listener speaks
// HTTPS, the CA is written beside the credentials and named in the env
// file, and the health check trusts it.
func TestRun_TLSServesHTTPSWithTheWrittenCA(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-credentials-out", dir, "-tls", "-client-id", "tls-test"}, pw)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var base, blob string
	for sc.Scan() {
		l := sc.Text()
		if rest, found := strings.CutPrefix(l, "fakeadobe listening on "); found {
			base = strings.Fields(rest)[0]
			_, blob, _ = strings.Cut(rest, "blob storage: ")
			blob, _, _ = strings.Cut(blob, ",")
		}
		if strings.HasPrefix(l, "try:") {
			if !strings.Contains(l, " --cacert "+filepath.Join(dir, "ca.crt")+" ") {
				t.Errorf("try line without --cacert: %s", l)
			}
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if !strings.HasPrefix(base, "https://127.0.0.1:") || !strings.HasPrefix(blob, "https://127.0.0.1:") {
		t.Fatalf("listening on %q, blob storage %q: want https", base, blob)
	}
	env := readEnv(t, filepath.Join(dir, "imsproxy.env"))
	ca := filepath.Join(dir, "ca.crt")
	if env["IMSPROXY_IMS_URL"] != base || env["IMSPROXY_STOCK_CA_FILE"] != ca || env["IMSPROXY_AEM_CA_FILE"] != ca {
		t.Fatalf("env file %v", env)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("ca.crt is not PEM: %s", pem)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := client.PostForm(base+"/ims/token/v3", url.Values{"grant_type": {"client_credentials"},
		"client_id": {"tls-test"}, "client_secret": {env["IMSPROXY_STOCK_CLIENT_SECRET"]}, "scope": {"openid"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("token over HTTPS: %d", resp.StatusCode)
	}
	listen := strings.TrimPrefix(base, "https://")
	if err := healthcheck(ctx, listen, dir, true); err != nil {
		t.Errorf("health check: %v", err)
	}
	if err := healthcheck(ctx, listen, "", true); err == nil {
		t.Error("health check with -tls but no -credentials-out passed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
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
	for _, args := range [][]string{{"-listen", "0.0.0.0:0"}, {"-no-such-flag"}, {"-tls"}} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}
