package integration

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// What the Stock search cache stores and what it never does, end
// to end: the real binary in front of the emulator, whose faults give the
// answers Stock rarely sends (no-store, over 1 MiB).

// rawClient sends exactly the headers a test sets. Go's default client adds
// Accept-Encoding: gzip by itself and decodes the answer behind the test's
// back, which would hide what the cache stored and served.
var rawClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// rawDo is httpDo through rawClient.
func rawDo(t *testing.T, method, url string, body io.Reader, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	return clientDo(t, rawClient, method, url, body, headers...)
}

func rawGet(t *testing.T, url string, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	return rawDo(t, http.MethodGet, url, nil, headers...)
}

// searchPage is page n (from 0) of a search for cats, limit results a page.
func searchPage(n, limit int) string {
	return fmt.Sprintf("/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=%d"+
		"&search_parameters[offset]=%d&result_columns[]=id&result_columns[]=title&result_columns[]=keywords", limit, n*limit)
}

const (
	cacheEntries   = `imsproxy_cache_entries{route="stock"}`
	cacheBytes     = `imsproxy_cache_bytes{route="stock"}`
	cacheEvictions = `imsproxy_cache_evictions_total{route="stock"}`
)

func TestE2E_CacheStoresGzipAsSentAndDecodesItForOthers(t *testing.T) {
	a, _, base := startCachedStock(t, nil)
	// A strong validator on Stock's answers: it names the gzip bytes, so
	// a decoded answer must not carry it.
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{Header: map[string]string{"ETag": `"search-1"`}})

	status, h, zipped := rawGet(t, base+cacheSearch, "Accept-Encoding", "gzip")
	if status != 200 || h.Get("X-Cache") != "MISS" || h.Get("Content-Encoding") != "gzip" {
		t.Fatalf("first search: %d X-Cache=%q Content-Encoding=%q, want Stock's gzip answer", status, h.Get("X-Cache"), h.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !json.Valid(plain) || !strings.Contains(string(plain), `"files"`) {
		t.Fatalf("Stock's answer does not decode to a search answer: %v %q", err, plain)
	}

	for _, ae := range []string{"gzip", "deflate, gzip;q=0.5"} {
		status, h, body := rawGet(t, base+cacheSearch, "Accept-Encoding", ae)
		if status != 200 || h.Get("X-Cache") != "HIT" || h.Get("Content-Encoding") != "gzip" ||
			!bytes.Equal(body, zipped) || h.Get("Etag") != `"search-1"` {
			t.Errorf("Accept-Encoding %q: %d X-Cache=%q Content-Encoding=%q ETag=%q, %d bytes; want the gzip bytes as Stock sent them",
				ae, status, h.Get("X-Cache"), h.Get("Content-Encoding"), h.Get("Etag"), len(body))
		}
	}
	for _, header := range [][]string{nil, {"Accept-Encoding", "identity"}, {"Accept-Encoding", "gzip;q=0, br"}} {
		status, h, body := rawGet(t, base+cacheSearch, header...)
		if status != 200 || h.Get("X-Cache") != "HIT" || h.Get("Content-Encoding") != "" || !bytes.Equal(body, plain) ||
			h.Get("Content-Length") != strconv.Itoa(len(plain)) || h.Get("Etag") != "" {
			t.Errorf("%q: %d X-Cache=%q Content-Encoding=%q Content-Length=%q ETag=%q, %d bytes; want the decoded %d bytes",
				header, status, h.Get("X-Cache"), h.Get("Content-Encoding"), h.Get("Content-Length"), h.Get("Etag"), len(body), len(plain))
		}
	}
	if n := searches(a); n != 1 {
		t.Errorf("the emulator saw %d searches, want 1", n)
	}
}

func TestE2E_CacheEvictsTheLeastRecentlyUsedBeyondCACHE_SIZE(t *testing.T) {
	a, p, base := startCachedStock(t, map[string]string{"IMSPROXY_STOCK_CACHE_SIZE": "2"})
	pageA, pageB, pageC := searchPage(0, 3), searchPage(1, 3), searchPage(2, 3)
	for i, step := range []struct{ target, want string }{
		{pageA, "MISS"}, {pageB, "MISS"},
		{pageA, "HIT"},  // A is now the more recently used
		{pageC, "MISS"}, // a third entry: B goes
		{pageA, "HIT"}, {pageC, "HIT"},
		{pageB, "MISS"}, // back in, B evicts A
	} {
		if _, h, _ := httpGet(t, base+step.target); h.Get("X-Cache") != step.want {
			t.Errorf("step %d: X-Cache = %q, want %s", i+1, h.Get("X-Cache"), step.want)
		}
	}
	if n := searches(a); n != 4 {
		t.Errorf("the emulator saw %d searches, want 4", n)
	}
	for series, want := range map[string]float64{cacheEvictions: 2, cacheEntries: 2} {
		if got := p.metricValue(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

func TestE2E_CacheEvictsTheLeastRecentlyUsedBeyondCACHE_MAX_BYTES(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	pages := []string{searchPage(0, 30), searchPage(1, 30), searchPage(2, 30)}
	// The budget is the three bodies' length: each entry also counts its
	// key, headers and 320 bytes, so three never fit; with bodies of some
	// kilobytes, two do. Bodies as stored: identity, as rawGet asks.
	var budget, smallest int
	for _, page := range pages {
		status, _, body := rawGet(t, a.URL+page, "X-Api-Key", creds.ClientID, "X-Product", "e2e/1")
		if status != 200 {
			t.Fatalf("%s: %d %s", page, status, body)
		}
		budget += len(body)
		if smallest == 0 || len(body) < smallest {
			smallest = len(body)
		}
	}
	if smallest < 4<<10 {
		t.Fatalf("a page of %d bytes is too small to tell two entries from three within %d bytes", smallest, budget)
	}
	env := a.stockOAuthEnv(creds)
	env["IMSPROXY_STOCK_CACHE_MAX_BYTES"] = strconv.Itoa(budget)
	p := startProxy(t, env)
	p.waitReady()
	base := p.URL("stock")

	for _, page := range pages {
		if _, h, _ := rawGet(t, base+page); h.Get("X-Cache") != "MISS" {
			t.Errorf("%s: X-Cache = %q, want MISS", page, h.Get("X-Cache"))
		}
		if b := p.metricValue(cacheBytes); b > float64(budget) || b <= 0 {
			t.Fatalf("%s = %v, want within CACHE_MAX_BYTES=%d", cacheBytes, b, budget)
		}
	}
	for series, want := range map[string]float64{cacheEvictions: 1, cacheEntries: 2} {
		if got := p.metricValue(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// The first page was the least recently used: it went; back in, it
	// evicts the second, and the third stays.
	for _, step := range []struct{ target, want string }{{pages[0], "MISS"}, {pages[2], "HIT"}, {pages[1], "MISS"}} {
		if _, h, _ := rawGet(t, base+step.target); h.Get("X-Cache") != step.want {
			t.Errorf("%s: X-Cache = %q, want %s", step.target, h.Get("X-Cache"), step.want)
		}
	}
}

func TestE2E_CacheDoesNotStoreNoStoreAnswers(t *testing.T) {
	a, p, base := startCachedStock(t, nil)
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{Header: map[string]string{"Cache-Control": "no-store"}})
	for range 2 {
		status, h, body := httpGet(t, base+cacheSearch)
		if status != 200 || h.Get("X-Cache") != "MISS" || h.Get("Cache-Control") != "no-store" || !strings.Contains(string(body), `"files"`) {
			t.Fatalf("no-store answer: %d X-Cache=%q Cache-Control=%q, want Stock's answer, MISS", status, h.Get("X-Cache"), h.Get("Cache-Control"))
		}
	}
	if n := p.metricValue(cacheEntries); n != 0 {
		t.Errorf("%s = %v, want 0", cacheEntries, n)
	}
	// The same answer without no-store is stored.
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{})
	for _, want := range []string{"MISS", "HIT"} {
		if _, h, _ := httpGet(t, base+cacheSearch); h.Get("X-Cache") != want {
			t.Errorf("without no-store: X-Cache = %q, want %s", h.Get("X-Cache"), want)
		}
	}
	if n := searches(a); n != 3 {
		t.Errorf("the emulator saw %d searches, want 3", n)
	}
}

func TestE2E_CacheDoesNotStoreAnswersOtherThan200(t *testing.T) {
	a, p, base := startCachedStock(t, nil)
	for _, c := range []struct {
		name, target, endpoint string
		faults                 fakeadobe.Faults
		status                 int
	}{
		{"400 invalid parameter", "/Rest/Media/1/Search/Files?search_parameters[words]=cat&search_parameters[limit]=0",
			"stock.search_files", fakeadobe.Faults{}, 400},
		{"404 unknown category", "/Rest/Media/1/Search/Category?category_id=999999", "stock.category", fakeadobe.Faults{}, 404},
		{"429 from the gateway", cacheSearch, "stock.search_files", fakeadobe.Faults{ErrorEvery: 1, ErrorStatus: 429}, 429},
		{"503", cacheSearch, "stock.search_files", fakeadobe.Faults{ErrorEvery: 1}, 503},
	} {
		t.Run(c.name, func(t *testing.T) {
			a.SetFaults(fakeadobe.ServiceStock, c.faults)
			defer a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{})
			before := a.Stats().Requests[c.endpoint]
			for range 2 {
				if status, h, body := httpGet(t, base+c.target); status != c.status || h.Get("X-Cache") != "MISS" {
					t.Fatalf("%d X-Cache=%q %s, want Stock's %d, MISS", status, h.Get("X-Cache"), body, c.status)
				}
			}
			if n := a.Stats().Requests[c.endpoint] - before; n != 2 {
				t.Errorf("the emulator saw %d requests, want 2", n)
			}
			if n := p.metricValue(cacheEntries); n != 0 {
				t.Errorf("%s = %v, want 0", cacheEntries, n)
			}
		})
	}
}

func TestE2E_CachePassesOnAnswersOver1MiBWithoutStoringThem(t *testing.T) {
	a, p, base := startCachedStock(t, nil)
	const limit = 1 << 20
	// Identity answers (rawGet), so the body's size is what the cache sees.
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{PadTo: limit + 1})
	for range 2 {
		status, h, body := rawGet(t, base+cacheSearch)
		if status != 200 || h.Get("X-Cache") != "MISS" || len(body) != limit+1 || !json.Valid(body) {
			t.Fatalf("answer over 1 MiB: %d X-Cache=%q, %d bytes (valid JSON: %v), want Stock's %d bytes whole, MISS",
				status, h.Get("X-Cache"), len(body), json.Valid(body), limit+1)
		}
	}
	if n := p.metricValue(cacheEntries); n != 0 {
		t.Errorf("%s = %v, want 0", cacheEntries, n)
	}
	// Exactly 1 MiB is stored.
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{PadTo: limit})
	other := searchPage(1, 3)
	_, _, first := rawGet(t, base+other)
	status, h, body := rawGet(t, base+other)
	if status != 200 || h.Get("X-Cache") != "HIT" || len(body) != limit || !bytes.Equal(body, first) {
		t.Errorf("answer of 1 MiB: %d X-Cache=%q, %d bytes, want a HIT of %d", status, h.Get("X-Cache"), len(body), limit)
	}
	if n := searches(a); n != 3 {
		t.Errorf("the emulator saw %d searches, want 3", n)
	}
}

func TestE2E_CacheBypassedBySearchesItCannotServe(t *testing.T) {
	a, p, base := startCachedStock(t, nil)
	for _, c := range []struct {
		name, method, target string
		body                 func() (io.Reader, string) // body and its Content-Type
		header               []string
	}{
		{"caller's Cache-Control: no-store", "GET", cacheSearch, nil, []string{"Cache-Control", "no-store"}},
		{"conditional", "GET", cacheSearch, nil, []string{"If-None-Match", `"search-1"`}},
		{"range", "GET", cacheSearch, nil, []string{"Range", "bytes=0-99"}},
		{"a query that does not decode", "GET", cacheSearch + "&x=%zz", nil, nil},
		{"POST: a search by similar image", "POST",
			"/Rest/Media/1/Search/Files?search_parameters[similar_image]=1&search_parameters[limit]=3&result_columns[]=id",
			similarImageUpload(t), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := searches(a)
			for range 2 {
				var body io.Reader
				header := c.header
				if c.body != nil {
					var ct string
					body, ct = c.body()
					header = append([]string{"Content-Type", ct}, header...)
				}
				status, h, answer := rawDo(t, c.method, base+c.target, body, header...)
				if status != 200 || h.Get("X-Cache") != "BYPASS" || !strings.Contains(string(answer), `"files"`) {
					t.Fatalf("%d X-Cache=%q %.200s, want Stock's answer, BYPASS", status, h.Get("X-Cache"), answer)
				}
			}
			if n := searches(a) - before; n != 2 {
				t.Errorf("the emulator saw %d searches, want 2", n)
			}
		})
	}
	if n := p.metricValue(cacheEntries); n != 0 {
		t.Errorf("%s = %v, want 0", cacheEntries, n)
	}
}

// similarImageUpload makes the multipart body of a search by image.
func similarImageUpload(t *testing.T) func() (io.Reader, string) {
	return func() (io.Reader, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, err := mw.CreateFormFile("similar_image", "cat.jpg")
		if err == nil {
			_, err = fw.Write([]byte("\xff\xd8\xff\xe0 not much of a cat"))
		}
		if err == nil {
			err = mw.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		return &b, mw.FormDataContentType()
	}
}
