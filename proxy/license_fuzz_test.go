package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
)

// lenientStock stands for whatever server sits behind the route, read as
// leniently as any could read a request (testutil.ReadLenientLicense): it
// records every request that it would take for a license, and answers the
// editorial check's search with "not editorial" for any asset.
type lenientStock struct {
	mu       sync.Mutex
	licenses []lenientSeen
}

type lenientSeen struct {
	requestID string
	license   testutil.LenientLicense
}

func (s *lenientStock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	// Whichever Content-Type a server heeds, the first or the last.
	contentType := strings.Join(r.Header.Values("Content-Type"), ", ")
	if lic, ok := testutil.ReadLenientLicense(r.RequestURI, contentType, body); ok {
		s.mu.Lock()
		s.licenses = append(s.licenses, lenientSeen{r.Header.Get("X-Request-Id"), lic})
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"contents":{"`+lic.ContentID+`":{"purchase_details":{"state":"just_purchased"}}}}`)
		return
	}
	if id := r.URL.Query().Get("search_parameters[media_id]"); id != "" {
		_ = json.NewEncoder(w).Encode(map[string]any{"files": []map[string]any{{"id": id, "is_editorial": false}}})
		return
	}
	_, _ = io.WriteString(w, `{}`)
}

func (s *lenientStock) take() []lenientSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.licenses
	s.licenses = nil
	return out
}

// FuzzLicenseGuard sends generated requests — method, request target,
// Content-Type (and, through line breaks in it, any other header), body —
// through a stock route that allows licensing, in front of lenientStock.
// Whatever that server would take for a license must have been refused by
// the route, or audited as a license of the very asset that server would
// license: the guards (editorial check, daily limit, caller's right) and
// the audit never look at one asset while another is licensed. The oracle
// is written apart from the guard's parser, in another package.
func FuzzLicenseGuard(f *testing.F) {
	for _, seed := range [][4]string{
		{"GET", "/Rest/Libraries/1/Content/License?content_id=123&license=Standard", "", ""},
		{"POST", "/Rest/Libraries/1/Content/License?content_id=123", "application/json", `{"cce_agency":[{"id":"1","value":"x"}]}`},
		{"GET", "/Rest/Libraries/1/Content/License?content_id=1&content.id=2", "", ""},
		{"GET", "/Rest/Libraries/1/Content/License?content_id=1&content+id=2", "", ""},
		{"GET", "/Rest/Libraries/1/Content/License?content_id=1&Content_Id=2", "", ""},
		{"GET", "/Rest/Libraries/1/Content/License?content_id=1;content_id=2", "", ""},
		{"POST", "/Rest/Libraries/1/Content/License?content_id=1", "application/x-www-form-urlencoded;;", "content_id=2"},
		{"POST", "/Rest/Libraries/1/Content/License?content_id=1", "text/plain\r\nContent-Type: application/x-www-form-urlencoded", "content_id=2"},
		{"POST", "/Rest/Libraries/1/Content/License?content_id=1", "application/x-www-form-urlencoded, text/plain", "content_id=2"},
		{"POST", "/Rest/Libraries/1/Content/License?content_id=1", "Application/X-WWW-Form-Urlencoded (legacy)", "content_id=2"},
		{"GET", "//host/Rest/Libraries/1/Content/License?content_id=2", "", ""},
		{"GET", "/Rest;x=1/Libraries/1/Content/License?content_id=2", "", ""},
		{"GET", "/Rest/Libraries/1/Content/Licen%C5%BFe?content_id=2", "", ""},
		{"GET", "/Rest/Libraries/1/Content/%4Cicense?content_id=2", "", ""},
		{"GET", "/rest/libraries/1/content/LICENSE/?content_id=2&license=Extended", "", ""},
		{"PUT", "/Rest/Libraries/1/Member/../Content/License?content_id=2", "", ""},
		{"GET", "/Rest/Media/1/Search/Files?search_parameters[words]=cat", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}

	up := &lenientStock{}
	upstream := httptest.NewServer(up)
	f.Cleanup(upstream.Close)
	// Every license writes two synced audit lines: on tmpfs, where there
	// is one, they cost nothing.
	dir := f.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "imsproxy-fuzz-"); err == nil {
		dir = shm
		f.Cleanup(func() { _ = os.RemoveAll(shm) })
	}
	auditPath := dir + "/audit.log"
	log, err := audit.Open(auditPath, time.Now(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = log.Close() })
	rc := testroute.Stock(f, upstream.URL)
	rc.AllowLicense = true
	rc.DownloadUpstream, _ = url.Parse("https://stock.adobe.com")
	rt := NewRoute(rc, staticTokens{}, RouteOptions{Audit: log})
	var auditRead int64
	var seq int

	f.Fuzz(func(t *testing.T, method, target, contentType, body string) {
		seq++
		id := "fuzz-" + strconv.Itoa(seq)
		raw := method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: " + id +
			"\r\nContent-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // not a request net/http would serve
		}
		req.RemoteAddr = "127.0.0.1:1"
		rt.ServeHTTP(httptest.NewRecorder(), req)

		licensed := up.take()
		audited := readAuditFrom(t, auditPath, &auditRead)
		for _, seen := range licensed {
			ok := false
			for _, rec := range audited {
				if rec.RequestID == seen.requestID && rec.Outcome == audit.OutcomeAttempt && rec.ContentID == seen.license.ContentID {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("%s %q (Content-Type %q, body %q): the upstream would license content %s, but the route audited %+v",
					method, target, contentType, body, seen.license.ContentID, audited)
			}
		}
	})
}

// readAuditFrom returns the audit lines after offset *at, and moves it.
func readAuditFrom(t *testing.T, path string, at *int64) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(*at, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	*at += int64(len(data))
	var out []audit.Record
	for _, line := range strings.Split(string(data), "\n") {
		var rec audit.Record
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}
