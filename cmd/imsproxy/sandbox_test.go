package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

// TestSandbox_PrintedCommandsWork runs the sandbox on free loopback ports,
// with the emulator on HTTP and on HTTPS, performs every command it prints
// (the search first, as a user would; the upload's shell lines with sh and
// curl), and stops it as Ctrl-C does.
func TestSandbox_PrintedCommandsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the upload lines the sandbox prints (apt-get install curl)")
	}
	for _, tls := range []bool{false, true} {
		name := "http emulator"
		if tls {
			name = "https emulator"
		}
		t.Run(name, func(t *testing.T) { testSandboxCommands(t, tls) })
	}
}

func testSandboxCommands(t *testing.T, tls bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runSandbox(ctx, sandboxOptions{
			stockListen: "127.0.0.1:0", aemListen: "127.0.0.1:0",
			adminListen: "127.0.0.1:0", adobeListen: "127.0.0.1:0", tls: tls,
		}, pw, &stderr)
		pw.Close()
	}()

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var out []string
	timeout := time.After(30 * time.Second)
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("sandbox ended before printing its help: %v\nstderr:\n%s", <-done, stderr.String())
			}
			out = append(out, l)
			if strings.HasPrefix(l, "Ctrl-C") {
				break read
			}
		case <-timeout:
			t.Fatalf("no help printed within 30 s; stdout so far:\n%s\nstderr:\n%s", strings.Join(out, "\n"), stderr.String())
		}
	}

	go func() {
		for range lines { // the farewell line; ends when the sandbox returns
		}
	}()

	var cmds []curlCommand
	var envFile string
	var shell []string
	for _, l := range out {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, "configuration: "); ok {
			envFile = strings.Fields(rest)[0]
		}
		switch {
		case strings.Contains(l, "$("):
			shell = append(shell, l)
		case strings.HasPrefix(l, "curl "):
			if len(shell) > 0 {
				cmds = append(cmds, curlCommand{shell: strings.Join(shell, "\n")})
				shell = nil
			}
			cmds = append(cmds, parseCurl(t, l))
		}
	}
	if len(cmds) < 9 || !strings.Contains(cmds[0].url, "/Rest/Media/1/Search/Files?") {
		t.Fatalf("want the search first among at least 9 commands, got:\n%s", strings.Join(out, "\n"))
	}
	if _, err := os.Stat(envFile); err != nil {
		t.Fatalf("the printed configuration file: %v", err)
	}
	// Every printed command works; the revoke comes last, then the AEM
	// listing again must still succeed: the proxy gets a 401, fetches a
	// new token and retries (checked below in the exchange count).
	index := func(suffix string) int {
		return slices.IndexFunc(cmds, func(c curlCommand) bool { return strings.HasSuffix(c.url, suffix) })
	}
	aem, metrics := index("/api/assets.json"), index("/metrics")
	upload := slices.IndexFunc(cmds, func(c curlCommand) bool { return strings.Contains(c.shell, ".initiateUpload.json") })
	uploaded, query := index("/api/assets/projects/hello.txt.json"), index("adventures-by-activity%3Bactivity%3Dcamping")
	if aem < 0 || metrics < 0 || upload < 0 || uploaded != upload+1 || query < 0 || !strings.HasSuffix(cmds[len(cmds)-1].url, "/_fake/revoke") {
		t.Fatalf("want an AEM listing, an upload then its asset, a persisted query, a metrics scrape and the revoke last among:\n%s", strings.Join(out, "\n"))
	}
	cmds = append(cmds, cmds[0], cmds[aem])
	for _, c := range cmds {
		if c.shell != "" {
			if got := c.runShell(t); !strings.Contains(got, `"title":"Upload complete"`) {
				t.Fatalf("the upload lines printed %q", got)
			}
			continue
		}
		status, body := c.do(t)
		want := http.StatusOK
		if strings.Contains(c.url, "/Content/License?") {
			// The guard refuses, as the printed comment says.
			want = http.StatusForbidden
			if !bytes.Contains(body, []byte(`"error":"licensing_disabled"`)) {
				t.Errorf("license answered %s, want licensing_disabled", body)
			}
		}
		if status != want {
			t.Fatalf("%s %s: %d %s, want %d", c.method, c.url, status, body, want)
		}
		if p, ok := strings.CutPrefix(c.grep, "^"); ok && !bytes.Contains(body, []byte("\n"+p)) {
			t.Fatalf("%s: no line starting %q in:\n%s", c.url, p, body)
		}
		switch c.url {
		case cmds[0].url:
			var search struct {
				Files []struct{ ID int } `json:"files"`
			}
			if err := json.Unmarshal(body, &search); err != nil || len(search.Files) != 2 {
				t.Fatalf("search answered %s, want 2 files", body)
			}
		case cmds[uploaded].url:
			if !bytes.Contains(body, []byte(`"dam:size":6`)) {
				t.Errorf("the uploaded asset: %s", body)
			}
		case cmds[query].url:
			if !bytes.Contains(body, []byte(`"title":"Riverside Camping Australia"`)) {
				t.Errorf("the persisted query answered %s", body)
			}
		}
	}

	if _, body := cmds[metrics].do(t); !bytes.Contains(body, []byte(`imsproxy_token_exchanges_total{auth="jwt",error="",outcome="success",route="aem"} 2`)) {
		t.Errorf("after the revocation the aem route did not fetch a second token:\n%s", body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sandbox: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sandbox did not stop within 30 s of cancellation")
	}
	if _, err := os.Stat(envFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("generated credentials still there after stop: %v", err)
	}
	if _, err := http.Get(cmds[0].url); err == nil {
		t.Error("the stock route still answers after stop")
	}
}

func TestSandbox_RefusesBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-stock-listen", "0.0.0.0:8080"}, "-stock-listen 0.0.0.0:8080: the sandbox listens on loopback only"},
		{[]string{"-adobe-listen", "8900"}, "-adobe-listen 8900: want host:port"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-no-such-flag"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"sandbox"}, tt.args...), nil, &stdout, &stderr); code != 2 {
				t.Errorf("exit code = %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want %q", stderr.String(), tt.want)
			}
		})
	}
}

// curlCommand is a printed curl line: method, data, URL, the CA it trusts
// and the pattern of a grep it is piped to; or printed shell lines.
type curlCommand struct {
	method, url, data, caFile, grep string
	shell                           string
}

// runShell runs printed shell lines with sh, bounded to 30 s, and returns
// what they printed.
func (c curlCommand) runShell(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "-c", c.shell).CombinedOutput()
	if err != nil {
		t.Fatalf("sh -c %q: %v\n%s", c.shell, err, out)
	}
	return string(out)
}

// parseCurl reads the curl lines the sandbox prints: options -g, -s, -X M,
// -d D, --cacert F, one URL (optionally single-quoted), optionally piped to
// grep.
func parseCurl(t *testing.T, line string) curlCommand {
	t.Helper()
	c := curlCommand{method: http.MethodGet}
	line, pipe, _ := strings.Cut(line, " | ")
	if pipe != "" {
		words := shellWords(pipe)
		if len(words) != 2 || words[0] != "grep" {
			t.Fatalf("unexpected pipe in printed line %q", line)
		}
		c.grep = words[1]
	}
	words := shellWords(strings.TrimPrefix(line, "curl "))
	for i := 0; i < len(words); i++ {
		switch w := words[i]; {
		case w == "-X" && i+1 < len(words):
			i++
			c.method = words[i]
		case w == "-d" && i+1 < len(words):
			i++
			c.data = words[i]
		case w == "--cacert" && i+1 < len(words):
			i++
			c.caFile = words[i]
		case w == "-g" || w == "-s":
		case (strings.HasPrefix(w, "http://") || strings.HasPrefix(w, "https://")) && c.url == "":
			c.url = w
		default:
			t.Fatalf("unexpected %q in printed line %q", w, line)
		}
	}
	if c.url == "" {
		t.Fatalf("no URL in printed line %q", line)
	}
	return c
}

// shellWords splits on spaces, keeping single-quoted words whole.
func shellWords(s string) []string {
	var words []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if rest, ok := strings.CutPrefix(s, "'"); ok {
			w, after, _ := strings.Cut(rest, "'")
			words, s = append(words, w), after
			continue
		}
		w, after, _ := strings.Cut(s, " ")
		words, s = append(words, w), after
	}
	return words
}

func (c curlCommand) do(t *testing.T) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(c.method, c.url, strings.NewReader(c.data))
	if err != nil {
		t.Fatal(err)
	}
	if c.data != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}
