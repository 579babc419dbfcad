package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// sirenEntity is the part of an Assets HTTP API answer a HATEOAS client
// walks: its links and those of its child entities.
type sirenEntity struct {
	Class      []string       `json:"class"`
	Properties map[string]any `json:"properties"`
	Links      []struct {
		Rel  []string `json:"rel"`
		Href string   `json:"href"`
	} `json:"links"`
	Entities []sirenEntity `json:"entities"`
}

func (e sirenEntity) link(t *testing.T, rel string) string {
	t.Helper()
	for _, l := range e.Links {
		for _, r := range l.Rel {
			if r == rel {
				return l.Href
			}
		}
	}
	t.Fatalf("no %q link in %+v", rel, e.Links)
	return ""
}

// aemWalk is a client that knows only the proxy's address and follows
// what the answers say, as a HATEOAS client or a legacy app does.
type aemWalk struct {
	t        *testing.T
	proxy    string // the aem route's origin
	emulator string // AEM's origin, which no answer may name
	followed []string
}

// do sends a request to url, which must be the proxy's, and checks that
// nothing in the answer names the emulator.
func (w *aemWalk) do(method, url string, body []byte, headers ...string) (int, http.Header, []byte) {
	w.t.Helper()
	if !strings.HasPrefix(url, w.proxy+"/") {
		w.t.Fatalf("a link leads to %s, not through the proxy %s", url, w.proxy)
	}
	w.followed = append(w.followed, method+" "+strings.TrimPrefix(url, w.proxy))
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	status, h, got := httpDo(w.t, method, url, rd, headers...)
	for _, origin := range []string{w.emulator, strings.ReplaceAll(w.emulator, "/", `\/`)} {
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, origin) {
					w.t.Errorf("%s %s: header %s: %q names AEM's origin", method, url, k, v)
				}
			}
		}
		if bytes.Contains(got, []byte(origin)) {
			w.t.Errorf("%s %s: the answer names AEM's origin:\n%s", method, url, got)
		}
	}
	return status, h, got
}

func (w *aemWalk) entity(url string) sirenEntity {
	w.t.Helper()
	status, h, body := w.do(http.MethodGet, url, nil)
	if status != http.StatusOK {
		w.t.Fatalf("GET %s: %d %s", url, status, body)
	}
	var e sirenEntity
	if err := json.Unmarshal(body, &e); err != nil {
		w.t.Fatalf("GET %s: %s is not Siren JSON: %v\n%s", url, h.Get("Content-Type"), err, body)
	}
	return e
}

// A client that knows only the proxy's address lists a folder, follows
// the links of the answers to an asset, its binary and its rendition,
// creates a folder and follows the 201's Location: every link it is given
// leads through the proxy, which AEM saw as the only caller.
func TestE2E_AEMLinksLeadThroughTheProxy(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Metascopes: []string{"ent_aem_cloud_api"}})
	p := startProxy(t, aemUpstreamEnv(a, map[string]string{"IMSPROXY_AEM_CREDENTIALS_FILE": a.credentialsFile(t, creds)}))
	p.waitReady()
	var last int64 // the emulator's last record before the walk
	if recs := a.Requests(1); len(recs) > 0 {
		last = recs[0].Seq
	}
	w := &aemWalk{t: t, proxy: p.URL("aem"), emulator: a.URL}

	folder := w.entity(w.proxy + "/api/assets/wknd/en/adventures.json")
	if len(folder.Entities) == 0 {
		t.Fatalf("the folder lists no assets: %+v", folder)
	}
	asset := w.entity(folder.Entities[0].link(t, "self"))
	if name, _ := asset.Properties["name"].(string); name != "beach-surfing.jpg" {
		t.Fatalf("followed the first child to %q, want beach-surfing.jpg", name)
	}
	for rel, wantType := range map[string]string{"content": "image/jpeg", "thumbnail": "image/png"} {
		status, h, body := w.do(http.MethodGet, asset.link(t, rel), nil)
		if status != http.StatusOK || h.Get("Content-Type") != wantType || len(body) == 0 {
			t.Fatalf("the asset's %s link: %d %s, %d bytes", rel, status, h.Get("Content-Type"), len(body))
		}
	}
	if parent := w.entity(asset.link(t, "parent")); parent.link(t, "self") != folder.link(t, "self") {
		t.Fatalf("the asset's parent is %s, want the folder %s", parent.link(t, "self"), folder.link(t, "self"))
	}

	status, h, body := w.do(http.MethodPost, w.proxy+"/api/assets/wknd/en/e2e-links",
		[]byte(`{"class":"assetFolder","properties":{"title":"Links end to end"}}`), "Content-Type", "application/json")
	if status != http.StatusCreated {
		t.Fatalf("create a folder: %d %s", status, body)
	}
	created := w.entity(h.Get("Location"))
	if title, _ := created.Properties["dc:title"].(string); title != "Links end to end" {
		t.Fatalf("the Location leads to %+v, want the new folder", created.Properties)
	}

	// AEM saw exactly the requests the client made, each with the proxy's
	// token (the client sends none): no link took it around the proxy.
	var seen []string
	for _, rec := range a.Requests(0) {
		if rec.Seq <= last || rec.Service != fakeadobe.ServiceAEM {
			continue
		}
		seen = append(seen, rec.Method+" "+rec.Path)
		if rec.Token.State != fakeadobe.TokenValid || rec.Status >= 400 {
			t.Errorf("AEM got %s %s with a %s token and answered %d", rec.Method, rec.Path, rec.Token.State, rec.Status)
		}
	}
	if strings.Join(seen, "\n") != strings.Join(w.followed, "\n") {
		t.Fatalf("AEM saw:\n%s\nthe client sent to the proxy:\n%s", strings.Join(seen, "\n"), strings.Join(w.followed, "\n"))
	}
}
