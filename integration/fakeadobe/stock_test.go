package fakeadobe

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

const (
	searchPath  = "/Rest/Media/1/Search/Files"
	profilePath = "/Rest/Libraries/1/Member/Profile"
)

// TestStockGateway checks the gateway and application errors in front of
// every Stock path, in their exact shapes.
func TestStockGateway(t *testing.T) {
	e := newEnv(t, Options{})
	other := e.newCreds(CredentialOptions{})
	valid := e.token(e.creds)
	revoked := e.token(e.creds)
	e.srv.RevokeToken(revoked)
	otherClients := e.token(other)
	search := searchPath + "?" + q("search_parameters[words]", "dog")

	cases := []struct {
		name    string
		path    string
		headers map[string]string
		method  string
		status  int
		field   string // "error_code" (gateway) or "code" (Stock)
		code    string
	}{
		{"no x-api-key", search, map[string]string{"X-Product": "t/1"}, "", 403, "error_code", "403000"},
		{"unknown x-api-key", search, map[string]string{"X-Api-Key": "caller-key", "X-Product": "t/1"}, "", 403, "error_code", "403003"},
		{"malformed bearer", search, map[string]string{"X-Api-Key": e.creds.ClientID, "X-Product": "t/1", "Authorization": "Basic eDp5"}, "", 401, "error_code", "401013"},
		{"unknown bearer", search, stockHeaders(e.creds, "caller-key"), "", 401, "error_code", "401013"},
		{"revoked bearer", search, stockHeaders(e.creds, revoked), "", 401, "error_code", "401013"},
		{"token of another client", search, stockHeaders(e.creds, otherClients), "", 401, "error_code", "401013"},
		{"licensing without a token", profilePath, stockHeaders(e.creds, ""), "", 403, "error_code", "403010"},
		{"no X-Product", search, map[string]string{"X-Api-Key": e.creds.ClientID}, "", 400, "code", "600"},
		{"invalid locale", search + "&locale=english", stockHeaders(e.creds, ""), "", 400, "code", "020"},
		{"unknown path", "/Rest/Media/1/Search/Nothing", stockHeaders(e.creds, ""), "", 404, "code", "031"},
		{"wrong method", profilePath, stockHeaders(e.creds, valid), http.MethodDelete, 405, "code", "031"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			resp, body := e.do(method, tc.path, tc.headers, nil)
			m := mustJSON(t, body)
			if resp.StatusCode != tc.status || m[tc.field] != tc.code {
				t.Fatalf("got %d %s, want %d %s=%s", resp.StatusCode, body, tc.status, tc.field, tc.code)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id in the answer")
			}
		})
	}
}

func TestStockGateway_ExpiredToken(t *testing.T) {
	e := newEnv(t, Options{TokenLifetime: 3 * time.Second})
	tok := e.token(e.creds)
	if resp, body := e.get(profilePath, stockHeaders(e.creds, tok)); resp.StatusCode != 200 {
		t.Fatalf("fresh token: %d %s", resp.StatusCode, body)
	}
	e.clock.Advance(3 * time.Second)
	resp, body := e.get(profilePath, stockHeaders(e.creds, tok))
	if resp.StatusCode != 401 || mustJSON(t, body)["error_code"] != "401013" {
		t.Fatalf("expired token: %d %s", resp.StatusCode, body)
	}
}

func TestStock_EchoesRequestID(t *testing.T) {
	e := newEnv(t, Options{})
	h := stockHeaders(e.creds, "")
	h["X-Request-Id"] = "trace-123"
	resp, _ := e.get(searchPath+"?"+q("search_parameters[words]", "dog"), h)
	if got := resp.Header.Get("X-Request-Id"); got != "trace-123" {
		t.Fatalf("X-Request-Id %q, want trace-123", got)
	}
}

func TestCategoryTree(t *testing.T) {
	e := newEnv(t, Options{})
	cases := []struct {
		name, query string
		status      int
		firstID     float64
		firstName   string
	}{
		{"top level", "", 200, 1, "Animals"},
		{"children of Food", "category_id=289", 200, 300, "Bread"},
		{"localised", "category_id=289&locale=de_DE", 200, 300, "Brot"},
		{"leaf has no children", "category_id=300", 200, 0, ""},
		{"unknown category", "category_id=999999", 404, 0, ""},
		{"not an integer", "category_id=food", 400, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get("/Rest/Media/1/Search/CategoryTree?"+tc.query, stockHeaders(e.creds, ""))
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if tc.status != 200 {
				return
			}
			var list []map[string]any
			decodeInto(t, body, &list)
			if tc.firstName == "" {
				if len(list) != 0 {
					t.Fatalf("want [], got %s", body)
				}
				return
			}
			if list[0]["id"] != tc.firstID || list[0]["name"] != tc.firstName || list[0]["link"] == "" {
				t.Fatalf("first %v, want %v %s", list[0], tc.firstID, tc.firstName)
			}
		})
	}
}

func TestCategory(t *testing.T) {
	e := newEnv(t, Options{})
	resp, body := e.get("/Rest/Media/1/Search/Category?category_id=1043&locale=fr_FR", stockHeaders(e.creds, ""))
	m := mustJSON(t, body)
	if resp.StatusCode != 200 || m["name"] != "Voyages" || m["link"] != "/Category/travel/1043?load_type=category" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	for query, status := range map[string]int{"": 400, "category_id=12345678": 404} {
		if resp, body := e.get("/Rest/Media/1/Search/Category?"+query, stockHeaders(e.creds, "")); resp.StatusCode != status {
			t.Errorf("%q: %d %s, want %d", query, resp.StatusCode, body, status)
		}
	}
}

func TestFiles(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	a, b := e.srv.cat.assets[3], e.srv.cat.assets[9]
	ids := strconv.Itoa(a.ID) + ",12345," + strconv.Itoa(b.ID)
	many := "1"
	for i := 2; i <= 111; i++ {
		many += "," + strconv.Itoa(i)
	}
	cases := []struct {
		name   string
		query  string
		token  string
		status int
		code   string
		check  func(t *testing.T, m map[string]any)
	}{
		{"ids only by default, unknown left out", "ids=" + ids, "", 200, "", func(t *testing.T, m map[string]any) {
			files := m["files"].([]any)
			if len(files) != 2 || len(files[0].(map[string]any)) != 1 || files[0].(map[string]any)["id"] != float64(a.ID) {
				t.Fatalf("files %v", files)
			}
			if _, ok := m["nb_results"]; ok {
				t.Error("nb_results returned without being asked for")
			}
		}},
		{"columns", "ids=" + ids + "&" + q("result_columns[]", "nb_results", "result_columns[]", "title"), "", 200, "", func(t *testing.T, m map[string]any) {
			f := m["files"].([]any)[1].(map[string]any)
			if m["nb_results"] != float64(2) || f["title"] != b.Title {
				t.Fatalf("%v", m)
			}
		}},
		{"is_licensed with a token", "ids=" + ids + "&" + q("result_columns[]", "is_licensed"), tok, 200, "", nil},
		{"is_licensed without a token", "ids=" + ids + "&" + q("result_columns[]", "is_licensed"), "", 400, "601", nil},
		{"bad locale", "ids=" + ids + "&locale=xx", "", 400, "602", nil},
		{"bad column", "ids=" + ids + "&" + q("result_columns[]", "colour"), "", 400, "603", nil},
		{"unknown parameter", "ids=" + ids + "&limit=3", "", 400, "604", nil},
		{"invalid ids", "ids=a,100", "", 404, "605", nil},
		{"missing ids", "", "", 404, "605", nil},
		{"more than 110 ids", "ids=" + many, "", 400, "606", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get("/Rest/Media/1/Files?"+tc.query, stockHeaders(e.creds, tc.token))
			m := mustJSON(t, body)
			if resp.StatusCode != tc.status || (tc.code != "" && m["code"] != tc.code) {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
			if tc.code != "" && (m["error"] == "" || m["case"] == "") {
				t.Errorf("error shape %s", body)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

func TestStock_GzipForClientsThatAcceptIt(t *testing.T) {
	e := newEnv(t, Options{})
	search := searchPath + "?" + q("search_parameters[words]", "dog", "search_parameters[limit]", "5")
	answer := func(acceptEncoding string) (*http.Response, []byte) {
		h := stockHeaders(e.creds, "")
		// Set by hand, Go's client neither adds gzip nor decodes the body.
		h["Accept-Encoding"] = acceptEncoding
		return e.get(search, h)
	}
	resp, plain := answer("identity")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("identity: %d Content-Encoding %q Vary %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	mustJSON(t, plain)
	for ae, wantGzip := range map[string]bool{"gzip": true, "deflate, gzip;q=0.5": true, "x-gzip": true,
		"gzip;q=0": false, "br": false, "*": false} {
		resp, body := answer(ae)
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != wantGzip || resp.StatusCode != 200 {
			t.Errorf("Accept-Encoding %q: %d Content-Encoding %q, want gzip %v", ae, resp.StatusCode, resp.Header.Get("Content-Encoding"), wantGzip)
			continue
		}
		if wantGzip {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%q: %v", ae, err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatalf("%q: %v", ae, err)
			}
		}
		if !bytes.Equal(body, plain) {
			t.Errorf("Accept-Encoding %q: decoded answer differs from the identity one", ae)
		}
	}
	// Errors are compressed as well: the gateway does not tell them apart.
	resp, body := e.get(search, map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 403 || resp.Header.Get("Content-Encoding") != "gzip" || len(body) == 0 {
		t.Errorf("gateway error: %d Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
}
