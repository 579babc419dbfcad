package proxy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
)

func TestCache_SuccessfulLicenseEmptiesTheCache(t *testing.T) {
	var license atomic.Value // "<status> <purchase state>"
	search := numberedSearch()
	f := newCacheFixture(t, func(w http.ResponseWriter, r *http.Request, b []byte) {
		switch {
		case strings.Contains(r.URL.Path, "/Content/License"):
			var status int
			var state string
			fmt.Sscan(license.Load().(string), &status, &state)
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"contents":{"1":{"purchase_details":{"state":%q}}}}`, state)
		case r.URL.Query().Get("search_parameters[media_id]") != "":
			io.WriteString(w, `{"nb_results":1,"files":[{"id":1,"is_editorial":false}]}`) // the editorial check
		default:
			search(w, r, b)
		}
	}, func(rc *config.Route) { rc.AllowLicense = true })
	steps := []struct {
		license string
		status  int
		want    string // X-Cache of the search after the license
	}{
		{"403 -", 403, "HIT"},
		{"400 -", 400, "HIT"},
		{"200 purchased", 200, "HIT"}, // already held: is_licensed did not change
		{"200 just_purchased", 200, "MISS"},
	}
	f.get(searchPath)
	for _, s := range steps {
		license.Store(s.license)
		resp, _ := f.do("GET", "/Rest/Libraries/1/Content/License?content_id=1&license=Standard")
		if resp.StatusCode != s.status {
			t.Fatalf("license %s answered %d", s.license, resp.StatusCode)
		}
		if resp, _ := f.get(searchPath); resp.Header.Get("X-Cache") != s.want {
			t.Errorf("search after a license answered %s: X-Cache = %q, want %s", s.license, resp.Header.Get("X-Cache"), s.want)
		}
	}
}

func TestServer_CachePurgeEndpoint(t *testing.T) {
	stock := newCacheFixture(t, nil, nil)
	aem := newCacheFixture(t, nil, func(rc *config.Route) { rc.Name, rc.Type = "aem", config.TypeAEM })
	var logs testutil.Buffer
	s := &Server{cfg: &config.Config{}, metrics: metrics.New(), routes: []*routeState{stock.state(), aem.state()},
		log: slog.New(slog.NewJSONHandler(&logs, nil))}
	admin := httptest.NewServer(s.adminHandler())
	t.Cleanup(admin.Close)

	stock.get(searchPath)
	stock.get(searchPath + "&page=2")
	cases := []struct {
		method, query string
		status        int
		code          string // X-Imsproxy-Error, "" on success
		purged        float64
	}{
		{"GET", "route=stock", 405, "method_not_allowed", 0},
		{"POST", "route=stock", 200, "", 2},
		{"POST", "route=stock", 200, "", 0},
		{"POST", "route=nope", 404, "unknown_route", 0},
		{"POST", "route=aem", 404, "no_cache", 0},
		{"POST", "", 400, "bad_request", 0},
	}
	for _, c := range cases {
		logged := len(logLines(t, logs.String()))
		req, _ := http.NewRequest(c.method, admin.URL+"/cache/purge?"+c.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != c.status || resp.Header.Get(route.ErrorHeader) != c.code ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %q %v, want %d %q JSON", c.method, c.query, resp.StatusCode, resp.Header.Get(route.ErrorHeader), err, c.status, c.code)
			continue
		}
		if c.code == "" && body["purged"] != c.purged {
			t.Errorf("%s %s: body %v, want purged %v", c.method, c.query, body, c.purged)
		}
		// An error names the route asked about, or the admin listener.
		if wantRoute := cmp.Or(strings.TrimPrefix(c.query, "route="), "admin"); c.code != "" && body["route"] != wantRoute {
			t.Errorf("%s %s: route %v, want %q", c.method, c.query, body["route"], wantRoute)
		}
		if c.status == 405 && resp.Header.Get("Allow") != "POST" {
			t.Errorf("405 without Allow: POST")
		}
		// One line per error, none for a purge (the route logs that), never the query.
		lines := logLines(t, logs.String())[logged:]
		var errorLines int
		for _, l := range lines {
			if l["code"] != nil {
				errorLines++
				if l["code"] != c.code || l["path"] != "/cache/purge" || l["status"] != float64(c.status) {
					t.Errorf("%s %s: error line %v", c.method, c.query, l)
				}
			}
		}
		if want := min(len(c.code), 1); errorLines != want {
			t.Errorf("%s %s: %d error lines, want %d: %v", c.method, c.query, errorLines, want, lines)
		}
	}
	if strings.Contains(logs.String(), "nope") {
		t.Errorf("the query reached the log: %s", logs.String())
	}
	if resp, _ := stock.get(searchPath); resp.Header.Get("X-Cache") != "MISS" {
		t.Errorf("after the purge: X-Cache = %q", resp.Header.Get("X-Cache"))
	}
}
