package fakeadobe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// control calls the control API and decodes its JSON answer into out.
func (e *env) control(method, path, body string, out any) int {
	e.t.Helper()
	resp, b := e.do(method, path, map[string]string{"Content-Type": "application/json"}, strings.NewReader(body))
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func TestControlAPI_Faults(t *testing.T) {
	e := newEnv(t, Options{})
	var faults map[Service]Faults
	if st := e.control("POST", "/_fake/faults/ims", `{"down":true,"latency":"5ms"}`, &faults); st != 200 || !faults[ServiceIMS].Down {
		t.Fatalf("%d %+v", st, faults)
	}
	if status, _ := e.post("/ims/token/v3", e.oauthForm()); status != 503 {
		t.Fatalf("IMS down over HTTP: %d", status)
	}
	e.control("POST", "/_fake/faults/ims", `{"latency":0}`, &faults)
	if f := faults[ServiceIMS]; !f.Down || f.Latency != 0 {
		t.Fatalf("a partial update must keep the other fields: %+v", f)
	}
	e.control("POST", "/_fake/faults/all", `{"down":false,"error_every":2}`, &faults)
	if len(faults) != len(Services) || faults[ServiceAEM].ErrorEvery != 2 || faults[ServiceIMS].Down {
		t.Fatalf("all: %+v", faults)
	}
	e.control("GET", "/_fake/faults", "", &faults)
	if faults[ServiceStock].ErrorEvery != 2 {
		t.Fatalf("GET faults: %+v", faults)
	}
	e.control("POST", "/_fake/faults/stock", `{"header":{"Cache-Control":"no-store"},"pad_to":2048}`, &faults)
	e.control("POST", "/_fake/faults/stock", `{"header":{"ETag":"\"v1\""}}`, &faults)
	if f := faults[ServiceStock]; len(f.Header) != 2 || f.Header["Cache-Control"] != "no-store" || f.Header["ETag"] != `"v1"` || f.PadTo != 2048 {
		t.Fatalf("header and pad_to must merge: %+v", f)
	}
	resp, _ := e.get("/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=dog", stockHeaders(e.creds, ""))
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("ETag") != `"v1"` {
		t.Fatalf("search answer headers %v", resp.Header)
	}
	e.control("POST", "/_fake/faults/stock", `{"header":null,"pad_to":0}`, &faults)
	e.control("GET", "/_fake/faults", "", &faults)
	if f := faults[ServiceStock]; f.Header != nil || f.PadTo != 0 || faults[ServiceIMS].Header != nil {
		t.Fatalf("header:null must clear, other services untouched: %+v", faults)
	}
	if st := e.control("POST", "/_fake/faults/nothing", `{}`, nil); st != 404 {
		t.Fatalf("unknown service: %d", st)
	}
	if st := e.control("POST", "/_fake/faults/ims", `{"latency":"soon"}`, nil); st != 400 {
		t.Fatalf("bad latency: %d", st)
	}
}

func TestControlAPI_TokensAndClients(t *testing.T) {
	e := newEnv(t, Options{})
	var lt map[string]string
	if e.control("POST", "/_fake/token-lifetime", `{"lifetime":"3s"}`, &lt); lt["lifetime"] != "3s" {
		t.Fatalf("lifetime %v", lt)
	}
	status, body := e.post("/ims/token/v3", e.oauthForm())
	if status != 200 || body["expires_in"] != float64(2) {
		t.Fatalf("after lifetime 3s: %d %v", status, body)
	}
	tok := body["access_token"].(string)
	var info TokenInfo
	e.control("POST", "/_fake/tokens/inspect", fmt.Sprintf(`{"token":%q}`, tok), &info)
	if info.State != TokenValid || info.ClientID != e.creds.ClientID || info.ExpiresAt.Sub(info.IssuedAt) != 3*time.Second {
		t.Fatalf("inspect %+v", info)
	}
	var revoked map[string]int
	e.control("POST", "/_fake/revoke", fmt.Sprintf(`{"client_id":%q}`, e.creds.ClientID), &revoked)
	if revoked["revoked"] != 1 || e.srv.LookupToken(tok).State != TokenRevoked {
		t.Fatalf("revoke client: %v", revoked)
	}
	tok2 := e.token(e.creds)
	e.control("POST", "/_fake/revoke", fmt.Sprintf(`{"token":%q}`, tok2), &revoked)
	e.control("POST", "/_fake/revoke", `{}`, nil)
	if revoked["revoked"] != 1 || e.srv.LookupToken(tok2).State != TokenRevoked {
		t.Fatalf("revoke token: %v", revoked)
	}

	// Register a client over HTTP, with its certificate as PEM, then rotate.
	c, err := GenerateCredentials(CredentialOptions{Key: testKey(t, 1), Now: e.clock.Now, ClientID: "http-client"})
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := json.Marshal(map[string]any{"client_id": c.ClientID, "client_secret": c.ClientSecret, "org": c.OrgID,
		"technical_account": c.TechnicalAccountID, "metascopes": c.Metascopes, "certificates": []string{string(c.CertificatePEM())}})
	var view clientView
	if st := e.control("POST", "/_fake/clients", string(reg), &view); st != 201 || view.Certificates[0] != Fingerprint(c.Certificate) || view.Secret != "" {
		t.Fatalf("register: %d %+v", st, view)
	}
	if status, body := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, nil))); status != 200 {
		t.Fatalf("exchange for the HTTP-registered client: %d %v", status, body)
	}
	var added map[string]string
	if st := e.control("POST", "/_fake/clients/http-client/certificates", string(e.creds.CertificatePEM()), &added); st != 201 {
		t.Fatalf("add certificate: %d", st)
	}
	if st := e.control("DELETE", "/_fake/clients/http-client/certificates/"+Fingerprint(c.Certificate), "", nil); st != 204 {
		t.Fatalf("revoke certificate: %d", st)
	}
	if status, _ := e.post("/ims/exchange/jwt", e.exchangeForm(c, e.signJWT(c, nil))); status != 400 {
		t.Fatalf("revoked certificate still works: %d", status)
	}
	var clients []clientView
	e.control("GET", "/_fake/clients", "", &clients)
	if len(clients) != 2 {
		t.Fatalf("clients %+v", clients)
	}
	for _, cl := range clients {
		if cl.Secret != "" {
			t.Errorf("GET /_fake/clients shows a secret")
		}
	}
	if st := e.control("POST", "/_fake/clients", `{"client_id":"x","org":"bad"}`, nil); st != 400 {
		t.Fatalf("invalid client: %d", st)
	}
}

func TestControlAPI_StatsQuotaLicenses(t *testing.T) {
	e := newEnv(t, Options{})
	var index map[string][]string
	if e.control("GET", "/_fake/", "", &index); len(index["endpoints"]) == 0 {
		t.Fatal("no endpoint index")
	}
	org := e.creds.OrgID
	var quota map[string]int
	if e.control("POST", "/_fake/quota/"+org, `{"quota":5}`, &quota); quota["quota"] != 5 {
		t.Fatalf("quota %v", quota)
	}
	tok := e.token(e.creds)
	license(t, e, tok, e.findAsset(isPhoto).ID, "Standard", "")
	if e.control("GET", "/_fake/quota/"+org, "", &quota); quota["quota"] != 4 {
		t.Fatalf("quota after a license %v", quota)
	}
	var ls []License
	if e.control("GET", "/_fake/licenses/"+org, "", &ls); len(ls) != 1 {
		t.Fatalf("licenses %+v", ls)
	}
	var st Stats
	e.control("GET", "/_fake/stats", "", &st)
	if st.Licenses != 1 || st.Requests["stock.content_license"] != 1 || st.Exchanges["success"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	var recs []RequestRecord
	e.control("GET", "/_fake/requests?n=1", "", &recs)
	if len(recs) != 1 || recs[0].Endpoint != "stock.content_license" {
		t.Fatalf("requests %+v (control calls must not be recorded)", recs)
	}
	if s := e.control("POST", "/_fake/stats/reset", "", nil); s != http.StatusNoContent || len(e.srv.Requests(0)) != 0 {
		t.Fatalf("reset: %d", s)
	}
	if s := e.control("POST", "/_fake/quota/nobody@AdobeOrg", `{"quota":1}`, nil); s != 404 {
		t.Fatalf("unknown org: %d", s)
	}
}

func TestControlAPI_CanBeDisabled(t *testing.T) {
	e := newEnv(t, Options{DisableControl: true})
	if resp, _ := e.get("/_fake/stats", nil); resp.StatusCode != 404 {
		t.Fatalf("%d", resp.StatusCode)
	}
}
