package integration

// End-to-end tests of the guards — who may call, what may be spent, downloads
// without the token — against the real binary and the emulator.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// adobeFront stands between the proxy and the emulator for what the
// emulator does not do by itself: an outage of the search alone, and a
// record of the access tokens IMS handed out (the emulator keeps none, by
// design).
type adobeFront struct {
	next       http.Handler
	failSearch atomic.Bool

	mu     sync.Mutex
	tokens []string
}

func startFront(t *testing.T, a *adobe) (*adobeFront, string) {
	t.Helper()
	f := &adobeFront{next: a.Server}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *adobeFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.failSearch.Load() && r.URL.Path == "/Rest/Media/1/Search/Files" {
		http.Error(w, `{"error_code":"503000","message":"Service unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/ims/") {
		f.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	f.next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(body, &tok) == nil && tok.AccessToken != "" {
		f.mu.Lock()
		f.tokens = append(f.tokens, tok.AccessToken)
		f.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

func (f *adobeFront) issuedTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tokens...)
}

// guardEnv is a stock route (OAuth) against the front at base, with an
// audit log in dir.
func guardEnv(a *adobe, creds *fakeadobe.Credentials, base, audit string) map[string]string {
	env := a.stockOAuthEnv(creds)
	env["IMSPROXY_IMS_URL"] = base
	env["IMSPROXY_STOCK_UPSTREAM"] = base
	env["IMSPROXY_STOCK_DOWNLOAD_UPSTREAM"] = base
	if audit != "" {
		env["IMSPROXY_AUDIT_LOG"] = audit
	}
	return env
}

// callerSpec is one caller of a callers file written by writeCallers.
type callerSpec struct {
	name    string
	key     string
	routes  []string
	license bool
}

func writeCallers(t *testing.T, path string, callers ...callerSpec) {
	t.Helper()
	var entries []map[string]any
	for _, c := range callers {
		sum := sha256.Sum256([]byte(c.key))
		entries = append(entries, map[string]any{"name": c.name, "key_sha256": hex.EncodeToString(sum[:]), "routes": c.routes, "license": c.license})
	}
	data, _ := json.MarshalIndent(entries, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// auditLine is what the tests read of an audit line.
type auditLine struct {
	Time           time.Time `json:"time"`
	RequestID      string    `json:"request_id"`
	Route          string    `json:"route"`
	Caller         string    `json:"caller"`
	Remote         string    `json:"remote"`
	Method         string    `json:"method"`
	ContentID      string    `json:"content_id"`
	License        string    `json:"license"`
	Editorial      string    `json:"editorial"`
	Outcome        string    `json:"outcome"`
	Status         int       `json:"status"`
	UpstreamStatus int       `json:"upstream_status"`
	PurchaseState  string    `json:"purchase_state"`
}

// readAuditLog returns one line per licensing call: the outcome lines,
// without the attempt line each forwarded license has before them.
func readAuditLog(t *testing.T, path string) []auditLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		if l.Outcome != "attempt" {
			out = append(out, l)
		}
	}
	return out
}

// photos returns n ids of photos the emulator's search marks editorial (or
// not), asking it directly.
func photos(t *testing.T, a *adobe, creds *fakeadobe.Credentials, editorial bool, n int) []string {
	t.Helper()
	q := url.Values{
		"search_parameters[filters][content_type:photo]": {"1"},
		"search_parameters[filters][editorial]":          {strconv.FormatBool(editorial)},
		"search_parameters[limit]":                       {strconv.Itoa(n)},
		"result_columns[]":                               {"id", "is_editorial"},
	}
	status, _, body := httpGet(t, a.URL+"/Rest/Media/1/Search/Files?"+q.Encode(), "x-api-key", creds.ClientID, "X-Product", "e2e/1")
	var ans struct {
		Files []struct {
			ID          int  `json:"id"`
			IsEditorial bool `json:"is_editorial"`
		} `json:"files"`
	}
	if status != 200 || json.Unmarshal(body, &ans) != nil || len(ans.Files) < n {
		t.Fatalf("search for photos: %d %s", status, body)
	}
	var ids []string
	for _, f := range ans.Files[:n] {
		if f.IsEditorial != editorial {
			t.Fatalf("asset %d: is_editorial %v", f.ID, f.IsEditorial)
		}
		ids = append(ids, strconv.Itoa(f.ID))
	}
	return ids
}

func licensePath(id string) string {
	return "/Rest/Libraries/1/Content/License?content_id=" + id + "&license=Standard"
}

// emulatorSaw counts the emulator's records of an endpoint.
func emulatorSaw(a *adobe, endpoint string) []fakeadobe.RequestRecord {
	var out []fakeadobe.RequestRecord
	for _, r := range a.Requests(0) {
		if r.Endpoint == endpoint {
			out = append(out, r)
		}
	}
	return out
}

func TestE2E_CallersFile(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	dir := t.TempDir()
	callers := filepath.Join(dir, "callers.json")
	dam := callerSpec{"legacy-dam", "imsp_dam-key-0123456789abcdef", []string{"stock"}, false}
	aemOnly := callerSpec{"aem-reader", "imsp_aem-key-0123456789abcdef", []string{"aem"}, false}
	writeCallers(t, callers, dam, aemOnly)
	env := a.stockOAuthEnv(creds)
	// Every search must reach the emulator, to see what arrives there.
	env["IMSPROXY_STOCK_CACHE_SIZE"] = "0"
	env["IMSPROXY_ROUTES"] = "stock,aem"
	env["IMSPROXY_AEM_AUTH"] = "none"
	env["IMSPROXY_AEM_UPSTREAM"] = a.URL
	env["IMSPROXY_CALLERS_FILE"] = callers
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	p := startProxy(t, env)
	p.waitReady()
	search := p.URL("stock") + "/Rest/Media/1/Search/Files?search_parameters[words]=dog&search_parameters[limit]=1"

	steps := []struct {
		name    string
		url     string
		headers []string
		status  int
		code    string
	}{
		{"no key", search, nil, 401, "unauthorized_caller"},
		{"unknown key", search, []string{"x-api-key", "imsp_guessed"}, 401, "unauthorized_caller"},
		{"the Adobe client id is no key", search, []string{"x-api-key", creds.ClientID}, 401, "unauthorized_caller"},
		{"a caller of another route", search, []string{"x-api-key", aemOnly.key}, 403, "forbidden"},
		{"licensing without the license right", p.URL("stock") + licensePath("1"), []string{"x-api-key", dam.key}, 403, "forbidden"},
		{"x-api-key", search, []string{"x-api-key", dam.key}, 200, ""},
		{"Authorization: Bearer", search, []string{"Authorization", "Bearer " + dam.key}, 200, ""},
		{"the other route with its caller", p.URL("aem") + "/api/assets.json", []string{"x-api-key", aemOnly.key}, 401, ""}, // AEM wants a token: its own 401 passes through
	}
	for _, st := range steps {
		status, h, body := httpGet(t, st.url, st.headers...)
		if st.code != "" {
			msg := checkProxyError(t, status, h, body, st.status, st.code, "stock").Message
			if st.status == 403 && !strings.Contains(msg, "IMSPROXY_CALLERS_FILE") {
				t.Errorf("%s: message %q does not say where the rights are set", st.name, msg)
			}
			continue
		}
		if status != st.status || h.Get("X-Imsproxy-Error") != "" {
			t.Fatalf("%s: %d %s", st.name, status, body)
		}
	}
	searches := emulatorSaw(a, "stock.search_files")
	if len(searches) != 2 {
		t.Fatalf("the emulator saw %d searches, want the 2 of the known caller", len(searches))
	}
	for _, s := range searches {
		if s.APIKey != creds.ClientID || s.Token.State != fakeadobe.TokenValid || s.CredentialSHA256 == fakeadobe.CredentialHash(dam.key) {
			t.Errorf("upstream search %+v: want the route's client id and token, never the caller key", s)
		}
	}
	if n := len(emulatorSaw(a, "stock.content_license")); n != 0 {
		t.Fatalf("a refused license reached Stock (%d)", n)
	}

	// The file is reloaded on change: a new caller works at once, a
	// removed one no longer does, and a broken file changes nothing.
	late := callerSpec{"late-app", "imsp_late-key-0123456789abcdef", []string{"stock"}, false}
	writeCallers(t, callers, late, aemOnly)
	p.waitLogCount("callers file loaded", 2)
	if status, _, _ := httpGet(t, search, "x-api-key", late.key); status != 200 {
		t.Fatalf("the added caller got %d", status)
	}
	if status, _, _ := httpGet(t, search, "x-api-key", dam.key); status != 401 {
		t.Fatalf("the removed caller got %d", status)
	}
	if err := os.WriteFile(callers, []byte(`[{"name": "x",`), 0o600); err != nil {
		t.Fatal(err)
	}
	p.waitLog("callers file not reloaded")
	if status, _, _ := httpGet(t, search, "x-api-key", late.key); status != 200 {
		t.Fatalf("after a broken file, the previous caller got %d", status)
	}
}

// waitLogCount waits until the proxy has logged n lines containing s.
func (p *proxyProcess) waitLogCount(s string, n int) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(p.stderr.String(), s) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("imsproxy did not log %q %d times within 20 s\nstderr:\n%s", s, n, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runToExit runs the binary with env and returns its exit code and stderr,
// for configurations that must not start.
func runToExit(t *testing.T, env map[string]string) (int, string) {
	t.Helper()
	full := map[string]string{"PATH": os.Getenv("PATH"), "HOME": t.TempDir()}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, imsproxyBin)
	cmd.Env = environ(full)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stderr.String()
}

func TestE2E_RefusesToStartUnguarded(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	dir := t.TempDir()
	badCallers := filepath.Join(dir, "callers.json")
	if err := os.WriteFile(badCallers, []byte(`[{"name":"a","key_sha256":"imsp_pasted-the-key","routes":["stock"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := a.stockOAuthEnv(creds)
	base["IMSPROXY_ADMIN_LISTEN"] = "127.0.0.1:0"
	base["IMSPROXY_STOCK_LISTEN"] = "127.0.0.1:0"
	tests := []struct {
		name  string
		env   map[string]string
		wants []string
	}{
		{"a listener on every interface without callers", map[string]string{"IMSPROXY_STOCK_LISTEN": "0.0.0.0:0"},
			[]string{"IMSPROXY_STOCK_LISTEN: 0.0.0.0:0 is not a loopback address", "IMSPROXY_CALLERS_FILE", "IMSPROXY_ALLOW_REMOTE=true"}},
		{"a callers file with a key instead of its hash", map[string]string{"IMSPROXY_CALLERS_FILE": badCallers},
			[]string{"IMSPROXY_CALLERS_FILE: " + badCallers + ": caller 1 (a): key_sha256 must be the 64 hex digits"}},
		{"a daily limit that could not survive a restart", map[string]string{"IMSPROXY_STOCK_ALLOW_LICENSE": "true", "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT": "10"},
			[]string{"IMSPROXY_STOCK_LICENSE_DAILY_LIMIT: needs IMSPROXY_AUDIT_LOG set to a file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			code, stderr := runToExit(t, env)
			if code != 2 {
				t.Fatalf("exit code %d, want 2\n%s", code, stderr)
			}
			for _, w := range tt.wants {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "imsp_pasted-the-key") {
				t.Errorf("the error repeats the key:\n%s", stderr)
			}
		})
	}
}

func TestE2E_LicensingDisabledByDefault(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	audit := filepath.Join(t.TempDir(), "audit.log")
	env := a.stockOAuthEnv(creds)
	env["IMSPROXY_AUDIT_LOG"] = audit
	p := startProxy(t, env)
	p.waitReady()
	id := photos(t, a, creds, false, 1)[0]
	for _, method := range []string{"GET", "POST"} {
		status, h, body := httpDo(t, method, p.URL("stock")+licensePath(id), strings.NewReader(`{"cce_agency":[]}`),
			"X-Request-Id", "disabled-"+method, "Content-Type", "application/json")
		msg := checkProxyError(t, status, h, body, 403, "licensing_disabled", "stock").Message
		if !strings.Contains(msg, "IMSPROXY_STOCK_ALLOW_LICENSE=true") {
			t.Errorf("message %q does not say how to enable licensing", msg)
		}
	}
	if st := a.Stats(); st.Licenses != 0 || len(emulatorSaw(a, "stock.content_license")) != 0 {
		t.Fatalf("licenses reached Stock: %+v", st)
	}
	lines := readAuditLog(t, audit)
	if len(lines) != 2 {
		t.Fatalf("%d audit lines, want 2", len(lines))
	}
	if l := lines[1]; l.Outcome != "licensing_disabled" || l.ContentID != id || l.License != "Standard" || l.Method != "POST" ||
		l.RequestID != "disabled-POST" || l.Status != 403 || l.UpstreamStatus != 0 || l.Route != "stock" || l.Remote != "127.0.0.1" {
		t.Fatalf("audit line %+v", l)
	}
}

func TestE2E_LicenseDownloadAndHistoryWithoutTheToken(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	download, err := a.StartDownload("127.0.0.1:0") // stock.adobe.com apart from stock.adobe.io
	if err != nil {
		t.Fatal(err)
	}
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	audit := filepath.Join(t.TempDir(), "audit.log")
	env := a.stockOAuthEnv(creds)
	env["IMSPROXY_STOCK_DOWNLOAD_UPSTREAM"] = download
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	env["IMSPROXY_AUDIT_LOG"] = audit
	p := startProxy(t, env)
	p.waitReady()
	stock := p.URL("stock")
	id := photos(t, a, creds, false, 1)[0]

	status, _, body := httpGet(t, stock+licensePath(id), "X-Request-Id", "license-1")
	var ans struct {
		Contents map[string]struct {
			PurchaseDetails struct{ State, URL string } `json:"purchase_details"`
		} `json:"contents"`
	}
	if status != 200 || json.Unmarshal(body, &ans) != nil {
		t.Fatalf("license: %d %s", status, body)
	}
	got := ans.Contents[id].PurchaseDetails
	if got.State != "just_purchased" || !strings.HasPrefix(got.URL, stock+"/Rest/Libraries/Download/"+id+"/") {
		t.Fatalf("purchase details %+v: want the download URL on the proxy (%s)", got, stock)
	}

	// The caller downloads through the proxy, holding no token: the
	// redirect to the signed file comes back as it is.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(got.URL + "?size=800")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, download+"/files/"+id) {
		t.Fatalf("download: %d Location %q, want a 302 to the signed file on %s", resp.StatusCode, loc, download)
	}
	status, h, file := httpGet(t, loc)
	if status != 200 || h.Get("Content-Type") != "image/jpeg" || len(file) == 0 {
		t.Fatalf("signed file: %d %s, %d bytes", status, h.Get("Content-Type"), len(file))
	}
	downloads := emulatorSaw(a, "download.licensed")
	if len(downloads) != 1 {
		t.Fatalf("%d licensed downloads at the download host", len(downloads))
	}
	if d := downloads[0]; d.HasAuthorization || d.TokenIn != "query" || d.Token.State != fakeadobe.TokenValid || d.Status != http.StatusFound {
		t.Fatalf("download request %+v: want the token in the query only", d)
	}

	// License history: its download URLs point at the proxy too.
	status, _, body = httpGet(t, stock+"/Rest/Libraries/1/Member/LicenseHistory")
	var hist struct {
		Files []struct {
			ID          int    `json:"id"`
			DownloadURL string `json:"download_url"`
		} `json:"files"`
	}
	if status != 200 || json.Unmarshal(body, &hist) != nil || len(hist.Files) != 1 {
		t.Fatalf("history: %d %s", status, body)
	}
	if hist.Files[0].DownloadURL != got.URL {
		t.Fatalf("history download_url %q, want %q", hist.Files[0].DownloadURL, got.URL)
	}

	// A comp (watermarked) download goes the same way.
	resp, err = noFollow.Get(stock + "/Rest/Libraries/Watermarked/Download/" + id + "/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "kind=comp") {
		t.Fatalf("comp download: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	lines := readAuditLog(t, audit)
	if len(lines) != 1 {
		t.Fatalf("%d audit lines, want 1 (downloads and history are not licensing attempts)", len(lines))
	}
	if l := lines[0]; l.Outcome != "licensed" || l.ContentID != id || l.License != "Standard" || l.UpstreamStatus != 200 ||
		l.Status != 200 || l.PurchaseState != "just_purchased" || l.Editorial != "no" || l.RequestID != "license-1" {
		t.Fatalf("audit line %+v", l)
	}
	if strings.Contains(p.stderr.String(), "token=") {
		t.Fatalf("a URL with the token was logged:\n%s", p.stderr.String())
	}
}

func TestE2E_GzipLicenseAnswerRewritten(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	base := a.URL // the emulator gzips Stock's answers for a caller that accepts gzip
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	env := guardEnv(a, creds, base, "")
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	p := startProxy(t, env)
	p.waitReady()
	id := photos(t, a, creds, false, 1)[0]

	req, _ := http.NewRequest("GET", p.URL("stock")+licensePath(id), nil)
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: Go's client then leaves the body encoded
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Length") != strconv.Itoa(len(raw)) {
		t.Fatalf("%d, Content-Encoding %q, Content-Length %q for %d bytes", resp.StatusCode,
			resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Length"), len(raw))
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if !strings.Contains(string(body), `"url":"`+p.URL("stock")+"/Rest/Libraries/Download/"+id+"/") || strings.Contains(string(body), base) {
		t.Fatalf("decoded answer %s: want the download URL on the proxy", body)
	}
}

func TestE2E_EditorialGuard(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	front, base := startFront(t, a)
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	audit := filepath.Join(t.TempDir(), "audit.log")
	env := guardEnv(a, creds, base, audit)
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	p := startProxy(t, env)
	p.waitReady()
	stock := p.URL("stock")
	editorial := photos(t, a, creds, true, 1)[0]
	plain := photos(t, a, creds, false, 1)[0]

	status, h, body := httpGet(t, stock+licensePath(editorial))
	msg := checkProxyError(t, status, h, body, 403, "editorial_use_only", "stock").Message
	if !strings.Contains(msg, editorial) || !strings.Contains(msg, "X-Imsproxy-Allow-Editorial: true") {
		t.Errorf("message %q does not name the content and the override", msg)
	}
	if a.Stats().Licenses != 0 {
		t.Fatal("an editorial asset was licensed without consent")
	}
	status, _, body = httpGet(t, stock+licensePath(editorial), "X-Imsproxy-Allow-Editorial", "true")
	if status != 200 || a.Stats().Licenses != 1 {
		t.Fatalf("with consent: %d %s, %d licenses", status, body, a.Stats().Licenses)
	}

	// Fail closed: when the check cannot be made, nothing is licensed,
	// even though Stock would license.
	front.failSearch.Store(true)
	status, h, body = httpGet(t, stock+licensePath(plain))
	msg = checkProxyError(t, status, h, body, 502, "upstream_unreachable", "stock").Message
	if !strings.Contains(msg, "editorial") || !strings.Contains(msg, "503") {
		t.Errorf("message %q does not say the editorial check failed and why", msg)
	}
	if a.Stats().Licenses != 1 || len(emulatorSaw(a, "stock.content_license")) != 1 {
		t.Fatal("a license was forwarded although the editorial check failed")
	}
	front.failSearch.Store(false)
	if status, _, body := httpGet(t, stock+licensePath(plain)); status != 200 {
		t.Fatalf("after the search recovered: %d %s", status, body)
	}

	var outcomes []string
	for _, l := range readAuditLog(t, audit) {
		outcomes = append(outcomes, l.Outcome+"/"+l.Editorial)
	}
	want := "editorial_use_only/yes licensed/override editorial_check_failed/unknown licensed/no"
	if strings.Join(outcomes, " ") != want {
		t.Fatalf("audit outcomes %v, want %s", outcomes, want)
	}
}

func TestE2E_DailyLicenseLimitSurvivesRestart(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	audit := filepath.Join(t.TempDir(), "audit.log")
	env := a.stockOAuthEnv(creds)
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	env["IMSPROXY_STOCK_LICENSE_DAILY_LIMIT"] = "2"
	env["IMSPROXY_AUDIT_LOG"] = audit
	ids := photos(t, a, creds, false, 3)

	p := startProxy(t, env)
	p.waitReady()
	for _, id := range ids[:2] {
		if status, _, body := httpGet(t, p.URL("stock")+licensePath(id)); status != 200 {
			t.Fatalf("license %s: %d %s", id, status, body)
		}
	}
	// The day's two licenses are spent: the third is refused.
	status, h, body := httpGet(t, p.URL("stock")+licensePath(ids[2]))
	msg := checkProxyError(t, status, h, body, 429, "license_limit_reached", "stock").Message
	if !strings.Contains(msg, "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT") || h.Get("Retry-After") == "" {
		t.Errorf("message %q, Retry-After %q", msg, h.Get("Retry-After"))
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	p = startProxy(t, env)
	p.waitReady()
	status, h, body = httpGet(t, p.URL("stock")+licensePath(ids[2]))
	checkProxyError(t, status, h, body, 429, "license_limit_reached", "stock")
	if n := a.Stats().Licenses; n != 2 {
		t.Fatalf("Stock made %d licenses, want 2", n)
	}
	var outcomes []string
	for _, l := range readAuditLog(t, audit) {
		outcomes = append(outcomes, l.Outcome)
	}
	if strings.Join(outcomes, " ") != "licensed licensed license_limit_reached license_limit_reached" {
		t.Fatalf("audit outcomes %v", outcomes)
	}
	metrics := fetchMetrics(t, p)
	if !strings.Contains(metrics, `imsproxy_licenses_total{outcome="license_limit_reached",route="stock"} 1`) {
		t.Errorf("license metric missing:\n%s", metrics)
	}
}

func fetchMetrics(t *testing.T, p *proxyProcess) string {
	t.Helper()
	status, _, body := httpGet(t, p.AdminURL()+"/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	return string(body)
}
