package fakeadobe

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestDownload_RedirectsToASignedFile(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	a := e.findAsset(func(a *asset) bool { return isPhoto(a) && a.ContentType == "image/jpeg" })
	dl := license(t, e, tok, a.ID, "Standard", "")["url"].(string)
	path := strings.TrimPrefix(dl, e.base)

	resp, body := e.get(path+"?token="+url.QueryEscape(tok)+"&size=800", nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("download: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, e.base+fmt.Sprintf("/files/%d?", a.ID)) || strings.Contains(loc, tok) {
		t.Fatalf("Location %s: want a signed file URL without the token", loc)
	}
	file, img := e.get(strings.TrimPrefix(loc, e.base), nil)
	if file.StatusCode != 200 || file.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("file: %d %s", file.StatusCode, file.Header)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(img))
	if err != nil || max(cfg.Width, cfg.Height) != 800 {
		t.Fatalf("file is not an 800 px JPEG: %v %+v", err, cfg)
	}
	_, again := e.get(strings.TrimPrefix(loc, e.base), nil)
	if !bytes.Equal(img, again) {
		t.Error("the same file gave different bytes")
	}

	tampered := strings.Replace(loc, "size=800", "size=400", 1)
	if resp, _ := e.get(strings.TrimPrefix(tampered, e.base), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("tampered signed URL: %d, want 403", resp.StatusCode)
	}
	e.clock.Advance(signedURLLifetime + time.Second)
	if resp, _ := e.get(strings.TrimPrefix(loc, e.base), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("expired signed URL: %d, want 403", resp.StatusCode)
	}
}

func TestDownload_Errors(t *testing.T) {
	e := newEnv(t, Options{TokenLifetime: time.Hour})
	otherOrg := e.newCreds(CredentialOptions{})
	tok, expired := e.token(e.creds), e.token(e.creds)
	revoked := e.token(e.creds)
	e.srv.RevokeToken(revoked)
	photo := e.findAsset(isPhoto)
	vector := e.findAsset(func(a *asset) bool { return a.MediaType == mediaVector })
	license(t, e, tok, photo.ID, "Standard", "")
	license(t, e, tok, vector.ID, "Standard", "")
	e.clock.Advance(30 * time.Minute)
	tok = e.token(e.creds) // valid for an hour from now; expired ends in 30 minutes
	otherTok := e.token(otherOrg)
	e.clock.Advance(31 * time.Minute)

	p := fmt.Sprintf("/Rest/Libraries/Download/%d/1", photo.ID)
	cases := []struct {
		name    string
		path    string
		headers map[string]string
		status  int
		msg     string
	}{
		{"Authorization header present", p + "?token=" + tok, map[string]string{"Authorization": "Bearer " + tok}, 400, "Authorization header"},
		{"Authorization header only", p, map[string]string{"Authorization": "Bearer " + tok}, 400, "Authorization header"},
		{"no token", p, nil, 401, "token"},
		{"expired token", p + "?token=" + expired, nil, 401, msgExpired},
		{"revoked token", p + "?token=" + revoked, nil, 401, msgNotFound},
		{"caller's key as token", p + "?token=caller-key", nil, 401, msgNotFound},
		{"another organisation", p + "?token=" + otherTok, nil, 404, msgNotFound},
		{"license number never issued", fmt.Sprintf("/Rest/Libraries/Download/%d/2?token=%s", photo.ID, tok), nil, 404, msgNotFound},
		{"not licensed", fmt.Sprintf("/Rest/Libraries/Download/%d/1?token=%s", e.srv.cat.assets[1].ID, tok), nil, 404, msgNotFound},
		{"invalid image size", p + "?token=" + tok + "&size=1000", nil, 400, msgInvalidSize},
		{"size of a vector", fmt.Sprintf("/Rest/Libraries/Download/%d/1?token=%s&size=800", vector.ID, tok), nil, 400, msgInvalidSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get(tc.path, tc.headers)
			m := mustJSON(t, body)
			if resp.StatusCode != tc.status || !strings.Contains(m["error"].(string), tc.msg) {
				t.Fatalf("%d %s, want %d %q", resp.StatusCode, body, tc.status, tc.msg)
			}
		})
	}
	if resp, _ := e.get(p+"?token="+tok, nil); resp.StatusCode != http.StatusFound {
		t.Fatalf("the valid case: %d", resp.StatusCode)
	}
}

func TestDownload_Watermarked(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.findAsset(isPhoto)
	_, files := e.searchFiles("", "search_parameters[media_id]", fmt.Sprint(a.ID), "result_columns[]", "comp_url")
	comp := strings.TrimPrefix(files[0]["comp_url"].(string), e.base)
	resp, _ := e.get(comp+"?token="+url.QueryEscape(e.token(e.creds)), nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("comp without a license: %d", resp.StatusCode)
	}
	file, body := e.get(strings.TrimPrefix(resp.Header.Get("Location"), e.base), nil)
	if file.StatusCode != 200 || !strings.Contains(file.Header.Get("Content-Disposition"), "_Preview") || len(body) == 0 {
		t.Fatalf("comp file: %d %v", file.StatusCode, file.Header)
	}
	if resp, _ := e.get(comp, map[string]string{"Authorization": "Bearer x"}); resp.StatusCode != 400 {
		t.Fatalf("comp with an Authorization header: %d", resp.StatusCode)
	}
}

// TestDownload_SeparateHost gives the download host its own listener: the
// license answer points there, and the API listener's paths are not on it.
func TestDownload_SeparateHost(t *testing.T) {
	e := newEnv(t, Options{})
	dlBase, err := e.srv.StartDownload("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Close() })
	tok := e.token(e.creds)
	a := e.findAsset(isPhoto)
	dl := license(t, e, tok, a.ID, "Standard", "")["url"].(string)
	if !strings.HasPrefix(dl, dlBase+"/Rest/Libraries/Download/") {
		t.Fatalf("url %s not on %s", dl, dlBase)
	}
	resp, err := noRedirect.Get(dl + "?token=" + url.QueryEscape(tok))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), dlBase+"/files/") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = http.Get(dlBase + profilePath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("API path on the download host: %d", resp.StatusCode)
	}
}

func TestThumbnails(t *testing.T) {
	e := newEnv(t, Options{})
	_, files := e.searchFiles("", "search_parameters[words]", "dog", "search_parameters[thumbnail_size]", "160")
	u := files[0]["thumbnail_url"].(string)
	resp, body := e.get(strings.TrimPrefix(u, e.base), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(body))
	if err != nil || cfg.Width != int(files[0]["thumbnail_width"].(float64)) {
		t.Fatalf("thumbnail %+v %v, want width %v", cfg, err, files[0]["thumbnail_width"])
	}
	if resp, _ := e.get(strings.Replace(strings.TrimPrefix(u, e.base), "160_F", "110_F", 1)+"x", nil); resp.StatusCode != 404 {
		t.Fatalf("made-up thumbnail: %d", resp.StatusCode)
	}
}
