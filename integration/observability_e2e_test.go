package integration

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// TestE2E_IdleMemory: the proxy with the default two routes, after a few
// requests, stays a small sidecar (under 30 MiB resident).
func TestE2E_IdleMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes the binary's RSS meaningless")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skipf("no /proc to read the resident set size from: %v", err)
	}
	a := startAdobe(t, fakeadobe.Options{})
	p := startProxy(t, a.stockAndAEMEnv(t, a.newCredentials(t, fakeadobe.CredentialOptions{})))
	p.waitReady()
	for i := range 5 {
		for _, u := range []string{
			p.URL("stock") + "/Rest/Media/1/Search/Files?search_parameters[words]=city&search_parameters[offset]=" + strconv.Itoa(i),
			p.URL("aem") + "/api/assets.json",
		} {
			if status, _, body := httpGet(t, u); status != 200 {
				t.Fatalf("%s: %d %s", u, status, body)
			}
		}
	}
	rss := residentBytes(t, p.cmd.Process.Pid)
	t.Logf("imsproxy resident set after %d requests: %.1f MiB", 10, float64(rss)/(1<<20))
	if rss >= 30<<20 {
		t.Errorf("imsproxy holds %.1f MiB resident, want under 30 MiB", float64(rss)/(1<<20))
	}
}

// residentBytes reads VmRSS of process pid.
func residentBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", sc.Text(), err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestE2E_LogLines runs the proxy in each log format at debug level and
// reads what it wrote: the start-up summary (every route's name, type,
// listener, upstream and auth kind; the admin listener and the version),
// a "request" line with the caller's X-Request-Id or, without one, the id
// the proxy returned, one line for a proxy-made error, and no secret
// anywhere.
func TestE2E_LogLines(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			a := startAdobe(t, fakeadobe.Options{})
			front, base := startFront(t, a) // to learn the access tokens IMS issues
			creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
			env := a.stockAndAEMEnv(t, creds)
			env["IMSPROXY_IMS_URL"] = base
			env["IMSPROXY_LOG_FORMAT"] = format
			env["IMSPROXY_LOG_LEVEL"] = "debug"
			p := startProxy(t, env)
			p.waitReady()

			search := p.URL("stock") + "/Rest/Media/1/Search/Files?search_parameters[words]=city"
			if status, _, _ := httpGet(t, search, "X-Request-Id", "e2e-log-1"); status != 200 {
				t.Fatalf("search: %d", status)
			}
			status, h, _ := httpGet(t, p.URL("aem")+"/api/assets.json")
			generated := h.Get("X-Request-Id")
			if status != 200 || generated == "" {
				t.Fatalf("AEM listing: %d, X-Request-Id %q", status, generated)
			}
			// Licensing is off by default: a proxy-made 403.
			status, h, _ = httpGet(t, p.URL("stock")+"/Rest/Libraries/1/Content/License?content_id=112670342&license=Standard",
				"X-Request-Id", "e2e-log-license")
			if status != 403 || h.Get("X-Imsproxy-Error") != "licensing_disabled" {
				t.Fatalf("license: %d %q, want 403 licensing_disabled", status, h.Get("X-Imsproxy-Error"))
			}
			if code := p.stop(); code != 0 {
				t.Fatalf("exit code %d", code)
			}

			stderr := p.stderr.String()
			var lines []map[string]string
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				f := logFields(l)
				if f == nil || f["msg"] == "" {
					t.Fatalf("not a %s log line: %q", format, l)
				}
				lines = append(lines, f)
				if f["request_id"] == "e2e-log-license" && f["msg"] != "request" {
					t.Logf("a proxy-made error's line: %s", l)
				}
			}
			find := func(match map[string]string) []map[string]string {
				var found []map[string]string
			next:
				for _, l := range lines {
					for k, v := range match {
						if l[k] != v {
							continue next
						}
					}
					found = append(found, l)
				}
				return found
			}
			for _, want := range []map[string]string{
				{"msg": "route", "name": "stock", "type": "stock", "listen": "127.0.0.1:0", "upstream": a.URL, "auth": "oauth"},
				{"msg": "route", "name": "aem", "type": "aem", "listen": "127.0.0.1:0", "upstream": a.URL, "auth": "jwt"},
				{"msg": "imsproxy started", "admin": "127.0.0.1:0"},
				{"msg": "request", "route": "stock", "request_id": "e2e-log-1", "status": "200"},
				{"msg": "request", "route": "aem", "request_id": generated, "status": "200"},
			} {
				if n := len(find(want)); n != 1 {
					t.Errorf("%d lines with %v, want 1", n, want)
				}
			}
			if started := find(map[string]string{"msg": "imsproxy started"}); len(started) != 1 || started[0]["version"] == "" {
				t.Errorf("start-up line %v has no version", started)
			}
			errorLine := map[string]string{"request_id": "e2e-log-license", "code": "licensing_disabled", "status": "403",
				"route": "stock", "path": "/Rest/Libraries/1/Content/License"}
			if n, all := len(find(errorLine)), find(map[string]string{"request_id": "e2e-log-license"}); n != 1 || len(all) != 2 {
				t.Errorf("%d lines like %v and %d about the request, want 1 and 2 (the error, the request):\n%s", n, errorLine, len(all), stderr)
			}

			tokens := front.issuedTokens()
			if len(tokens) < 2 {
				t.Fatalf("IMS issued %d tokens, want at least 2 (stock, aem)", len(tokens))
			}
			secrets := map[string]string{}
			addCredentialSecrets(secrets, "route", creds)
			addTokenSecrets(secrets, tokens)
			checkNoSecrets(t, map[string]string{"stderr": stderr, "stdout": p.stdout.String()}, secrets)
		})
	}
}
