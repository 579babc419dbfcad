package fakeadobe

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"net/http"
	"strings"
	"testing"
)

func TestAEM_RequiresBearer(t *testing.T) {
	e := newEnv(t, Options{})
	revoked := e.token(e.creds)
	e.srv.RevokeToken(revoked)
	for _, path := range []string{"/api/assets.json", "/api/assets/wknd.json", "/content/dam/projects/logo.png"} {
		for name, h := range map[string]map[string]string{
			"no token":          nil,
			"api key only":      {"X-Api-Key": e.creds.ClientID},
			"revoked token":     {"Authorization": "Bearer " + revoked},
			"caller's own key":  {"Authorization": "Bearer caller-key"},
			"basic credentials": {"Authorization": "Basic YWRtaW46YWRtaW4="},
		} {
			if resp, _ := e.get(path, h); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: %d, want 401", path, name, resp.StatusCode)
			}
		}
	}
}

func TestAEM_Listings(t *testing.T) {
	e := newEnv(t, Options{})
	h := map[string]string{"Authorization": "Bearer " + e.token(e.creds)}

	resp, body := e.get("/api/assets.json", h)
	root := mustJSON(t, body)
	if resp.StatusCode != 200 || root["class"].([]any)[0] != "assets/folder" {
		t.Fatalf("root: %d %s", resp.StatusCode, body)
	}
	var names []string
	for _, ent := range root["entities"].([]any) {
		names = append(names, ent.(map[string]any)["properties"].(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "projects,we-retail,wknd" {
		t.Fatalf("root folders %v", names)
	}

	_, body = e.get("/api/assets/wknd/en/adventures.json?limit=2", h)
	folder := mustJSON(t, body)
	paging := folder["properties"].(map[string]any)["srn:paging"].(map[string]any)
	ents := folder["entities"].([]any)
	if paging["total"] != float64(3) || len(ents) != 2 {
		t.Fatalf("paging %v, %d entities", paging, len(ents))
	}
	asset := ents[0].(map[string]any)
	if asset["class"].([]any)[0] != "assets/asset" || !hasLink(asset, "self", e.base+"/api/assets/wknd/en/adventures/beach-surfing.jpg.json") ||
		!hasLink(folder, "parent", e.base+"/api/assets/wknd/en.json") {
		t.Fatalf("links: %s", body)
	}

	_, body = e.get("/api/assets/wknd/en/adventures/beach-surfing.jpg.json", h)
	meta := mustJSON(t, body)["properties"].(map[string]any)["metadata"].(map[string]any)
	if meta["dc:format"] != "image/jpeg" || meta["dc:title"] != "Beach Surfing" {
		t.Fatalf("asset metadata %v", meta)
	}
	resp, img := e.get("/content/dam/wknd/en/adventures/beach-surfing.jpg", h)
	if _, err := jpeg.DecodeConfig(bytes.NewReader(img)); resp.StatusCode != 200 || err != nil {
		t.Fatalf("binary: %d %v", resp.StatusCode, err)
	}
	for _, missing := range []string{"/api/assets/nothing.json", "/api/assets/wknd", "/content/dam/nothing.jpg",
		"/nothing", "/api/nothing", "/api.json", "/libs/x"} {
		if resp, _ := e.get(missing, h); resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s, want a JSON 404", missing, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

func hasLink(entity map[string]any, rel, href string) bool {
	for _, l := range entity["links"].([]any) {
		m := l.(map[string]any)
		if m["rel"].([]any)[0] == rel && m["href"] == href {
			return true
		}
	}
	return false
}

func TestAEM_WritesAndCustomMethods(t *testing.T) {
	e := newEnv(t, Options{})
	auth := "Bearer " + e.token(e.creds)
	h := func(kv ...string) map[string]string {
		m := map[string]string{"Authorization": auth}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	steps := []struct {
		name, method, path string
		headers            map[string]string
		body               string
		status             int
	}{
		{"create folder", "POST", "/api/assets/projects/archive", h("Content-Type", "application/json"), `{"class":"assetFolder","properties":{"title":"Archive"}}`, 201},
		{"folder exists", "POST", "/api/assets/projects/archive", h(), `{"class":"assetFolder","properties":{"title":"Archive"}}`, 409},
		{"parent missing", "POST", "/api/assets/nowhere/x", h(), `{"class":"assetFolder","properties":{}}`, 412},
		{"copy", "COPY", "/api/assets/projects/logo.png", h("X-Destination", "/api/assets/projects/archive/logo.png", "X-Depth", "infinity"), "", 201},
		{"copy onto existing without overwrite", "COPY", "/api/assets/projects/logo.png", h("X-Destination", "/api/assets/projects/archive/logo.png"), "", 412},
		{"copy without destination", "COPY", "/api/assets/projects/logo.png", h(), "", 412},
		{"move", "MOVE", "/api/assets/projects/brochure-2026.pdf", h("X-Destination", e.base+"/api/assets/projects/archive/brochure.pdf", "X-Overwrite", "F"), "", 201},
		{"moved source is gone", "GET", "/api/assets/projects/brochure-2026.pdf.json", h(), "", 404},
		{"moved destination exists", "GET", "/api/assets/projects/archive/brochure.pdf.json", h(), "", 200},
		{"update metadata", "PUT", "/api/assets/projects/logo.png", h(), `{"class":"asset","properties":{"dc:title":"Logo 2026"}}`, 200},
		{"delete", "DELETE", "/api/assets/projects/archive/logo.png", h(), "", 200},
		{"deleted", "GET", "/content/dam/projects/archive/logo.png", h(), "", 404},
		{"unknown method", "PATCH", "/api/assets/projects/logo.png", h(), "", 405},
	}
	for _, s := range steps {
		resp, body := e.do(s.method, s.path, s.headers, strings.NewReader(s.body))
		if resp.StatusCode != s.status {
			t.Fatalf("%s: %d %s, want %d", s.name, resp.StatusCode, body, s.status)
		}
	}
	_, body := e.get("/api/assets/projects/logo.png.json", h())
	if !strings.Contains(string(body), `"dc:title":"Logo 2026"`) {
		t.Fatalf("metadata update lost: %s", body)
	}
}

// Every answer of the emulator's AEM is JSON, as AEM's Sling answers are:
// a client of a .json API reads the body of any answer.
func TestAEM_BinaryPathsAnswerJSONErrors(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/content/dam/nope.jpg", http.StatusNotFound},
		{"GET", "/content/dam/wknd/nope.jpg/_jcr_content/renditions/other.png", http.StatusNotFound},
		{"DELETE", "/content/dam/wknd", http.StatusMethodNotAllowed},
	} {
		resp, body := e.do(tc.method, tc.path, map[string]string{"Authorization": "Bearer " + tok}, nil)
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !json.Valid(body) {
			t.Errorf("%s %s: %d %s %q, want %d and JSON", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status)
		}
	}
}
