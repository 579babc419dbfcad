package fakeadobe

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// uploadEnv is an emulator whose blob storage has its own listener, with a
// small minimum part size.
func uploadEnv(t *testing.T) (*env, map[string]string) {
	t.Helper()
	e := newEnv(t, Options{UploadMinPartSize: 100, UploadMaxPartSize: 1000})
	if _, err := e.srv.StartBlob("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Close() })
	return e, map[string]string{"Authorization": "Bearer " + e.token(e.creds),
		"Content-Type": "application/x-www-form-urlencoded"}
}

func (e *env) initiate(h map[string]string, folder string, files ...string) (int, initiateAnswer) {
	e.t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(files); i += 2 {
		form.Add("fileName", files[i])
		form.Add("fileSize", files[i+1])
	}
	resp, body := e.do("POST", folder+".initiateUpload.json", h, strings.NewReader(form.Encode()))
	var a initiateAnswer
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(body, &a); err != nil {
			e.t.Fatal(err)
		}
	}
	return resp.StatusCode, a
}

// put sends one part to blob storage, as a direct binary upload client
// does: no Authorization, the signature in the URI.
func put(t *testing.T, uri string, data []byte, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, uri, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func (e *env) complete(h map[string]string, uri string, fields ...string) (int, string) {
	e.t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(fields); i += 2 {
		form.Add(fields[i], fields[i+1])
	}
	resp, body := e.do("POST", uri, h, strings.NewReader(form.Encode()))
	return resp.StatusCode, string(body)
}

func TestDirectBinaryUpload_InitiatePutComplete(t *testing.T) {
	e, h := uploadEnv(t)
	status, a := e.initiate(h, "/content/dam/projects", "notes.txt", "250", "empty.pdf", "0")
	if status != http.StatusCreated || len(a.Files) != 2 || a.CompleteURI != "/content/dam/projects.completeUpload.json" ||
		a.FolderPath != "/content/dam/projects" {
		t.Fatalf("initiate: %d %+v", status, a)
	}
	notes := a.Files[0]
	if len(notes.UploadURIs) != 3 || notes.MinPartSize != 100 || notes.MaxPartSize != 1000 || notes.MimeType != "text/plain" ||
		!strings.HasPrefix(notes.UploadURIs[0], e.srv.BlobBaseURL()+"/blob/") || strings.HasPrefix(notes.UploadURIs[0], e.base) {
		t.Fatalf("notes.txt: %+v, want 3 URIs on blob storage's origin", notes)
	}
	data := bytes.Repeat([]byte("0123456789"), 25)
	for i, part := range [][]byte{data[:100], data[100:200], data[200:]} {
		if status, body := put(t, notes.UploadURIs[i], part); status != http.StatusCreated {
			t.Fatalf("part %d: %d %s", i+1, status, body)
		}
	}
	if status, body := put(t, a.Files[1].UploadURIs[0], nil); status != http.StatusCreated {
		t.Fatalf("empty file: %d %s", status, body)
	}
	status, body := e.complete(h, a.CompleteURI,
		"fileName", "notes.txt", "mimeType", "text/plain", "uploadToken", notes.UploadToken,
		"fileName", "empty.pdf", "mimeType", "application/pdf", "uploadToken", a.Files[1].UploadToken)
	if status != http.StatusOK {
		t.Fatalf("complete: %d %s", status, body)
	}
	resp, got := e.get("/content/dam/projects/notes.txt", h)
	if resp.StatusCode != 200 || !bytes.Equal(got, data) || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("the uploaded binary: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	_, listing := e.get("/api/assets/projects.json", h)
	if !strings.Contains(string(listing), `"name":"notes.txt"`) || !strings.Contains(string(listing), `"dam:size":250`) {
		t.Errorf("listing lacks the upload: %s", listing)
	}
	if status, _ := e.complete(h, a.CompleteURI, "fileName", "notes.txt", "mimeType", "text/plain", "uploadToken", notes.UploadToken); status != http.StatusBadRequest {
		t.Errorf("a second complete with the same token: %d, want 400", status)
	}
}

func TestDirectBinaryUpload_Refusals(t *testing.T) {
	e, h := uploadEnv(t)
	_, a := e.initiate(h, "/content/dam/projects", "a.bin", "150")
	f := a.Files[0]
	tampered := strings.Replace(f.UploadURIs[0], "sig=", "sig=0", 1)
	unauthenticated := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	cases := []struct {
		name   string
		do     func() (int, string)
		status int
		want   string
	}{
		{"initiate without a token", func() (int, string) {
			s, _ := e.initiate(unauthenticated, "/content/dam/projects", "x", "1")
			return s, ""
		}, 401, ""},
		{"initiate in a missing folder", func() (int, string) { s, _ := e.initiate(h, "/content/dam/nowhere", "x", "1"); return s, "" }, 404, ""},
		{"initiate without fileSize", func() (int, string) { s, _ := e.initiate(h, "/content/dam/projects", "x"); return s, "" }, 400, ""},
		{"initiate a name with a slash", func() (int, string) { s, _ := e.initiate(h, "/content/dam/projects", "a/b", "1"); return s, "" }, 400, ""},
		{"GET initiate", func() (int, string) {
			resp, body := e.get("/content/dam/projects.initiateUpload.json", h)
			return resp.StatusCode, string(body)
		}, 405, ""},
		{"part with an Authorization header", func() (int, string) {
			return put(t, f.UploadURIs[0], make([]byte, 100), "Authorization", h["Authorization"])
		}, 403, "<Code>AuthenticationFailed</Code>"},
		{"part with a tampered signature", func() (int, string) { return put(t, tampered, make([]byte, 100)) }, 403, "Signature did not match"},
		{"part larger than maxPartSize", func() (int, string) { return put(t, f.UploadURIs[0], make([]byte, 1001)) }, 413, "RequestBodyTooLarge"},
		{"POST to blob storage", func() (int, string) {
			resp, err := http.Post(f.UploadURIs[0], "application/octet-stream", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode, ""
		}, 405, ""},
		{"blob path on AEM's own origin", func() (int, string) {
			return put(t, strings.Replace(f.UploadURIs[0], e.srv.BlobBaseURL(), e.base, 1), make([]byte, 100))
		}, 404, ""},
		{"complete with a part missing", func() (int, string) {
			put(t, f.UploadURIs[0], make([]byte, 100))
			return e.complete(h, a.CompleteURI, "fileName", "a.bin", "mimeType", "application/octet-stream", "uploadToken", f.UploadToken)
		}, 400, "part 2 of 2 was not uploaded"},
		{"complete with a short first part", func() (int, string) {
			put(t, f.UploadURIs[0], make([]byte, 50))
			put(t, f.UploadURIs[1], make([]byte, 100))
			return e.complete(h, a.CompleteURI, "fileName", "a.bin", "mimeType", "application/octet-stream", "uploadToken", f.UploadToken)
		}, 400, "part 1 has 50 bytes"},
		{"complete in another folder", func() (int, string) {
			return e.complete(h, "/content/dam.completeUpload.json", "fileName", "a.bin", "mimeType", "application/octet-stream", "uploadToken", f.UploadToken)
		}, 400, "was issued for /content/dam/projects/a.bin"},
		{"complete with an unknown token", func() (int, string) {
			return e.complete(h, a.CompleteURI, "fileName", "a.bin", "mimeType", "application/octet-stream", "uploadToken", "nope")
		}, 400, "Unknown or expired uploadToken"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tc.do()
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want %d %q", status, body, tc.status, tc.want)
			}
		})
	}
	t.Run("signed URIs expire with the upload", func(t *testing.T) {
		e.clock.Advance(uploadLifetime + time.Minute)
		if status, body := put(t, f.UploadURIs[1], make([]byte, 100)); status != 403 || !strings.Contains(body, "expiry") {
			t.Fatalf("%d %s, want 403 after expiry", status, body)
		}
	})
	for _, rec := range e.srv.Requests(0) {
		if rec.Service == ServiceBlob && rec.Endpoint != "blob.put" {
			t.Errorf("blob request recorded as %q", rec.Endpoint)
		}
	}
}

// TestAssetsAPI_FolderCreation covers the request forms of "Create a
// folder": Siren JSON with title or jcr:title (what @adobe/aem-upload
// sends), form fields with POST .../*, query parameters; and an empty
// folder lists no entities as [].
func TestAssetsAPI_FolderCreation(t *testing.T) {
	e := newEnv(t, Options{})
	auth := "Bearer " + e.token(e.creds)
	tests := []struct {
		name, path, contentType, body string
		folder, title                 string
	}{
		{"Siren JSON, title", "/api/assets/projects/a", "application/json", `{"class":"assetFolder","properties":{"title":"A"}}`, "projects/a", "A"},
		{"Siren JSON, jcr:title", "/api/assets/projects/b", "application/json", `{"class":"assetFolder","properties":{"jcr:title":"B"}}`, "projects/b", "B"},
		{"form fields with *", "/api/assets/projects/*", "application/x-www-form-urlencoded", "name=c&title=C", "projects/c", "C"},
		{"form field jcr:title", "/api/assets/projects/d", "application/x-www-form-urlencoded", "jcr%3Atitle=D", "projects/d", "D"},
		{"query parameters", "/api/assets/projects/e?jcr:title=E", "", "", "projects/e", "E"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do("POST", tt.path, map[string]string{"Authorization": auth, "Content-Type": tt.contentType}, strings.NewReader(tt.body))
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			_, body = e.get("/api/assets/"+tt.folder+".json", map[string]string{"Authorization": auth})
			var f struct {
				Properties map[string]any `json:"properties"`
				Entities   []any          `json:"entities"`
			}
			if err := json.Unmarshal(body, &f); err != nil || f.Properties["dc:title"] != tt.title || f.Entities == nil || len(f.Entities) != 0 {
				t.Fatalf("folder %s, want title %q and entities []", body, tt.title)
			}
		})
	}
	resp, _ := e.do("POST", "/api/assets/projects/f", map[string]string{"Authorization": auth, "Content-Type": "application/json"}, strings.NewReader(`{"class":"asset"}`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a Siren body of another class: %d, want 400", resp.StatusCode)
	}
}

// A file named as a folder is refused: AEM keeps one node of a name, and
// replacing the folder would orphan what it holds.
func TestDirectBinaryUpload_AFileCannotReplaceAFolder(t *testing.T) {
	e, h := uploadEnv(t)
	_, a := e.initiate(h, "/content/dam", "projects", "5")
	f := a.Files[0]
	if status, body := put(t, f.UploadURIs[0], []byte("12345")); status != http.StatusCreated {
		t.Fatalf("part: %d %s", status, body)
	}
	for _, replace := range []string{"false", "true"} {
		status, body := e.complete(h, a.CompleteURI, "fileName", "projects", "mimeType", "text/plain", "uploadToken", f.UploadToken, "replace", replace)
		if status != http.StatusConflict {
			t.Errorf("replace=%s: %d %s, want 409", replace, status, body)
		}
	}
	if resp, listing := e.get("/api/assets/projects.json", h); resp.StatusCode != 200 || !strings.Contains(string(listing), `"name":"logo.png"`) {
		t.Errorf("the folder lost its assets: %d %s", resp.StatusCode, listing)
	}
}
