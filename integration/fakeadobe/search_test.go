package fakeadobe

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// searchFiles runs a search and returns its files.
func (e *env) searchFiles(token string, pairs ...string) (map[string]any, []map[string]any) {
	e.t.Helper()
	resp, body := e.get(searchPath+"?"+q(pairs...), stockHeaders(e.creds, token))
	if resp.StatusCode != 200 {
		e.t.Fatalf("search %v: %d %s", pairs, resp.StatusCode, body)
	}
	m := mustJSON(e.t, body)
	var files []map[string]any
	for _, f := range m["files"].([]any) {
		files = append(files, f.(map[string]any))
	}
	return m, files
}

func TestSearchFiles_DefaultAnswer(t *testing.T) {
	e := newEnv(t, Options{})
	m, files := e.searchFiles("", "search_parameters[filters][premium]", "all")
	if len(files) != 32 || m["nb_results"] != float64(2000) {
		t.Fatalf("%d files of %v, want the default limit 32 of 2000", len(files), m["nb_results"])
	}
	for _, col := range defaultColumns[1:] {
		if _, ok := files[0][col]; !ok {
			t.Errorf("default column %s missing", col)
		}
	}
	if _, ok := files[0]["is_licensed"]; ok {
		t.Error("is_licensed in an anonymous answer")
	}
	if u := files[0]["thumbnail_url"].(string); !strings.HasPrefix(u, e.base+"/jpg/") {
		t.Errorf("thumbnail_url %s", u)
	}
}

func TestSearchFiles_ParameterErrors(t *testing.T) {
	e := newEnv(t, Options{})
	cases := map[string][]string{
		"no search_parameters": {"locale", "en_US"},
		"limit 0":              {"search_parameters[limit]", "0"},
		"limit 101":            {"search_parameters[limit]", "101"},
		"limit not a number":   {"search_parameters[limit]", "ten"},
		"negative offset":      {"search_parameters[offset]", "-1"},
		"unknown order":        {"search_parameters[order]", "random"},
		"bad orientation":      {"search_parameters[filters][orientation]", "diagonal"},
		"bad premium":          {"search_parameters[filters][premium]", "yes"},
		"bad content type":     {"search_parameters[filters][content_type:audio]", "1"},
		"bad media_id":         {"search_parameters[media_id]", "abc"},
		"unknown column":       {"search_parameters[words]", "dog", "result_columns[]", "colour"},
		"bad thumbnail size":   {"search_parameters[thumbnail_size]", "300"},
	}
	for name, pairs := range cases {
		t.Run(name, func(t *testing.T) {
			resp, body := e.get(searchPath+"?"+q(pairs...), stockHeaders(e.creds, ""))
			m := mustJSON(t, body)
			if resp.StatusCode != 400 || m["code"] != "020" || m["error"] == "" {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

// TestSearchFiles_Deterministic: the same query gives the same bytes, on the
// same emulator and on another one built with the same seed.
func TestSearchFiles_Deterministic(t *testing.T) {
	opts := Options{CatalogueSeed: 42, CDNBaseURL: "https://t.ftcdn.test", DownloadBaseURL: "https://stock.test"}
	a, b := newEnv(t, opts), newEnv(t, opts)
	opts.CatalogueSeed = 43
	c := newEnv(t, opts)
	query := searchPath + "?" + q("search_parameters[words]", "happy", "search_parameters[limit]", "50",
		"locale", "de_DE", "result_columns[]", "id", "result_columns[]", "title", "result_columns[]", "category",
		"result_columns[]", "keywords", "result_columns[]", "comp_url", "result_columns[]", "nb_results")
	get := func(e *env) []byte {
		// Each emulator has its own client; the answer must not depend on it.
		h := stockHeaders(e.creds, "")
		_, body := e.get(query, h)
		return body
	}
	first := get(a)
	if !bytes.Equal(first, get(a)) {
		t.Fatal("two identical queries gave different bytes")
	}
	if !bytes.Equal(first, get(b)) {
		t.Fatal("two emulators with the same seed gave different bytes")
	}
	if bytes.Equal(first, get(c)) {
		t.Fatal("another seed gave the same catalogue")
	}
}

func TestSearchFiles_Pagination(t *testing.T) {
	e := newEnv(t, Options{})
	ids := func(files []map[string]any) []float64 {
		var out []float64
		for _, f := range files {
			out = append(out, f["id"].(float64))
		}
		return out
	}
	_, all := e.searchFiles("", "search_parameters[words]", "photo", "search_parameters[limit]", "20")
	_, p1 := e.searchFiles("", "search_parameters[words]", "photo", "search_parameters[limit]", "10")
	_, p2 := e.searchFiles("", "search_parameters[words]", "photo", "search_parameters[limit]", "10", "search_parameters[offset]", "10")
	if got := append(ids(p1), ids(p2)...); !slices.Equal(got, ids(all)) {
		t.Fatalf("pages %v != %v", got, ids(all))
	}
	m, beyond := e.searchFiles("", "search_parameters[words]", "photo", "search_parameters[offset]", "100000")
	if len(beyond) != 0 || m["nb_results"].(float64) == 0 {
		t.Fatalf("offset past the end: %d files, nb_results %v", len(beyond), m["nb_results"])
	}
}

func TestSearchFiles_Filters(t *testing.T) {
	e := newEnv(t, Options{})
	ref := e.srv.cat.assets[100]
	cols := []string{"result_columns[]", "id", "result_columns[]", "media_type_id", "result_columns[]", "width",
		"result_columns[]", "height", "result_columns[]", "premium_level_id", "result_columns[]", "is_editorial",
		"result_columns[]", "category_hierarchy", "result_columns[]", "creator_id", "result_columns[]", "keywords",
		"search_parameters[limit]", "100"}
	num := func(f map[string]any, k string) int { return int(f[k].(float64)) }
	cases := []struct {
		name  string
		pairs []string
		each  func(f map[string]any) bool
		count int // exact count when > 0
	}{
		{"videos", []string{"search_parameters[filters][content_type:video]", "1"},
			func(f map[string]any) bool { return num(f, "media_type_id") == mediaVideo }, 0},
		{"photos or vectors", []string{"search_parameters[filters][content_type:photo]", "1", "search_parameters[filters][content_type:vector]", "1"},
			func(f map[string]any) bool { return num(f, "media_type_id") == 1 || num(f, "media_type_id") == 3 }, 0},
		{"vertical", []string{"search_parameters[filters][orientation]", "vertical"},
			func(f map[string]any) bool { return num(f, "height") > num(f, "width") }, 0},
		{"no premium", []string{"search_parameters[filters][premium]", "false"},
			func(f map[string]any) bool { return num(f, "premium_level_id") <= 1 }, 0},
		{"premium only", []string{"search_parameters[filters][premium]", "true"},
			func(f map[string]any) bool { return num(f, "premium_level_id") >= 2 }, 0},
		{"editorial only", []string{"search_parameters[filters][editorial]", "true"},
			func(f map[string]any) bool { return f["is_editorial"] == true }, 0},
		{"no editorial", []string{"search_parameters[filters][editorial]", "false"},
			func(f map[string]any) bool { return f["is_editorial"] == false }, 0},
		{"media_id", []string{"search_parameters[media_id]", strconv.Itoa(ref.ID)},
			func(f map[string]any) bool { return num(f, "id") == ref.ID }, 1},
		{"words as a media ID", []string{"search_parameters[words]", strconv.Itoa(ref.ID)},
			func(f map[string]any) bool { return num(f, "id") == ref.ID }, 1},
		{"creator", []string{"search_parameters[creator_id]", strconv.Itoa(ref.CreatorID)},
			func(f map[string]any) bool { return num(f, "creator_id") == ref.CreatorID }, 0},
		{"top-level category", []string{"search_parameters[category]", "289"},
			func(f map[string]any) bool {
				return f["category_hierarchy"].([]any)[0].(map[string]any)["id"] == float64(289)
			}, 0},
		{"similar", []string{"search_parameters[similar]", strconv.Itoa(ref.ID)},
			func(f map[string]any) bool {
				h := f["category_hierarchy"].([]any)
				return num(f, "id") != ref.ID && h[len(h)-1].(map[string]any)["id"] == float64(ref.Category.ID)
			}, 0},
		{"words", []string{"search_parameters[words]", "Dogs"},
			func(f map[string]any) bool {
				for _, k := range f["keywords"].([]any) {
					if singular(k.(map[string]any)["name"].(string)) == "dog" {
						return true
					}
				}
				return false
			}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, files := e.searchFiles("", append(tc.pairs, cols...)...)
			if len(files) == 0 || (tc.count > 0 && len(files) != tc.count) {
				t.Fatalf("%d files", len(files))
			}
			for _, f := range files {
				if !tc.each(f) {
					t.Fatalf("file does not match the filter: %v", f)
				}
			}
		})
	}
}

func TestSearchFiles_ResultColumns(t *testing.T) {
	e := newEnv(t, Options{})
	m, files := e.searchFiles("", "search_parameters[words]", "cat", "result_columns[]", "id", "result_columns[]", "title")
	if _, ok := m["nb_results"]; ok {
		t.Error("nb_results returned without being asked for")
	}
	for _, f := range files {
		if len(f) != 2 || f["id"] == nil || f["title"] == nil {
			t.Fatalf("columns %v, want id and title only", f)
		}
	}
}

// TestSearchFiles_IsLicensedPerOrganisation: a license shows in the
// licensing organisation's searches only, and only with a token.
func TestSearchFiles_IsLicensedPerOrganisation(t *testing.T) {
	e := newEnv(t, Options{})
	otherOrg := e.newCreds(CredentialOptions{})
	a := e.findAsset(isPhoto)
	tok := e.token(e.creds)
	license(t, e, tok, a.ID, "Standard", "")
	byID := []string{"search_parameters[media_id]", strconv.Itoa(a.ID)}

	_, files := e.searchFiles(tok, byID...)
	if files[0]["is_licensed"] != "Standard" {
		t.Errorf("licensing org, default columns: is_licensed %v, want Standard", files[0]["is_licensed"])
	}
	_, files = e.searchFiles("", byID...)
	if _, ok := files[0]["is_licensed"]; ok {
		t.Errorf("anonymous: is_licensed %v present", files[0]["is_licensed"])
	}
	_, files = e.searchFiles("", append(byID, "result_columns[]", "is_licensed")...)
	if files[0]["is_licensed"] != "" {
		t.Errorf("anonymous, asked for: is_licensed %v, want \"\"", files[0]["is_licensed"])
	}
	resp, body := e.get(searchPath+"?"+q(byID...), stockHeaders(otherOrg, e.token(otherOrg)))
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"is_licensed":""`) {
		t.Errorf("other organisation: %d %s", resp.StatusCode, body)
	}
}

func TestSearchFiles_SimilarImageUpload(t *testing.T) {
	e := newEnv(t, Options{})
	post := func(image string, withParam bool) (int, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if withParam {
			_ = mw.WriteField("search_parameters[similar_image]", "1")
		}
		fw, _ := mw.CreateFormFile("similar_image", "dog.jpg")
		_, _ = fw.Write([]byte(image))
		_ = mw.Close()
		h := stockHeaders(e.creds, "")
		h["Content-Type"] = mw.FormDataContentType()
		resp, body := e.do(http.MethodPost, searchPath+"?"+q("search_parameters[limit]", "5"), h, &buf)
		return resp.StatusCode, body
	}
	s1, b1 := post("jpeg bytes", true)
	_, b2 := post("jpeg bytes", true)
	_, b3 := post("other bytes", true)
	if s1 != 200 || !bytes.Equal(b1, b2) || bytes.Equal(b1, b3) {
		t.Fatalf("upload search: %d; same image same answer %v; other image other answer %v", s1, bytes.Equal(b1, b2), !bytes.Equal(b1, b3))
	}
	if s, body := post("jpeg bytes", false); s != 400 {
		t.Fatalf("without search_parameters[similar_image]=1: %d %s", s, body)
	}
	resp, body := e.do(http.MethodPost, searchPath+"?"+q("search_parameters[words]", "dog"), stockHeaders(e.creds, ""), nil)
	if resp.StatusCode != 400 {
		t.Fatalf("POST without an upload: %d %s", resp.StatusCode, body)
	}
}
