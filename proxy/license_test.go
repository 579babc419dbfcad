package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// fakeStock stands in for stock.adobe.io: Search/Files answers the editorial
// check from its editorial map, Content/License licenses (state from the
// states map, just_purchased by default) with a download URL on download.
type fakeStock struct {
	download  string // base of download URLs
	editorial map[string]bool
	states    map[string]string
	gzip      bool // answer licenses gzip-encoded when the caller accepts it
	escaped   bool // write URLs with escaped slashes, as PHP does
	searchErr int  // status for Search/Files; 0 = 200
	// sold, when set, answers a license once it is counted (sold): a
	// late answer, an error, no answer at all.
	sold func(w http.ResponseWriter, r *http.Request)

	searches atomic.Int64
	licenses atomic.Int64
	mu       sync.Mutex
	seen     []*http.Request
}

func (s *fakeStock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Clone(r.Context()))
	s.mu.Unlock()
	q := r.URL.Query()
	switch r.URL.Path {
	case "/Rest/Media/1/Search/Files":
		s.searches.Add(1)
		if s.searchErr != 0 {
			http.Error(w, `{"error":"down"}`, s.searchErr)
			return
		}
		id := q.Get("search_parameters[media_id]")
		files := []map[string]any{}
		if ed, ok := s.editorial[id]; ok {
			n, _ := strconv.Atoi(id)
			files = append(files, map[string]any{"id": n, "is_editorial": ed})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"nb_results": len(files), "files": files})
	case "/Rest/Libraries/1/Content/License":
		s.licenses.Add(1)
		if s.sold != nil {
			s.sold(w, r)
			return
		}
		s.answerLicense(w, r)
	default:
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
}

// answerLicense is Stock's answer to a license: the state of content_id
// from states, just_purchased by default.
func (s *fakeStock) answerLicense(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("content_id")
	state := s.states[id]
	if state == "" {
		state = "just_purchased"
	}
	url := s.download + "/Rest/Libraries/Download/" + id + "/1"
	body := fmt.Sprintf(`{"contents":{%q:{"content_id":%q,"purchase_details":{"state":%q,"url":%q}}},"member":{"member_id":1}}`, id, id, state, url)
	if s.escaped {
		body = strings.ReplaceAll(body, "/", `\/`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ETag", `"v1"`)
	if s.gzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = io.WriteString(zw, body)
		_ = zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		_, _ = w.Write(buf.Bytes())
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
}

// licensingRoute is a stock route in front of a fakeStock.
type licensingRoute struct {
	front *httptest.Server
	stock *fakeStock
	audit string // audit log path
	logs  *testutil.Buffer
}

func newLicensingRoute(t *testing.T, stock *fakeStock, opts RouteOptions, mutate func(*config.Route)) *licensingRoute {
	t.Helper()
	lr := &licensingRoute{stock: stock, audit: filepath.Join(t.TempDir(), "audit.log"), logs: &testutil.Buffer{}}
	if stock.download == "" {
		stock.download = "https://stock.adobe.com"
	}
	if opts.Audit == nil {
		audit, err := audit.Open(lr.audit, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = audit.Close() })
		opts.Audit = audit
	}
	opts.Logger = slog.New(slog.NewJSONHandler(lr.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	lr.front = guardedRoute(t, stock, opts, func(rc *config.Route) {
		rc.AllowLicense = true
		rc.DownloadUpstream = mustURL(t, stock.download)
		if mutate != nil {
			mutate(rc)
		}
	})
	return lr
}

func (lr *licensingRoute) get(t *testing.T, pathAndQuery string, headers ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", lr.front.URL+pathAndQuery, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// auditLines are the audit log's lines but the attempt lines written
// before each license is forwarded: one line per licensing call.
func (lr *licensingRoute) auditLines(t *testing.T) []audit.Record {
	t.Helper()
	var out []audit.Record
	for _, rec := range readAudit(t, lr.audit) {
		if rec.Outcome != audit.OutcomeAttempt {
			out = append(out, rec)
		}
	}
	return out
}

func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

func TestRoute_LicensingDisabledByDefault(t *testing.T) {
	stock := &fakeStock{}
	lr := newLicensingRoute(t, stock, RouteOptions{}, func(rc *config.Route) { rc.AllowLicense = false })
	for _, method := range []string{"GET", "POST", "HEAD", "OPTIONS"} {
		req, _ := http.NewRequest(method, lr.front.URL+"/Rest/Libraries/1/Content/License?content_id=1&license=Standard", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if method == "HEAD" {
			resp.Body.Close()
			if resp.StatusCode != 403 || resp.Header.Get(route.ErrorHeader) != route.CodeLicensingDisabled {
				t.Errorf("HEAD: %d %s", resp.StatusCode, resp.Header.Get(route.ErrorHeader))
			}
			continue
		}
		body := decodeProxyError(t, resp, 403, route.CodeLicensingDisabled)
		if !strings.Contains(body.Message, "IMSPROXY_STOCK_ALLOW_LICENSE=true") {
			t.Errorf("message %q does not name the variable", body.Message)
		}
	}
	if n := stock.licenses.Load() + stock.searches.Load(); n != 0 {
		t.Fatalf("%d requests reached Stock", n)
	}
	lines := lr.auditLines(t)
	if len(lines) != 4 {
		t.Fatalf("%d audit lines, want 4", len(lines))
	}
	if l := lines[0]; l.Outcome != route.CodeLicensingDisabled || l.ContentID != "1" || l.License != "Standard" ||
		l.Status != 403 || l.UpstreamStatus != 0 || l.Route != "stock" || l.RequestID == "" || l.Time.IsZero() {
		t.Fatalf("audit line %+v", l)
	}
}

func TestRoute_LicenseAllowedRewritesURLAndAudits(t *testing.T) {
	for _, variant := range []struct {
		name          string
		gzip, escaped bool
	}{{"plain", false, false}, {"gzip", true, false}, {"escaped slashes", false, true}} {
		t.Run(variant.name, func(t *testing.T) {
			stock := &fakeStock{editorial: map[string]bool{"42": false}, gzip: variant.gzip, escaped: variant.escaped}
			lr := newLicensingRoute(t, stock, RouteOptions{}, nil)
			req, _ := http.NewRequest("GET", lr.front.URL+"/Rest/Libraries/1/Content/License?content_id=42&license=Standard", nil)
			req.Header.Set("X-Request-Id", "lic-1")
			// Go's client asks for gzip and decodes it itself unless the
			// request names an encoding: name it to see the raw answer.
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
			if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(raw)) {
				t.Errorf("Content-Length %s, body %d bytes", cl, len(raw))
			}
			if resp.Header.Get("ETag") != "" {
				t.Error("ETag of the original body kept on a rewritten one")
			}
			body := raw
			if variant.gzip {
				if resp.Header.Get("Content-Encoding") != "gzip" {
					t.Fatalf("Content-Encoding %q, want gzip kept", resp.Header.Get("Content-Encoding"))
				}
				zr, err := gzip.NewReader(bytes.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				body, _ = io.ReadAll(zr)
			}
			text := strings.ReplaceAll(string(body), `\/`, "/")
			want := lr.front.URL + "/Rest/Libraries/Download/42/1"
			if !strings.Contains(text, `"`+want+`"`) || strings.Contains(text, "stock.adobe.com") {
				t.Fatalf("answer %s: want the download URL rewritten to %s", body, want)
			}
			lines := readAudit(t, lr.audit)
			if len(lines) != 2 {
				t.Fatalf("%d audit lines, want the attempt and its outcome", len(lines))
			}
			if l := lines[0]; l.Outcome != audit.OutcomeAttempt || l.Attempt == "" || l.ContentID != "42" || l.Status != 0 {
				t.Fatalf("attempt line %+v", l)
			}
			if l := lines[1]; l.Outcome != audit.OutcomeLicensed || l.UpstreamStatus != 200 || l.Status != 200 ||
				l.RequestID != "lic-1" || l.PurchaseState != "just_purchased" || l.Editorial != "no" || l.Remote != "127.0.0.1" ||
				l.Attempt != lines[0].Attempt {
				t.Fatalf("audit line %+v", l)
			}
		})
	}
}

func TestRoute_LicenseOutcomes(t *testing.T) {
	stock := &fakeStock{
		editorial: map[string]bool{"1": false, "2": false, "3": false, "5": false, "6": true, "7": false},
		states:    map[string]string{"2": "purchased", "3": "not_possible"},
	}
	callers, _ := loadTestCallers(t, testutil.CallersJSON(
		testutil.Caller{Name: "buyer", Key: "buyer-key", Routes: []string{"stock"}, License: true},
		testutil.Caller{Name: "viewer", Key: "viewer-key", Routes: []string{"stock"}}))
	lr := newLicensingRoute(t, stock, RouteOptions{Callers: callers}, func(rc *config.Route) { rc.LicenseDailyLimit = 2 })
	const lic = "/Rest/Libraries/1/Content/License?license=Standard&content_id="
	steps := []struct {
		name    string
		path    string
		headers []string
		status  int
		code    string // proxy error code, "" for Stock's answer
		outcome string
	}{
		{"no caller key", lic + "1", nil, 401, route.CodeUnauthorizedCaller, route.CodeUnauthorizedCaller},
		{"caller without the license right", lic + "1", []string{"X-Api-Key", "viewer-key"}, 403, route.CodeForbidden, route.CodeForbidden},
		{"malformed", lic + "01", []string{"X-Api-Key", "buyer-key"}, 400, "bad_request", audit.OutcomeBadRequest},
		{"form body", lic + "1", []string{"X-Api-Key", "buyer-key", "Content-Type", "application/x-www-form-urlencoded"}, 400, "bad_request", audit.OutcomeBadRequest},
		{"editorial", lic + "6", []string{"X-Api-Key", "buyer-key"}, 403, route.CodeEditorialUseOnly, route.CodeEditorialUseOnly},
		{"not listed by search", lic + "99", []string{"X-Api-Key", "buyer-key"}, 403, route.CodeEditorialUseOnly, audit.OutcomeEditorialCheck},
		{"already licensed: no credit, not counted", lic + "2", []string{"X-Api-Key", "buyer-key"}, 200, "", audit.OutcomeAlreadyLicensed},
		{"not possible: not counted", lic + "3", []string{"X-Api-Key", "buyer-key"}, 200, "", audit.OutcomeNotPossible},
		{"licensed 1 of 2", lic + "1", []string{"Authorization", "Bearer buyer-key"}, 200, "", audit.OutcomeLicensed},
		{"editorial with the caller's consent: 2 of 2", lic + "6", []string{"X-Api-Key", "buyer-key", allowEditorialHeader, "true"}, 200, "", audit.OutcomeLicensed},
		{"limit reached", lic + "7", []string{"X-Api-Key", "buyer-key"}, 429, route.CodeLicenseLimitReached, route.CodeLicenseLimitReached},
	}
	for i, st := range steps {
		resp := lr.get(t, st.path, st.headers...)
		if st.code != "" {
			decodeProxyError(t, resp, st.status, st.code)
		} else {
			resp.Body.Close()
			if resp.StatusCode != st.status {
				t.Fatalf("%s: status %d, want %d", st.name, resp.StatusCode, st.status)
			}
		}
		if st.status == 429 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", st.name)
		}
		lines := lr.auditLines(t)
		if len(lines) != i+1 {
			t.Fatalf("%s: %d audit lines, want %d", st.name, len(lines), i+1)
		}
		if got := lines[i]; got.Outcome != st.outcome || got.Status != st.status {
			t.Errorf("%s: audit line %+v, want outcome %s", st.name, got, st.outcome)
		}
	}
	if n := stock.licenses.Load(); n != 4 {
		t.Errorf("Stock licensed %d times, want 4", n)
	}
	for _, r := range stock.seen {
		if r.Header.Get(allowEditorialHeader) != "" {
			t.Errorf("%s reached Stock", allowEditorialHeader)
		}
	}
	lines := lr.auditLines(t)
	if lines[1].Caller != "viewer" || lines[8].Caller != "buyer" || lines[0].Caller != "" {
		t.Errorf("callers in the audit log: %q, %q, %q", lines[0].Caller, lines[1].Caller, lines[8].Caller)
	}
	if lines[9].Editorial != "override" || lines[4].Editorial != "yes" {
		t.Errorf("editorial in the audit log: %q, %q", lines[9].Editorial, lines[4].Editorial)
	}
}

func TestRoute_EditorialCheckFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		stock  *fakeStock
		status int
		code   string
		says   string
	}{
		{"search answers 503", &fakeStock{searchErr: 503}, 502, route.CodeUpstreamUnreachable, "HTTP 503"},
		{"search answers 500", &fakeStock{searchErr: 500}, 502, route.CodeUpstreamUnreachable, "retry later"},
		{"content not listed", &fakeStock{editorial: map[string]bool{}}, 403, route.CodeEditorialUseOnly, allowEditorialHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lr := newLicensingRoute(t, tt.stock, RouteOptions{}, nil)
			resp := lr.get(t, "/Rest/Libraries/1/Content/License?content_id=5&license=Standard")
			body := decodeProxyError(t, resp, tt.status, tt.code)
			if !strings.Contains(body.Message, tt.says) || !strings.Contains(body.Message, "5") {
				t.Errorf("message %q does not say %q about content 5", body.Message, tt.says)
			}
			if n := tt.stock.licenses.Load(); n != 0 {
				t.Fatalf("the license was forwarded although the check failed")
			}
			if l := lr.auditLines(t); len(l) != 1 || l[0].Outcome != audit.OutcomeEditorialCheck {
				t.Fatalf("audit %+v", l)
			}
		})
	}
	t.Run("Stock unreachable", func(t *testing.T) {
		lr := newLicensingRoute(t, &fakeStock{}, RouteOptions{}, func(rc *config.Route) { rc.Upstream = mustURL(t, "http://"+closedPort(t)) })
		decodeProxyError(t, lr.get(t, "/Rest/Libraries/1/Content/License?content_id=5"), 502, route.CodeUpstreamUnreachable)
	})
}

func TestRoute_EditorialAnswerIsCached(t *testing.T) {
	stock := &fakeStock{editorial: map[string]bool{"8": false}, states: map[string]string{"8": "purchased"}}
	lr := newLicensingRoute(t, stock, RouteOptions{}, nil)
	for range 3 {
		resp := lr.get(t, "/Rest/Libraries/1/Content/License?content_id=8&license=Standard")
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if n := stock.searches.Load(); n != 1 {
		t.Fatalf("%d editorial lookups for 3 licenses of one asset, want 1", n)
	}
	search := stock.seen[0]
	if search.Header.Get("Authorization") != "Bearer "+routeToken || search.Header.Get("X-Api-Key") != "client-id-1" ||
		search.URL.Query().Get("search_parameters[media_id]") != "8" || !strings.Contains(search.URL.RawQuery, "is_editorial") {
		t.Fatalf("lookup %s %v", search.URL, search.Header)
	}
}

func TestRoute_DailyLimitCountsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	stock := &fakeStock{editorial: map[string]bool{"1": false, "2": false}}
	start := func() *licensingRoute {
		a, err := audit.Open(path, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close() })
		lr := newLicensingRoute(t, stock, RouteOptions{Audit: a}, func(rc *config.Route) { rc.LicenseDailyLimit = 1 })
		lr.audit = path
		return lr
	}
	first := start()
	if resp := first.get(t, "/Rest/Libraries/1/Content/License?content_id=1&license=Standard"); resp.StatusCode != 200 {
		t.Fatalf("first license: %d", resp.StatusCode)
	}
	second := start() // a restarted proxy reading the same audit log
	decodeProxyError(t, second.get(t, "/Rest/Libraries/1/Content/License?content_id=2&license=Standard"), 429, route.CodeLicenseLimitReached)
	if n := stock.licenses.Load(); n != 1 {
		t.Fatalf("Stock licensed %d times, want 1", n)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRoute_LicenseWithOversizedBodyIsAudited(t *testing.T) {
	stock := &fakeStock{editorial: map[string]bool{"1": false}}
	lr := newLicensingRoute(t, stock, RouteOptions{}, func(rc *config.Route) { rc.MaxBodyBytes = 1024 })
	resp, err := http.Post(lr.front.URL+"/Rest/Libraries/1/Content/License?content_id=1&license=Standard", "application/json",
		strings.NewReader(`{"cce_agency":[{"id":"1","value":"`+strings.Repeat("x", 2048)+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	decodeProxyError(t, resp, http.StatusRequestEntityTooLarge, route.CodeBodyTooLarge)
	if l := lr.auditLines(t); len(l) != 1 || l[0].Outcome != route.CodeBodyTooLarge || l[0].Status != 413 || l[0].ContentID != "1" {
		t.Fatalf("audit %+v", l)
	}
	if stock.licenses.Load() != 0 {
		t.Fatal("forwarded")
	}
}
