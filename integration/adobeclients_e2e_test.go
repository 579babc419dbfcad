package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/integration/nodejs"
)

// Adobe's own AEM clients, changed only in their base URL, through the real
// imsproxy binary's aem route with no credentials of their own, against an
// emulator that speaks HTTPS (its CA is trusted by the proxy through
// CA_FILE and by Node through NODE_EXTRA_CA_CERTS).

// uploadMinPart is the emulator's minimum part size in these tests: small,
// so that a file of a few hundred KiB is uploaded in several parts.
const uploadMinPart = 64 << 10

// aemThroughProxy starts a TLS emulator and the proxy's aem route in front
// of it, configured with the service-credentials file as the emulator wrote
// it (over HTTPS its imsEndpoint, host:port, is right, so no IMS_URL).
func aemThroughProxy(t *testing.T) (a *adobe, p *proxyProcess, creds *fakeadobe.Credentials, caFile string) {
	t.Helper()
	a = startAdobe(t, fakeadobe.Options{TLS: true, UploadMinPartSize: uploadMinPart})
	creds = a.newCredentials(t, fakeadobe.CredentialOptions{Metascopes: []string{fakeadobe.MetascopeAEM}})
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.crt")
	writeAtomic(t, caFile, a.CACertificatePEM())
	file := filepath.Join(dir, "aem-service-credentials.json")
	writeAtomic(t, file, serviceCredentials(t, creds, a.URL))
	p = startProxy(t, map[string]string{
		"IMSPROXY_ROUTES":               "aem",
		"IMSPROXY_AEM_UPSTREAM":         a.URL,
		"IMSPROXY_AEM_CREDENTIALS_FILE": file,
		"IMSPROXY_AEM_CA_FILE":          caFile,
	})
	p.waitReady()
	return a, p, creds, caFile
}

// TestE2E_AEMUploadClientUploadsThroughTheProxy runs @adobe/aem-upload
// 2.0.3: it creates the target folder (Assets HTTP API, jcr:title) and
// uploads three files by direct binary upload, one of them larger than the
// minimum part size and so split in parts, which go straight to blob
// storage, never through the proxy and never with a token.
func TestE2E_AEMUploadClientUploadsThroughTheProxy(t *testing.T) {
	dir := nodejs.Dir(t)
	node := nodejs.Node(t, dir, "@adobe/aem-upload")
	a, p, _, caFile := aemThroughProxy(t)

	local := t.TempDir()
	big := make([]byte, 3*uploadMinPart+uploadMinPart/2) // 4 parts
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"hello.txt": []byte("hello, AEM\n"), "logo.png": []byte("\x89PNG\r\n\x1a\nnot really"), "big.bin": big}
	var paths []string
	for name, data := range files {
		paths = append(paths, filepath.Join(local, name))
		writeAtomic(t, paths[len(paths)-1], data)
	}
	a.ResetStats()

	var res struct {
		OK      bool   `json:"ok"`
		Message string `json:"message"`
		Result  struct {
			TotalFiles     int               `json:"totalFiles"`
			TotalCompleted int               `json:"totalCompleted"`
			Errors         []json.RawMessage `json:"errors"`
			Detailed       []struct {
				FileName string            `json:"fileName"`
				Errors   []json.RawMessage `json:"errors"`
			} `json:"detailedResult"`
		} `json:"result"`
	}
	nodejs.Run(t, node, filepath.Join(dir, "adobeclients", "aem-upload.js"),
		map[string]any{"url": p.URL("aem"), "folder": "/content/dam/projects/uploads-e2e", "files": paths},
		&res, "NODE_EXTRA_CA_CERTS="+caFile)
	if !res.OK || res.Result.TotalFiles != 3 || res.Result.TotalCompleted != 3 || len(res.Result.Errors) > 0 {
		t.Fatalf("aem-upload: %+v", res)
	}
	for _, f := range res.Result.Detailed {
		if len(f.Errors) > 0 {
			t.Errorf("%s: %s", f.FileName, f.Errors)
		}
	}

	// Visible through the Assets HTTP API, byte for byte, the folder
	// titled as aem-upload asked.
	status, _, body := httpGet(t, p.URL("aem")+"/api/assets/projects/uploads-e2e.json")
	var folder struct {
		Properties map[string]any   `json:"properties"`
		Entities   []map[string]any `json:"entities"`
	}
	if err := json.Unmarshal(body, &folder); err != nil || status != 200 || len(folder.Entities) != 3 {
		t.Fatalf("folder listing: %d %s", status, body)
	}
	if folder.Properties["dc:title"] != "uploads-e2e" {
		t.Errorf("folder title = %v, want the jcr:title aem-upload sent", folder.Properties["dc:title"])
	}
	for name, data := range files {
		status, h, got := httpGet(t, p.URL("aem")+"/content/dam/projects/uploads-e2e/"+name)
		if status != 200 || !bytes.Equal(got, data) {
			t.Errorf("%s: %d, %d bytes, want %d bytes as uploaded", name, status, len(got), len(data))
		}
		if name == "logo.png" && h.Get("Content-Type") != "image/png" {
			t.Errorf("logo.png served as %q", h.Get("Content-Type"))
		}
	}

	// What reached "Adobe": the parts at blob storage, with no token.
	parts, initiates, completes := 0, 0, 0
	for _, rec := range a.Requests(0) {
		switch rec.Endpoint {
		case "blob.put":
			parts++
			if rec.HasAuthorization || rec.Status != 201 {
				t.Errorf("blob storage got %+v", rec)
			}
		case "aem.upload":
			if strings.HasSuffix(rec.Path, ".initiateUpload.json") {
				initiates++
			} else {
				completes++
			}
			if rec.Token.State != fakeadobe.TokenValid || rec.Status >= 300 {
				t.Errorf("AEM got %+v", rec)
			}
		}
	}
	// 1+1+4 parts; the client initiates files in batches, completes each.
	if parts != 6 || initiates < 1 || initiates > 3 || completes != 3 {
		t.Errorf("blob storage got %d parts, AEM %d initiates and %d completes; want 6 parts and 3 completes", parts, initiates, completes)
	}
}

// TestE2E_AEMHeadlessClientThroughTheProxy runs
// @adobe/aem-headless-client-nodejs 2.0.1: getToken exchanges the service
// credentials over HTTPS with the emulator's IMS; the GraphQL calls go
// through the proxy: a query, persisted queries with variables by GET and
// by POST, the list, and a query persisted then run.
func TestE2E_AEMHeadlessClientThroughTheProxy(t *testing.T) {
	dir := nodejs.Dir(t)
	node := nodejs.Node(t, dir, "@adobe/aem-headless-client-nodejs")
	a, p, creds, caFile := aemThroughProxy(t)
	script := filepath.Join(dir, "adobeclients", "aem-headless.js")

	// getToken connects to https://<imsEndpoint> on port 443: "localhost",
	// which the script maps to the emulator's port.
	u, err := url.Parse(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	imsPort, _ := strconv.Atoi(u.Port())
	credsFile := filepath.Join(t.TempDir(), "service-credentials.json")
	writeAtomic(t, credsFile, serviceCredentials(t, creds, "https://localhost"))
	env := "NODE_EXTRA_CA_CERTS=" + caFile

	type step struct {
		Op   string `json:"op"`
		Args []any  `json:"args,omitempty"`
	}
	var res struct {
		OK      bool              `json:"ok"`
		Step    int               `json:"step"`
		Message string            `json:"message"`
		Results []json.RawMessage `json:"results"`
	}
	nodejs.Run(t, node, script, map[string]any{
		"serviceURL": p.URL("aem"), "credentialsFile": credsFile, "imsPort": imsPort,
		"steps": []step{
			{Op: "getToken"},
			{Op: "runQuery", Args: []any{`{ adventureList(sort: "price DESC", limit: 2) { items { title price } } }`}},
			{Op: "runPersistedQuery", Args: []any{"wknd-shared/adventures-by-activity", map[string]any{"activity": "skiing"}}},
			{Op: "runPersistedQuery", Args: []any{"wknd-shared/adventure-by-slug", map[string]any{"slug": "bali-surf-camp"}, map[string]any{"method": "POST"}}},
			{Op: "listPersistedQueries"},
			{Op: "persistQuery", Args: []any{`query($max: Float!) { adventureList(filter: {price: {_expressions: [{value: $max, _operator: LOWER_EQUAL}]}}, sort: "price") { items { title price } } }`, "wknd-shared/e2e-cheap"}},
			{Op: "runPersistedQuery", Args: []any{"wknd-shared/e2e-cheap", map[string]any{"max": 500}}},
		},
	}, &res, env)
	if !res.OK || len(res.Results) != 7 {
		t.Fatalf("aem-headless-client: %+v", res)
	}

	var tok struct {
		AccessToken string  `json:"accessToken"`
		Type        string  `json:"type"`
		Expires     float64 `json:"expires"`
	}
	if err := json.Unmarshal(res.Results[0], &tok); err != nil {
		t.Fatal(err)
	}
	info := a.LookupToken(tok.AccessToken)
	if info.State != fakeadobe.TokenValid || info.ClientID != creds.ClientID || info.Grant != "jwt_exchange" ||
		tok.Type != "bearer" || tok.Expires != 86399999 {
		t.Errorf("getToken gave %s %v (expires %v): %+v", tok.Type, tok.AccessToken != "", tok.Expires, info)
	}

	wants := []struct {
		step int
		want []string
	}{
		{1, []string{`"title":"Bali Surf Camp","price":5000`, `"title":"Ski Touring Mont Blanc","price":4700`}},
		{2, []string{`"title":"Downhill Skiing Wyoming"`, `"title":"Ski Touring Mont Blanc"`}},
		{3, []string{`"slug":"bali-surf-camp"`, `"mimeType":"image/jpeg"`, `"plaintext":"Surfing in Bali`}},
		{4, []string{`"configurationName":"wknd-shared"`, `"shortForm":"/wknd-shared/adventures-by-activity"`}},
		{5, []string{`"action":"create"`, `"shortPath":"/wknd-shared/e2e-cheap"`}},
		{6, []string{`"title":"Gastronomic Marais Tour","price":150`, `"title":"Beervana in Portland","price":300`}},
	}
	for _, w := range wants {
		for _, s := range w.want {
			if !strings.Contains(string(res.Results[w.step]), s) {
				t.Errorf("step %d answered %s, want %s", w.step, res.Results[w.step], s)
			}
		}
	}
	if strings.Contains(string(res.Results[6]), `"Bali Surf Camp"`) {
		t.Errorf("the persisted filter let a 5000 adventure through: %s", res.Results[6])
	}

	// An invalid query is the client's error, with AEM's validation message.
	nodejs.Run(t, node, script, map[string]any{"serviceURL": p.URL("aem"),
		"steps": []step{{Op: "runQuery", Args: []any{`{ adventureList { items { nope } } }`}}}}, &res, env)
	if res.OK || !strings.Contains(res.Message, "Field 'nope' in type 'AdventureModel' is undefined") {
		t.Errorf("an invalid query gave %+v", res)
	}
	if s := a.Stats(); s.Statuses["aem.graphql 200"] < 6 {
		t.Errorf("GraphQL requests at the emulator: %v", s.Statuses)
	}
	_ = os.Remove(credsFile)
}
