package integration

// End-to-end tests of the hardening: no caller can obtain the route's
// token, strip it, or spend past the guards. Each test is one way the
// guards once broke, tried as an attacker would against the real binary
// in front of the emulator (or of a stand-in upstream where the emulator
// cannot show it).

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

// licensingEnv is a stock route of a's that allows licensing, with an
// audit log, and a daily limit when limit is not "".
func licensingEnv(a *adobe, creds *fakeadobe.Credentials, audit, limit string) map[string]string {
	env := guardEnv(a, creds, a.URL, audit)
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	if limit != "" {
		env["IMSPROXY_STOCK_LICENSE_DAILY_LIMIT"] = limit
	}
	return env
}

// rawHTTP sends request as written on a connection of its own and reads
// the answer.
func rawHTTP(t *testing.T, addr, request string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// Finding: a caller with a client timeout shorter than Stock's answer time
// got 499, its attempt settled failed and its slot given back, although
// Stock had sold the license. With LICENSE_DAILY_LIMIT=1, five callers
// that hung up and one that waited made six purchases.
func TestE2E_HangingUpDoesNotBuyPastTheDailyLimit(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	ids := photos(t, a, creds, false, 6)
	audit := filepath.Join(t.TempDir(), "audit.log")
	p := startProxy(t, licensingEnv(a, creds, audit, "1"))
	p.waitReady()
	// Stock sells at once and answers a second later.
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{AnswerLatency: fakeadobe.Duration(time.Second)})

	impatient := &http.Client{Timeout: 200 * time.Millisecond}
	for _, id := range ids[:5] {
		req, _ := http.NewRequest("GET", p.URL("stock")+licensePath(id), nil)
		req.Header.Set("X-Imsproxy-Allow-Editorial", "true")
		if resp, err := impatient.Do(req); err == nil {
			resp.Body.Close() // refused at once: the limit is reached
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("license of %s: %d, want to hang up or 429", id, resp.StatusCode)
			}
		}
	}
	status, _, body := httpGet(t, p.URL("stock")+licensePath(ids[5]), "X-Imsproxy-Allow-Editorial", "true")
	if status != http.StatusTooManyRequests {
		t.Errorf("the caller who waited: %d %s, want 429: the day's license is made", status, body)
	}
	waitFor(t, 20*time.Second, "the license to be audited", func() bool {
		for _, l := range readAuditLog(t, audit) {
			if l.Outcome == "licensed" {
				return true
			}
		}
		return false
	})
	if got := a.Stats().Licenses; got != 1 {
		t.Fatalf("Stock sold %d licenses under LICENSE_DAILY_LIMIT=1", got)
	}
}

// Finding: the credentials were set on the inbound header before the
// reverse proxy removed the hop-by-hop headers Connection names, so a
// search sent with "Connection: Authorization" left without a token, and
// its answer (no is_licensed) was cached for every caller.
func TestE2E_ConnectionHeaderCannotStripTheCredentials(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	id := photos(t, a, creds, false, 1)[0]
	p := startProxy(t, licensingEnv(a, creds, filepath.Join(t.TempDir(), "audit.log"), ""))
	p.waitReady()
	// The organisation holds a license of the asset: a search made with
	// the route's token says so in is_licensed, one made without does not.
	if status, _, body := httpGet(t, p.URL("stock")+licensePath(id)); status != 200 {
		t.Fatalf("license: %d %s", status, body)
	}
	addr := strings.TrimPrefix(p.URL("stock"), "http://")
	before := len(emulatorSaw(a, "stock.search_files"))
	// Searches are slow, so that callers arriving together share one fetch.
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{Latency: fakeadobe.Duration(300 * time.Millisecond)})
	for i, strip := range []string{"Authorization", "X-Api-Key", "X-Product", "authorization, x-api-key"} {
		search := "/Rest/Media/1/Search/Files?search_parameters[media_id]=" + id +
			"&result_columns[]=id&result_columns[]=is_licensed&search_parameters[limit]=" + strconv.Itoa(i+1)
		answers := make(chan string, 3)
		send := func(connection string) {
			_, _, body := rawHTTP(t, addr, "GET "+search+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+connection+"\r\n")
			answers <- body
		}
		missed := cacheMisses(t, p)
		go send("Connection: " + strip + "\r\n")
		// The attacker leads the fetch; the others join it.
		waitFor(t, 10*time.Second, "the first search to start its fetch", func() bool { return cacheMisses(t, p) > missed })
		go send("")
		send("")
		for range 3 {
			if body := <-answers; !strings.Contains(body, `"is_licensed":"Standard"`) {
				t.Errorf("Connection: %s: an answer made without the route's token: %s", strip, body)
			}
		}
		// The next caller is served from the cache: the right answer.
		if _, h, body := rawHTTP(t, addr, "GET "+search+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); h.Get("X-Cache") != "HIT" || !strings.Contains(body, `"Standard"`) {
			t.Errorf("Connection: %s: cached answer (X-Cache %s): %s", strip, h.Get("X-Cache"), body)
		}
	}
	for _, r := range emulatorSaw(a, "stock.search_files")[before:] {
		if !r.HasAuthorization || r.Token.State != fakeadobe.TokenValid || !r.HasAPIKey || !r.HasProduct {
			t.Errorf("a search reached Stock without the route's credentials: %+v", r)
		}
	}
}

// cacheMisses reads imsproxy_cache_misses_total of route stock.
func cacheMisses(t *testing.T, p *proxyProcess) float64 {
	t.Helper()
	for _, line := range strings.Split(fetchMetrics(t, p), "\n") {
		if v, ok := strings.CutPrefix(line, `imsproxy_cache_misses_total{route="stock"} `); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return 0
}

// Finding: TRACE was forwarded with the bearer token, and an upstream that
// echoes the request (Apache's default TraceEnable On, an AEM 6.5
// dispatcher) handed the caller a 24-hour organisation token.
func TestE2E_TraceNeverReachesTheUpstream(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Metascopes: []string{"ent_aem_cloud_api"}})
	for _, svc := range []fakeadobe.Service{fakeadobe.ServiceAEM, fakeadobe.ServiceStock} {
		a.SetFaults(svc, fakeadobe.Faults{EchoTrace: true})
	}
	// The emulator does echo: what the proxy would have passed on.
	if _, _, body := httpDo(t, "TRACE", a.URL+"/api/assets.json", nil, "Authorization", "Bearer direct"); !strings.Contains(string(body), "Bearer direct") {
		t.Fatalf("the emulator does not echo TRACE: %s", body)
	}
	p := startProxy(t, a.stockAndAEMEnv(t, creds))
	p.waitReady()
	before := len(a.Requests(0))
	for _, route := range []string{"aem", "stock"} {
		for _, method := range []string{"TRACE", "TRACK"} {
			status, h, body := httpDo(t, method, p.URL(route)+"/api/assets.json", nil)
			if strings.Contains(string(body), "Bearer") {
				t.Fatalf("%s on route %s: the answer carries a bearer token: %s", method, route, body)
			}
			checkProxyError(t, status, h, body, http.StatusMethodNotAllowed, "method_not_allowed", route)
		}
	}
	for _, r := range a.Requests(0)[before:] {
		if r.Method == "TRACE" || r.Method == "TRACK" {
			t.Errorf("a %s reached the emulator through the proxy: %+v", r.Method, r)
		}
	}
}

// Finding: without a callers file (a developer's machine), an <img src> on
// any web page licensed an asset, a DNS-rebinding name read AEM, and a
// cross-site POST /cache/purge emptied the cache; license answers pointed
// their download URLs at whatever Host the caller sent.
func TestE2E_WebPagesCannotSpendOrRead(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Metascopes: []string{"ent_stocksearch_sdk", "ent_aem_cloud_api"}})
	id := photos(t, a, creds, false, 1)[0]
	audit := filepath.Join(t.TempDir(), "audit.log")
	env := a.stockAndAEMEnv(t, creds)
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	env["IMSPROXY_AUDIT_LOG"] = audit
	p := startProxy(t, env)
	p.waitReady()
	stock, aem := p.URL("stock"), p.URL("aem")

	// <img src="http://127.0.0.1:8080/Rest/Libraries/1/Content/License?...">
	status, h, body := httpGet(t, stock+licensePath(id), "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image")
	checkProxyError(t, status, h, body, http.StatusForbidden, "cross_site_request", "stock")
	// fetch() from another origin, which names itself.
	status, h, body = httpDo(t, "POST", stock+licensePath(id), nil, "Origin", "https://evil.example")
	checkProxyError(t, status, h, body, http.StatusForbidden, "cross_site_request", "stock")
	if got := a.Stats().Licenses; got != 0 {
		t.Fatalf("a web page licensed %d assets", got)
	}
	if lines := readAuditLog(t, audit); len(lines) != 2 || lines[0].Outcome != "cross_site_request" || lines[0].ContentID != id {
		t.Errorf("audit %+v: want both attempts audited as refused", lines)
	}

	// A name the attacker's DNS points at 127.0.0.1 (DNS rebinding).
	for _, target := range []struct{ route, path string }{{aem, "/api/assets.json"}, {stock, licensePath(id)}} {
		addr := strings.TrimPrefix(target.route, "http://")
		_, port, _ := net.SplitHostPort(addr)
		before := len(a.Requests(0))
		status, h, body := rawHTTP(t, addr, "GET "+target.path+" HTTP/1.1\r\nHost: rebind.attacker.example:"+port+"\r\n\r\n")
		if status != http.StatusForbidden || h.Get("X-Imsproxy-Error") != "host_not_allowed" {
			t.Errorf("%s through a rebinding name: %d %s", target.path, status, body)
		}
		if n := len(a.Requests(0)) - before; n != 0 {
			t.Errorf("%s through a rebinding name: %d requests reached the emulator", target.path, n)
		}
	}

	// A page posting a form to the admin listener.
	search := stock + "/Rest/Media/1/Search/Files?search_parameters[words]=city"
	httpGet(t, search)
	status, h, body = httpDo(t, "POST", p.AdminURL()+"/cache/purge?route=stock", nil, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	checkProxyError(t, status, h, body, http.StatusForbidden, "cross_site_request", "admin")
	if _, h, _ := httpGet(t, search); h.Get("X-Cache") != "HIT" {
		t.Errorf("after a cross-site purge: X-Cache %q, want HIT (the cache kept)", h.Get("X-Cache"))
	}
}

// Finding: ambiguous license requests passed the guard. A PHP upstream
// reads content.id and "content id" beside content_id as content_id, so
// the editorial guard and the audit checked one asset while another was
// licensed; a form body under a Content-Type that does not parse cleanly,
// "//host/Rest/…/License", "/Rest;x=1/…/License" and Licenſe were read as
// licenses by such a server and not by the guard. The emulator reads
// requests strictly, so here a lenient stand-in sits in front of it and
// licenses what it reads (testutil.ReadLenientLicense).
func TestE2E_AmbiguousLicenseRequestsAreRefused(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	plain := photos(t, a, creds, false, 1)[0]
	editorial := photos(t, a, creds, true, 1)[0]
	emulator, _ := url.Parse(a.URL)
	lenient := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(emulator)
		pr.Out.URL.RawQuery = pr.In.URL.RawQuery
		body, _ := io.ReadAll(pr.In.Body)
		pr.Out.Body, pr.Out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		lic, ok := testutil.ReadLenientLicense(pr.In.RequestURI, strings.Join(pr.In.Header.Values("Content-Type"), ", "), body)
		if !ok {
			return
		}
		if lic.License == "" {
			lic.License = "Standard"
		}
		// What this server licenses, in the emulator's terms.
		pr.Out.Method, pr.Out.Body, pr.Out.ContentLength = http.MethodGet, http.NoBody, 0
		pr.Out.URL.Path, pr.Out.URL.RawPath = "/Rest/Libraries/1/Content/License", ""
		pr.Out.URL.RawQuery = url.Values{"content_id": {lic.ContentID}, "license": {lic.License}}.Encode()
		pr.Out.Header.Del("Content-Type")
	}})
	t.Cleanup(lenient.Close)
	audit := filepath.Join(t.TempDir(), "audit.log")
	env := licensingEnv(a, creds, audit, "")
	env["IMSPROXY_STOCK_UPSTREAM"] = lenient.URL
	p := startProxy(t, env)
	p.waitReady()
	addr := strings.TrimPrefix(p.URL("stock"), "http://")

	const lic = "/Rest/Libraries/1/Content/License"
	form := "content_id=" + editorial
	for name, request := range map[string]string{
		"content.id":                 "GET " + lic + "?content_id=" + plain + "&content.id=" + editorial + "&license=Standard HTTP/1.1\r\n\r\n",
		"content+id":                 "GET " + lic + "?content_id=" + plain + "&content+id=" + editorial + "&license=Standard HTTP/1.1\r\n\r\n",
		"form under two types":       "POST " + lic + "?content_id=" + plain + "&license=Standard HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded, text/plain\r\nContent-Length: " + strconv.Itoa(len(form)) + "\r\n\r\n" + form,
		"network-path reference":     "GET //stock.adobe.io" + lic + "?content_id=" + editorial + " HTTP/1.1\r\n\r\n",
		"path parameter":             "GET /Rest;x=1/Libraries/1/Content/License?content_id=" + editorial + " HTTP/1.1\r\n\r\n",
		"non-ASCII look-alike":       "GET /Rest/Libraries/1/Content/Licen%C5%BFe?content_id=" + editorial + " HTTP/1.1\r\n\r\n",
		"Content_ID in another case": "GET " + lic + "?content_id=" + plain + "&Content_ID=" + editorial + " HTTP/1.1\r\n\r\n",
	} {
		request = strings.Replace(request, " HTTP/1.1\r\n", " HTTP/1.1\r\nHost: 127.0.0.1\r\n", 1)
		status, h, body := rawHTTP(t, addr, request)
		if status != http.StatusBadRequest || h.Get("X-Imsproxy-Error") != "bad_request" {
			t.Errorf("%s: %d %s", name, status, body)
		}
	}
	if ls := a.Licenses(creds.OrgID); len(ls) != 0 {
		t.Fatalf("licensed through ambiguous requests: %+v", ls)
	}
	// The stand-in licenses plain requests as they are.
	if status, _, body := httpGet(t, p.URL("stock")+licensePath(plain)); status != 200 {
		t.Fatalf("a plain license through the stand-in: %d %s", status, body)
	}
	if ls := a.Licenses(creds.OrgID); len(ls) != 1 || strconv.Itoa(ls[0].AssetID) != plain {
		t.Fatalf("licenses %+v, want %s alone", ls, plain)
	}
}
