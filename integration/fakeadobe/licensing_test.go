package fakeadobe

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// findAsset returns the first catalogue asset that satisfies ok.
func (e *env) findAsset(ok func(*asset) bool) *asset {
	e.t.Helper()
	for _, a := range e.srv.cat.assets {
		if ok(a) {
			return a
		}
	}
	e.t.Fatal("no such asset in the catalogue")
	return nil
}

func isPhoto(a *asset) bool { return a.MediaType == mediaPhoto && !a.Editorial }

// license licenses an asset with GET Content/License and returns the
// purchase details.
func license(t *testing.T, e *env, tok string, id int, lic, extra string) map[string]any {
	t.Helper()
	path := fmt.Sprintf("/Rest/Libraries/1/Content/License?content_id=%d&license=%s%s", id, lic, extra)
	resp, body := e.get(path, stockHeaders(e.creds, tok))
	if resp.StatusCode != 200 {
		t.Fatalf("license: %d %s", resp.StatusCode, body)
	}
	m := mustJSON(t, body)
	return m["contents"].(map[string]any)[strconv.Itoa(id)].(map[string]any)["purchase_details"].(map[string]any)
}

func TestContentLicense_QuotaAndLicenseAgain(t *testing.T) {
	e := newEnv(t, Options{})
	e.srv.SetQuota(e.creds.OrgID, 2)
	tok := e.token(e.creds)
	a := e.findAsset(isPhoto)
	steps := []struct {
		name, extra string
		state       string
		quota       int
		url         string
	}{
		{"first license", "", "just_purchased", 1, "/1"},
		{"again, not charged", "", "purchased", 1, "/1"},
		{"license_again charges", "&license_again=true", "just_purchased", 0, "/2"},
		{"no quota left, but already licensed", "", "purchased", 0, "/2"},
		{"license_again without quota", "&license_again=true", "not_possible", 0, ""},
	}
	for _, s := range steps {
		d := license(t, e, tok, a.ID, "Standard", s.extra)
		if d["state"] != s.state || e.srv.Quota(e.creds.OrgID) != s.quota {
			t.Fatalf("%s: state %v quota %d, want %s %d", s.name, d["state"], e.srv.Quota(e.creds.OrgID), s.state, s.quota)
		}
		wantURL := ""
		if s.url != "" {
			wantURL = fmt.Sprintf("%s/Rest/Libraries/Download/%d%s", e.base, a.ID, s.url)
		}
		if got, _ := d["url"].(string); got != wantURL {
			t.Fatalf("%s: url %q, want %q", s.name, got, wantURL)
		}
	}
	if n := e.srv.Stats().Licenses; n != 2 {
		t.Errorf("Stats().Licenses = %d, want 2", n)
	}
	if ls := e.srv.Licenses(e.creds.OrgID); len(ls) != 2 || ls[1].N != 2 || ls[0].ClientID != e.creds.ClientID {
		t.Errorf("Licenses %+v", ls)
	}
}

func TestContentLicense_Errors(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	video := e.findAsset(func(a *asset) bool { return a.MediaType == mediaVideo })
	photo := e.findAsset(isPhoto)
	cases := []struct {
		name, query string
		status      int
		code, msg   string
	}{
		{"license of another content type", fmt.Sprintf("content_id=%d&license=Standard", video.ID), 400, "020",
			fmt.Sprintf("The license \"Standard\" does not match type of content #%d", video.ID)},
		{"Video_4K for an image", fmt.Sprintf("content_id=%d&license=Video_4K", photo.ID), 400, "020", "does not match"},
		{"missing license", fmt.Sprintf("content_id=%d", photo.ID), 400, "020", "license"},
		{"missing content_id", "license=Standard", 400, "020", "content_id"},
		{"unknown content", "content_id=99&license=Standard", 404, "100", "#99"},
		{"bad license_again", fmt.Sprintf("content_id=%d&license=Standard&license_again=maybe", photo.ID), 400, "020", "license_again"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get("/Rest/Libraries/1/Content/License?"+tc.query, stockHeaders(e.creds, tok))
			m := mustJSON(t, body)
			if resp.StatusCode != tc.status || m["code"] != tc.code || !strings.Contains(m["error"].(string), tc.msg) {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
	if q := e.srv.Quota(e.creds.OrgID); q != DefaultQuota {
		t.Errorf("refused licenses spent quota: %d left", q)
	}
}

func TestContentLicense_POSTWithReferences(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	a := e.findAsset(isPhoto)
	path := fmt.Sprintf("/Rest/Libraries/1/Content/License?content_id=%d&license=Standard", a.ID)
	h := stockHeaders(e.creds, tok)
	h["Content-Type"] = "application/json"
	resp, body := e.do(http.MethodPost, path, h, strings.NewReader(`{"cce_agency":[{"id":"2","value":"Project Banana"}]}`))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if ls := e.srv.Licenses(e.creds.OrgID); len(ls) != 1 || ls[0].References[0].Value != "Project Banana" {
		t.Fatalf("references not recorded: %+v", ls)
	}
	resp, body = e.do(http.MethodPost, path, h, strings.NewReader(`{"cce_agency":`))
	if resp.StatusCode != 400 || mustJSON(t, body)["code"] != "020" {
		t.Fatalf("bad body: %d %s", resp.StatusCode, body)
	}
}

func TestContentInfo(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	a := e.findAsset(isPhoto)
	info := func() map[string]any {
		resp, body := e.get(fmt.Sprintf("/Rest/Libraries/1/Content/Info?content_id=%d", a.ID), stockHeaders(e.creds, tok))
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		return mustJSON(t, body)["contents"].(map[string]any)[strconv.Itoa(a.ID)].(map[string]any)
	}
	before := info()
	if d := before["purchase_details"].(map[string]any); d["state"] != "not_purchased" || d["member_id"] == nil || before["size"] != "Comp" {
		t.Fatalf("before: %v", before)
	}
	license(t, e, tok, a.ID, "Extended", "")
	after := info()
	if d := after["purchase_details"].(map[string]any); d["state"] != "purchased" || d["license"] != "Extended" || d["date"] == nil {
		t.Fatalf("after: %v", after)
	}
}

func TestMemberProfile(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	_, body := e.get(profilePath, stockHeaders(e.creds, tok))
	m := mustJSON(t, body)
	po := m["purchase_options"].(map[string]any)
	if po["state"] != "possible" || po["message"] != "This will use 1 of your 100 licenses." || m["member"] == nil {
		t.Fatalf("%s", body)
	}
	e.srv.SetQuota(e.creds.OrgID, 0)
	_, body = e.get(profilePath, stockHeaders(e.creds, tok))
	m = mustJSON(t, body)
	if po := m["purchase_options"].(map[string]any); po["state"] != "not_possible" || po["requires_checkout"] != true || po["url"] == nil {
		t.Fatalf("no quota: %s", body)
	}
	video := e.findAsset(func(a *asset) bool { return a.MediaType == mediaVideo })
	resp, _ := e.get(fmt.Sprintf("%s?content_id=%d&license=Standard", profilePath, video.ID), stockHeaders(e.creds, tok))
	if resp.StatusCode != 400 {
		t.Fatalf("mismatched license: %d", resp.StatusCode)
	}
}

// TestLicenseHistory: the caller's own licenses, or the organisation's with
// all=true, newest first, with download URLs on the download host.
func TestLicenseHistory(t *testing.T) {
	e := newEnv(t, Options{DownloadBaseURL: "http://127.0.0.1:1/dl"})
	colleague, err := GenerateCredentials(CredentialOptions{Key: testKey(t, 1), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	colleague.OrgID = e.creds.OrgID // another technical account of the same organisation
	if err := e.srv.RegisterClient(colleague.Client()); err != nil {
		t.Fatal(err)
	}
	tok, colTok := e.token(e.creds), e.token(colleague)
	photos := []*asset{}
	for _, a := range e.srv.cat.assets {
		if isPhoto(a) && len(photos) < 3 {
			photos = append(photos, a)
		}
	}
	license(t, e, tok, photos[0].ID, "Standard", "")
	license(t, e, tok, photos[1].ID, "Standard", "")
	e.clock.Advance(time.Minute)
	resp, body := e.get(fmt.Sprintf("/Rest/Libraries/1/Content/License?content_id=%d&license=Standard", photos[2].ID), stockHeaders(colleague, colTok))
	if resp.StatusCode != 200 {
		t.Fatalf("colleague license: %d %s", resp.StatusCode, body)
	}
	history := func(query string) map[string]any {
		resp, body := e.get("/Rest/Libraries/1/Member/LicenseHistory?"+query, stockHeaders(e.creds, tok))
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		return mustJSON(t, body)
	}
	own := history("")
	if own["nb_results"] != float64(2) {
		t.Fatalf("own history: %v", own)
	}
	first := own["files"].([]any)[0].(map[string]any)
	if first["id"] != float64(photos[1].ID) || first["license"] != "Standard" || first["license_date"] == "" ||
		first["download_url"] != fmt.Sprintf("http://127.0.0.1:1/dl/Rest/Libraries/Download/%d/1", photos[1].ID) {
		t.Fatalf("newest first, with its download URL: %v", first)
	}
	if all := history("all=true"); all["nb_results"] != float64(3) {
		t.Fatalf("all=true: %v", all)
	}
	page := history(q("all", "true", "search_parameters[limit]", "1", "search_parameters[offset]", "2"))
	if files := page["files"].([]any); len(files) != 1 || files[0].(map[string]any)["id"] != float64(photos[0].ID) {
		t.Fatalf("page: %v", page)
	}
	if resp, _ := e.get("/Rest/Libraries/1/Member/LicenseHistory?"+q("search_parameters[limit]", "500"), stockHeaders(e.creds, tok)); resp.StatusCode != 400 {
		t.Fatalf("limit 500: %d", resp.StatusCode)
	}
}

func TestAbandon(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	a := e.srv.cat.assets[0]
	resp, body := e.get(fmt.Sprintf("/Rest/Libraries/1/Member/Abandon?content_id=%d&state=not_purchased", a.ID), stockHeaders(e.creds, tok))
	if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if resp, _ := e.get("/Rest/Libraries/1/Member/Abandon", stockHeaders(e.creds, tok)); resp.StatusCode != 400 {
		t.Fatalf("no content_id: %d", resp.StatusCode)
	}
}

func TestContentInfo_Errors(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	video := e.findAsset(func(a *asset) bool { return a.MediaType == mediaVideo })
	for query, want := range map[string]struct {
		status int
		code   string
	}{
		"":               {400, "020"},
		"content_id=abc": {400, "020"},
		"content_id=99":  {404, "100"},
		fmt.Sprintf("content_id=%d&license=Extended", video.ID): {400, "020"},
	} {
		resp, body := e.get("/Rest/Libraries/1/Content/Info?"+query, stockHeaders(e.creds, tok))
		if resp.StatusCode != want.status || mustJSON(t, body)["code"] != want.code {
			t.Errorf("%q: %d %s, want %d %s", query, resp.StatusCode, body, want.status, want.code)
		}
	}
}
