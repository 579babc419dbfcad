package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/inflight"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

const licenseTarget = "/Rest/Libraries/1/Content/License?content_id=1&license=Standard"

// waitAudit waits for an audit line (not an attempt line) of outcome.
func (lr *licensingRoute) waitAudit(t *testing.T, outcome string) audit.Record {
	t.Helper()
	var found audit.Record
	testutil.WaitFor(t, "an audit line "+outcome, func() bool {
		for _, l := range lr.auditLines(t) {
			if l.Outcome == outcome {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// Stock sells a license before its answer crosses the network: a caller
// that hangs up before the answer (a client timeout shorter than Stock's
// answer time) does not stop the proxy from reading it, counting it and
// auditing it, so hanging up cannot buy past the daily limit.
func TestRoute_LicenseIsCompletedWhenTheCallerHangsUp(t *testing.T) {
	answer := make(chan struct{})
	stock := &fakeStock{editorial: map[string]bool{"1": false, "2": false}}
	stock.sold = func(w http.ResponseWriter, r *http.Request) {
		<-answer // sold; the answer is late
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"contents":{"1":{"purchase_details":{"state":"just_purchased","url":"https://stock.adobe.com/Rest/Libraries/Download/1/1"}}}}`))
	}
	lr := newLicensingRoute(t, stock, RouteOptions{}, func(rc *config.Route) { rc.LicenseDailyLimit = 1 })

	ctx, hangUp := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", lr.front.URL+licenseTarget, nil)
	gone := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	testutil.WaitFor(t, "Stock to sell the license", func() bool { return stock.licenses.Load() == 1 })
	hangUp()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller got %v, want to have hung up", err)
	}
	close(answer)
	rec := lr.waitAudit(t, audit.OutcomeLicensed)
	if rec.UpstreamStatus != 200 || rec.PurchaseState != "just_purchased" {
		t.Errorf("audit line %+v", rec)
	}
	decodeProxyError(t, lr.get(t, "/Rest/Libraries/1/Content/License?content_id=2&license=Standard"), 429, route.CodeLicenseLimitReached)
	if n := stock.licenses.Load(); n != 1 {
		t.Fatalf("Stock sold %d licenses under a limit of 1", n)
	}
}

// A license that left for Stock and got no answer, or a 5xx, may have been
// made: it counts toward the limit and is audited unknown. Only a 4xx from
// Stock, or a license that never left (no token, no connection), gives its
// slot back.
func TestRoute_LicenseWithoutAnAnswerCountsAsUnknown(t *testing.T) {
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	tests := []struct {
		name    string
		sold    func(http.ResponseWriter, *http.Request)
		mutate  func(*testing.T, *config.Route)
		status  int
		outcome string
		counted bool
	}{
		{name: "Stock answers 500", sold: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", http.StatusInternalServerError) },
			status: 500, outcome: audit.OutcomeUnknown, counted: true},
		{name: "Stock answers 503", sold: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) },
			status: 503, outcome: audit.OutcomeUnknown, counted: true},
		{name: "no answer within TIMEOUT", sold: func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-never:
			}
		}, mutate: func(_ *testing.T, rc *config.Route) { rc.Timeout = 200 * time.Millisecond },
			status: 504, outcome: audit.OutcomeUnknown, counted: true},
		{name: "connection reset after the request", sold: func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, status: 502, outcome: audit.OutcomeUnknown, counted: true},
		{name: "Stock refuses", sold: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, `{"code":"10"}`, 400) },
			status: 400, outcome: audit.OutcomeFailed, counted: false},
		{name: "Stock unreachable", mutate: func(t *testing.T, rc *config.Route) { rc.Upstream = mustURL(t, "http://"+closedPort(t)) },
			status: 502, outcome: audit.OutcomeFailed, counted: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stock := faultyOnce(tt.sold)
			lr := newLicensingRoute(t, stock, RouteOptions{}, func(rc *config.Route) {
				rc.LicenseDailyLimit = 1
				if tt.mutate != nil {
					tt.mutate(t, rc)
				}
			})
			// The editorial check is skipped: what happens to the license
			// itself is under test.
			resp := lr.get(t, licenseTarget, allowEditorialHeader, "true")
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			lines := lr.auditLines(t)
			if len(lines) != 1 || lines[0].Outcome != tt.outcome {
				t.Fatalf("audit %+v, want one line %s", lines, tt.outcome)
			}
			resp = lr.get(t, "/Rest/Libraries/1/Content/License?content_id=2&license=Standard", allowEditorialHeader, "true")
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusTooManyRequests; got != tt.counted {
				t.Fatalf("the next license answered %d: the first counted %v, want %v", resp.StatusCode, got, tt.counted)
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		stock := &fakeStock{}
		src := &countingSource{}
		src.failWith(errors.New("IMS says no"))
		mgr := tokens.NewManager("stock", src, tokens.Options{})
		lr := newLicensingRoute(t, stock, RouteOptions{Tokens: mgr}, func(rc *config.Route) { rc.LicenseDailyLimit = 1 })
		resp := lr.get(t, licenseTarget, allowEditorialHeader, "true")
		resp.Body.Close()
		if resp.StatusCode != 503 || stock.licenses.Load() != 0 {
			t.Fatalf("status %d, %d licenses", resp.StatusCode, stock.licenses.Load())
		}
		if lines := lr.auditLines(t); len(lines) != 1 || lines[0].Outcome != audit.OutcomeFailed {
			t.Fatalf("audit %+v: a license that never left is failed, not counted", lines)
		}
	})
}

// faultyOnce is a Stock whose first license meets fault (nil: none) and
// whose next ones are answered.
func faultyOnce(fault func(http.ResponseWriter, *http.Request)) *fakeStock {
	var first atomic.Bool
	stock := &fakeStock{}
	stock.sold = func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) && fault != nil {
			fault(w, r)
			return
		}
		stock.answerLicense(w, r)
	}
	return stock
}

// The attempt line is on disk before Stock is asked: when it cannot be
// written (a full disk), nothing is licensed.
func TestRoute_LicenseRefusedWhenItsAuditLineCannotBeWritten(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	full, err := audit.Open("/dev/full", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = full.Close() })
	stock := &fakeStock{editorial: map[string]bool{"1": false}}
	lr := newLicensingRoute(t, stock, RouteOptions{Audit: full}, func(rc *config.Route) { rc.LicenseDailyLimit = 1 })
	body := decodeProxyError(t, lr.get(t, licenseTarget), 503, route.CodeAuditUnavailable)
	if !strings.Contains(body.Message, "IMSPROXY_AUDIT_LOG") {
		t.Errorf("message %q does not name the audit log", body.Message)
	}
	if n := stock.licenses.Load(); n != 0 {
		t.Fatalf("Stock sold %d licenses without an audit line", n)
	}
}

// A request that some server reads as a license of another asset than the
// guard would check, or as a license where the guard sees none, is refused
// before it reaches Stock (and audited when it may be a license).
func TestRoute_AmbiguousLicenseRequestsAreRefused(t *testing.T) {
	stock := &fakeStock{editorial: map[string]bool{"1": false, "2": true}}
	lr := newLicensingRoute(t, stock, RouteOptions{}, nil)
	addr := strings.TrimPrefix(lr.front.URL, "http://")
	const lic = "/Rest/Libraries/1/Content/License"
	tests := []struct{ name, request string }{
		{"content.id beside content_id (PHP reads content_id)", "GET " + lic + "?content_id=1&content.id=2&license=Standard"},
		{"content+id beside content_id", "GET " + lic + "?content_id=1&content+id=2&license=Standard"},
		{"content%20id", "GET " + lic + "?content%20id=2&content_id=1"},
		{"content[id]", "GET " + lic + "?content_id=1&content[id]=2"},
		{"content_id[0] after content_id", "GET " + lic + "?content_id=1&content_id[0]=2"},
		{"Content_ID (a server that ignores case)", "GET " + lic + "?Content_ID=2&content_id=1"},
		{"licen\u017fe (folds to license)", "GET " + lic + "?content_id=1&licen%C5%BFe=Extended"},
		{"double-encoded name", "GET " + lic + "?content_id=1&content%255Fid=2"},
		{"form body under a Content-Type that does not parse", "POST " + lic + "?content_id=1 HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded;;\r\nContent-Length: 12\r\n\r\ncontent_id=2"},
		{"form body listed after another type", "POST " + lic + "?content_id=1 HTTP/1.1\r\nContent-Type: application/json, application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\ncontent_id=2"},
		{"two Content-Types", "POST " + lic + "?content_id=1 HTTP/1.1\r\nContent-Type: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\ncontent_id=2"},
		{"multipart form", "POST " + lic + "?content_id=1 HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 0\r\n\r\n"},
		{"network-path reference //host/Rest/...", "GET //stock.adobe.io" + lic + "?content_id=2"},
		{"/\\ prefix", "GET /\\stock.adobe.io" + lic + "?content_id=2"},
		{"path parameter in a segment", "GET /Rest;x=1/Libraries/1/Content/License?content_id=2"},
		{"path parameter after License", "GET " + lic + ";jsessionid=1?content_id=2"},
		{"encoded path parameter", "GET /Rest%3Bx=1/Libraries/1/Content/License?content_id=2"},
		{"non-ASCII look-alike Licen\u017fe", "GET /Rest/Libraries/1/Content/Licen%C5%BFe?content_id=2"},
		{"double-encoded look-alike", "GET /Rest/Libraries/1/Content/Licen%25C5%25BFe?content_id=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.request
			if !strings.Contains(req, " HTTP/1.1\r\n") {
				req += " HTTP/1.1\r\n\r\n"
			}
			req = strings.Replace(req, " HTTP/1.1\r\n", " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", 1)
			before := len(lr.auditLines(t))
			answer := rawAnswer(t, addr, req)
			if !strings.HasPrefix(answer, "400 ") || !strings.Contains(answer, "X-Imsproxy-Error: bad_request") {
				t.Fatalf("answer %q, want 400 bad_request", answer)
			}
			if lines := lr.auditLines(t); len(lines) != before+1 || lines[before].Outcome != audit.OutcomeBadRequest {
				t.Errorf("audit lines %+v: want the refusal audited", lines[before:])
			}
		})
	}
	if n := stock.licenses.Load() + stock.searches.Load(); n != 0 {
		t.Fatalf("%d ambiguous requests reached Stock", n)
	}
	// Plain spellings still license.
	for _, ok := range []string{lic + "?content_id=1&license=Standard", lic + "?license=Standard&content_id=1&license_again=true&locale=en_US"} {
		resp := lr.get(t, ok)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", ok, resp.StatusCode)
		}
	}
}

// A licensing answer is held until its outcome is read; when the memory
// for held answers is spent (IMSPROXY_MAX_INFLIGHT_BYTES), it waits for
// room rather than being cut short or passed on unread.
func TestRoute_LicenseAnswerWaitsForMemory(t *testing.T) {
	l := inflight.New(64 << 10)
	stock := &fakeStock{editorial: map[string]bool{"1": false}}
	lr := newLicensingRoute(t, stock, RouteOptions{Inflight: l}, nil)
	l.Charge(64 << 10) // held by other answers
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(lr.front.URL + licenseTarget)
		if err != nil {
			t.Error(err)
			resp = nil
		}
		got <- resp
	}()
	testutil.WaitFor(t, "Stock to sell the license", func() bool { return stock.licenses.Load() == 1 })
	select {
	case resp := <-got:
		t.Fatalf("answered (%v) while there was no memory to hold the answer", resp)
	case <-time.After(100 * time.Millisecond):
	}
	l.Release(64 << 10)
	resp := <-got
	if resp == nil {
		t.FailNow()
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), lr.front.URL+"/Rest/Libraries/Download/1/1") {
		t.Fatalf("%d %s: want the whole answer, its download URL rewritten", resp.StatusCode, body)
	}
	lr.waitAudit(t, audit.OutcomeLicensed)
	testutil.WaitFor(t, "the held answer's memory to be given back", func() bool { return l.Used() == 0 })
}
