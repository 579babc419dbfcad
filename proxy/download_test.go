package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// downloadHost stands in for stock.adobe.com: it redirects to a signed URL,
// or to redirect when set.
type downloadHost struct {
	testutil.Upstream
	redirect string
}

func newDownloadHost(t *testing.T) (*downloadHost, *httptest.Server) {
	t.Helper()
	h := &downloadHost{}
	h.Handler = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		loc := h.redirect
		if loc == "" {
			loc = "https://cdn.example/files/1?sig=abc"
		}
		http.Redirect(w, r, loc, http.StatusFound)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func TestRoute_DownloadCarriesTokenInQueryOnly(t *testing.T) {
	host, hostSrv := newDownloadHost(t)
	api := &testutil.Upstream{}
	logs := &testutil.Buffer{}
	front := guardedRoute(t, api, RouteOptions{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		func(rc *config.Route) { rc.DownloadUpstream = mustURL(t, hostSrv.URL) })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, p := range []string{"/Rest/Libraries/Download/123/1?size=1600&token=callers-own", "/Rest/Libraries/Watermarked/Download/123/0"} {
		req, _ := http.NewRequest("GET", front.URL+p, nil)
		req.Header.Set("Authorization", "Bearer caller-key")
		req.Header.Set("X-Api-Key", "caller-key")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://cdn.example/files/1?sig=abc" {
			t.Fatalf("%s: %d Location %q, want the download host's redirect passed back", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	got := host.All()
	if len(got) != 2 || len(api.All()) != 0 {
		t.Fatalf("download host got %d requests, API %d; want 2 and 0", len(got), len(api.All()))
	}
	first := got[0]
	if first.Path != "/Rest/Libraries/Download/123/1" || first.RawQuery != "size=1600&token="+routeToken {
		t.Errorf("download request %s?%s, want the path unchanged and only the route's token added", first.Path, first.RawQuery)
	}
	for _, s := range got {
		for _, h := range []string{"Authorization", "X-Api-Key", "Proxy-Authorization"} {
			if v := s.Header.Get(h); v != "" {
				t.Errorf("%s sent to the download host: %q", h, v)
			}
		}
	}
	if strings.Contains(logs.String(), routeToken) {
		t.Errorf("the token was logged:\n%s", logs)
	}
}

// Only a GET (or HEAD) of a download path reaches the download host with
// the route's token; any other method is refused before a token is used.
func TestRoute_DownloadOnlyByGet(t *testing.T) {
	host, hostSrv := newDownloadHost(t)
	front := guardedRoute(t, &testutil.Upstream{}, RouteOptions{}, func(rc *config.Route) { rc.DownloadUpstream = mustURL(t, hostSrv.URL) })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		method string
		status int
	}{
		{"POST", http.StatusMethodNotAllowed},
		{"PUT", http.StatusMethodNotAllowed},
		{"DELETE", http.StatusMethodNotAllowed},
		{"HEAD", http.StatusFound},
		{"GET", http.StatusFound},
	} {
		before := len(host.All())
		req, _ := http.NewRequest(tt.method, front.URL+"/Rest/Libraries/Download/123/1", strings.NewReader("x"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.method, resp.StatusCode, b, tt.status)
		}
		forwarded := len(host.All()) - before
		if tt.status == http.StatusMethodNotAllowed {
			if forwarded != 0 || resp.Header.Get("Allow") != "GET, HEAD" || resp.Header.Get("X-Imsproxy-Error") != "method_not_allowed" {
				t.Errorf("%s: %d forwarded, Allow %q, error %q; want none forwarded, GET, HEAD and method_not_allowed",
					tt.method, forwarded, resp.Header.Get("Allow"), resp.Header.Get("X-Imsproxy-Error"))
			}
		} else if forwarded != 1 {
			t.Errorf("%s: %d requests reached the download host, want 1", tt.method, forwarded)
		}
	}
}

func TestRoute_DownloadRedirectCarryingTheTokenIsNotPassedOn(t *testing.T) {
	host, hostSrv := newDownloadHost(t)
	host.redirect = "https://elsewhere.example/x?token=" + routeToken
	front := guardedRoute(t, &testutil.Upstream{}, RouteOptions{}, func(rc *config.Route) { rc.DownloadUpstream = mustURL(t, hostSrv.URL) })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(front.URL + "/Rest/Libraries/Download/1/1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(resp.Header.Get("Location")+string(b), routeToken) {
		t.Fatalf("%d %q %s: want 502 without the token", resp.StatusCode, resp.Header.Get("Location"), b)
	}
}

// A download host that cannot be reached is DOWNLOAD_UPSTREAM's fault, and
// the 502 says so, not UPSTREAM's (which answers searches fine).
func TestRoute_UnreachableDownloadHostNamesItsVariable(t *testing.T) {
	front := guardedRoute(t, &testutil.Upstream{}, RouteOptions{}, func(rc *config.Route) { rc.DownloadUpstream = mustURL(t, "http://127.0.0.1:1") })
	resp, err := http.Get(front.URL + "/Rest/Libraries/Download/1/1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "IMSPROXY_STOCK_DOWNLOAD_UPSTREAM") {
		t.Fatalf("%d %s: want 502 naming IMSPROXY_STOCK_DOWNLOAD_UPSTREAM", resp.StatusCode, b)
	}
}

func TestRoute_LicensingAnswersDownloadURLsRewritten(t *testing.T) {
	// Content/Info and Member/LicenseHistory carry download URLs too.
	body := `{"files":[{"id":1,"download_url":"https://stock.adobe.com/Rest/Libraries/Download/1/2"},` +
		`{"id":2,"download_url":"https://stock.adobe.com/Download/DownloadFileDirectly/abc"},` +
		`{"id":3,"comp_url":"https:\/\/stock.adobe.com\/Rest\/Libraries\/Watermarked\/Download\/3\/0"},` +
		`{"id":4,"url":"https://other.example/Rest/Libraries/Download/4/1"}]}`
	api := &testutil.Upstream{}
	api.Handler = func(w http.ResponseWriter, _ *http.Request, _ []byte) { _, _ = io.WriteString(w, body) }
	front := guardedRoute(t, api, RouteOptions{}, func(rc *config.Route) { rc.DownloadUpstream = mustURL(t, "https://stock.adobe.com") })
	host := strings.TrimPrefix(front.URL, "http://")
	want := `{"files":[{"id":1,"download_url":"http://` + host + `/Rest/Libraries/Download/1/2"},` +
		`{"id":2,"download_url":"https://stock.adobe.com/Download/DownloadFileDirectly/abc"},` +
		`{"id":3,"comp_url":"http:\/\/` + host + `\/Rest\/Libraries\/Watermarked\/Download\/3\/0"},` +
		`{"id":4,"url":"https://other.example/Rest/Libraries/Download/4/1"}]}`
	for _, p := range []string{"/Rest/Libraries/1/Member/LicenseHistory?all=true", "/Rest/Libraries/1/Content/Info?content_id=1"} {
		resp, err := http.Get(front.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != want {
			t.Errorf("%s:\n got %s\nwant %s", p, got, want)
		}
	}
	// A search answer is not a licensing answer: left as Stock wrote it.
	resp, err := http.Get(front.URL + "/Rest/Media/1/Search/Files?search_parameters[words]=x")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Errorf("search answer changed: %s", got)
	}
}

func TestRoute_DownloadRefusedTokenIsReplacedForTheNextRequest(t *testing.T) {
	host := &testutil.Upstream{}
	host.Handler = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Query().Get("token") == "token-1" {
			http.Error(w, `{"code":"10","error":"This download is expired"}`, http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, "https://cdn.example/files/1", http.StatusFound)
	}
	hostSrv := httptest.NewServer(host)
	t.Cleanup(hostSrv.Close)
	front, _ := newTestRoute(t, &testutil.Upstream{}, &countingSource{}, func(rc *config.Route) { rc.DownloadUpstream = mustURL(t, hostSrv.URL) })
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, want := range []int{http.StatusUnauthorized, http.StatusFound} {
		resp, err := client.Get(front.URL + "/Rest/Libraries/Download/1/1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("download %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}
