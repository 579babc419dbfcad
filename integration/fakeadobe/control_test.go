package fakeadobe

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func (e *env) oauthForm() url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {e.creds.ClientID},
		"client_secret": {e.creds.ClientSecret}, "scope": {"openid"}}
}

func TestOutages(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	search := searchPath + "?" + q("search_parameters[words]", "dog")

	e.srv.SetIMSDown(true)
	if status, body := e.post("/ims/token/v3", e.oauthForm()); status != 503 || body["error"] != "temporarily_unavailable" {
		t.Fatalf("IMS down: %d %v", status, body)
	}
	if resp, _ := e.get(search, stockHeaders(e.creds, tok)); resp.StatusCode != 200 {
		t.Fatalf("IMS down must not take Stock down: %d", resp.StatusCode)
	}
	e.srv.SetIMSDown(false)
	if status, _ := e.post("/ims/token/v3", e.oauthForm()); status != 200 {
		t.Fatalf("IMS back: %d", status)
	}

	e.srv.SetStockDown(true)
	resp, body := e.get(search, stockHeaders(e.creds, tok))
	if resp.StatusCode != 503 || mustJSON(t, body)["error_code"] != "503000" {
		t.Fatalf("Stock down: %d %s", resp.StatusCode, body)
	}
	if status, _ := e.post("/ims/exchange/jwt", e.exchangeForm(e.creds, e.signJWT(e.creds, nil))); status != 200 {
		t.Fatalf("Stock down must not take IMS down: %d", status)
	}
	e.srv.SetStockDown(false)

	e.srv.SetAEMDown(true)
	if resp, _ := e.get("/api/assets.json", map[string]string{"Authorization": "Bearer " + tok}); resp.StatusCode != 503 {
		t.Fatalf("AEM down: %d", resp.StatusCode)
	}
	if got := e.srv.Stats().Injected; got != 3 {
		t.Errorf("Stats().Injected = %d, want 3", got)
	}
}

func TestFaults_ErrorEveryIsDeterministic(t *testing.T) {
	e := newEnv(t, Options{})
	e.srv.SetFaults(ServiceIMS, Faults{ErrorEvery: 3})
	var got []int
	for range 7 {
		status, _ := e.post("/ims/token/v3", e.oauthForm())
		got = append(got, status)
	}
	if fmt.Sprint(got) != "[200 200 500 200 200 500 200]" {
		t.Fatalf("statuses %v", got)
	}
}

func TestFaults_ErrorRateIsSeeded(t *testing.T) {
	pattern := func(seed uint64) string {
		e := newEnv(t, Options{Seed: seed, Faults: Faults{ErrorRate: 0.5}})
		var b strings.Builder
		for range 40 {
			resp, _ := e.get("/api/assets.json", nil)
			b.WriteString(map[bool]string{true: "x", false: "."}[resp.StatusCode == 503])
		}
		return b.String()
	}
	a, b, c := pattern(7), pattern(7), pattern(8)
	if a != b || a == c || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
		t.Fatalf("seed 7: %s / %s, seed 8: %s", a, b, c)
	}
}

func TestFaults_429HasRetryAfter(t *testing.T) {
	e := newEnv(t, Options{})
	e.srv.SetFaults(ServiceStock, Faults{ErrorRate: 1, ErrorStatus: 429})
	resp, body := e.get(searchPath+"?"+q("search_parameters[words]", "dog"), stockHeaders(e.creds, ""))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || mustJSON(t, body)["error_code"] != "429050" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
}

func TestFaults_Latency(t *testing.T) {
	e := newEnv(t, Options{})
	e.srv.SetLatency(80 * time.Millisecond)
	start := time.Now()
	if resp, _ := e.get("/api/assets.json", nil); resp.StatusCode != 401 {
		t.Fatalf("%d", resp.StatusCode)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("answered after %v, want at least 80ms", d)
	}
}

func TestRevocation(t *testing.T) {
	e := newEnv(t, Options{})
	other := e.newCreds(CredentialOptions{})
	a1, a2, b := e.token(e.creds), e.token(e.creds), e.token(other)
	if n := e.srv.RevokeClientTokens(e.creds.ClientID); n != 2 {
		t.Fatalf("RevokeClientTokens = %d, want 2", n)
	}
	states := func() string {
		return fmt.Sprintf("%s %s %s", e.srv.LookupToken(a1).State, e.srv.LookupToken(a2).State, e.srv.LookupToken(b).State)
	}
	if got := states(); got != "revoked revoked valid" {
		t.Fatalf("after RevokeClientTokens: %s", got)
	}
	if n := e.srv.RevokeTokens(); n != 1 {
		t.Fatalf("RevokeTokens = %d, want 1", n)
	}
	if e.srv.LookupToken(e.token(e.creds)).State != TokenValid {
		t.Fatal("a token issued after the revocation is not valid")
	}
}

// TestRequestRecord checks what a proxy test relies on: which headers
// arrived, which token, and whether it was still valid.
func TestRequestRecord(t *testing.T) {
	e := newEnv(t, Options{TokenLifetime: time.Minute})
	tok := e.token(e.creds)
	h := stockHeaders(e.creds, tok)
	h["X-Request-Id"] = "req-1"
	e.get(searchPath+"?"+q("search_parameters[words]", "dog"), h)
	e.clock.Advance(time.Minute)
	e.get(profilePath, stockHeaders(e.creds, tok))
	e.get("/Rest/Libraries/Download/1/1?token=caller-key", nil)
	e.get("/_fake/stats", nil)

	recs := e.srv.Requests(3)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	search, profile, dl := recs[0], recs[1], recs[2]
	id := e.srv.LookupToken(tok).ID
	if search.Endpoint != "stock.search_files" || search.Path != searchPath || search.Status != 200 ||
		!search.HasAuthorization || !search.HasAPIKey || !search.HasProduct || !search.HasRequestID ||
		search.APIKey != e.creds.ClientID || search.RequestID != "req-1" || search.TokenIn != "header" ||
		search.Token.State != TokenValid || search.Token.ID != id || search.CredentialSHA256 != CredentialHash(tok) {
		t.Errorf("search record %+v", search)
	}
	if profile.Token.State != TokenExpired || profile.Token.ID != id || profile.Status != 401 || profile.HasRequestID {
		t.Errorf("profile record %+v", profile)
	}
	if dl.Endpoint != "download.licensed" || dl.TokenIn != "query" || dl.Token.State != TokenInvalid ||
		dl.CredentialSHA256 != CredentialHash("caller-key") || dl.HasAuthorization {
		t.Errorf("download record %+v", dl)
	}
	st := e.srv.Stats()
	if st.Requests["stock.search_files"] != 1 || st.Statuses["stock.member_profile 401"] != 1 ||
		st.TokensPresented[TokenExpired] != 1 || st.Exchanges["success"] != 1 {
		t.Errorf("stats %+v", st)
	}
	e.srv.ResetStats()
	if len(e.srv.Requests(0)) != 0 || len(e.srv.Stats().Requests) != 0 {
		t.Error("ResetStats left something")
	}
}

func TestRequestRecord_KeepsTheLastN(t *testing.T) {
	e := newEnv(t, Options{RequestLogSize: 3})
	for i := range 5 {
		e.get(fmt.Sprintf("/api/assets/%d.json", i), nil)
	}
	recs := e.srv.Requests(0)
	if len(recs) != 3 || recs[0].Path != "/api/assets/2.json" || recs[2].Path != "/api/assets/4.json" || recs[2].Seq != 5 {
		t.Fatalf("%+v", recs)
	}
}

func TestFaults_HeaderAndPadding(t *testing.T) {
	e := newEnv(t, Options{})
	search := searchPath + "?" + q("search_parameters[words]", "dog", "search_parameters[limit]", "2")
	identity := stockHeaders(e.creds, "")
	identity["Accept-Encoding"] = "identity"
	_, plain := e.get(search, identity)

	e.srv.SetFaults(ServiceStock, Faults{PadTo: 5000,
		Header: map[string]string{"Cache-Control": "no-store", "Content-Type": "text/plain"}})
	resp, body := e.get(search, identity)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || len(body) != 5000 ||
		!bytes.Equal(bytes.TrimRight(body, " "), plain) {
		t.Fatalf("%d Cache-Control %q, %d bytes, want no-store and the answer padded to 5000", resp.StatusCode, resp.Header.Get("Cache-Control"), len(body))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q: the service's own header must win", ct)
	}
	// Through gzip: the padding is part of the compressed answer.
	if resp, body := e.get(search, stockHeaders(e.creds, "")); resp.StatusCode != 200 || len(body) != 5000 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("gzip client: %d, %d bytes decoded, Cache-Control %q", resp.StatusCode, len(body), resp.Header.Get("Cache-Control"))
	}
	// An answer already longer is left alone; other services are not touched.
	e.srv.SetFaults(ServiceStock, Faults{PadTo: 10})
	if _, body := e.get(search, identity); !bytes.Equal(body, plain) {
		t.Errorf("an answer longer than pad_to changed")
	}
	if resp, _ := e.get("/api/assets.json", nil); resp.Header.Get("Cache-Control") != "" {
		t.Errorf("AEM answer got Stock's header")
	}
}

// AnswerLatency delays the answer after the work: a license is sold even
// when the client gives up before its answer, as with Stock.
func TestFaults_AnswerLatencySellsBeforeAnswering(t *testing.T) {
	e := newEnv(t, Options{})
	tok := e.token(e.creds)
	a := e.findAsset(isPhoto)
	e.srv.SetFaults(ServiceStock, Faults{AnswerLatency: Duration(time.Hour)})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/Rest/Libraries/1/Content/License?content_id=%d&license=Standard", e.base, a.ID), nil)
	for k, v := range stockHeaders(e.creds, tok) {
		req.Header.Set(k, v)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d within the client's 100ms", resp.StatusCode)
	}
	// The request may reach the emulator after the client gave up on it.
	for deadline := time.Now().Add(10 * time.Second); e.srv.Stats().Licenses != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d licenses sold, want 1: the work is done before the answer is late", e.srv.Stats().Licenses)
		}
	}
	if ls := e.srv.Licenses(e.creds.OrgID); len(ls) != 1 || ls[0].AssetID != a.ID {
		t.Fatalf("licenses %+v", ls)
	}
}

// EchoTrace answers TRACE with the request as received, credentials and
// all, as Apache's TraceEnable On does.
func TestFaults_EchoTrace(t *testing.T) {
	e := newEnv(t, Options{})
	trace := func() (*http.Response, []byte) {
		return e.do(http.MethodTrace, "/api/assets.json", map[string]string{"Authorization": "Bearer secret-token-1"}, nil)
	}
	if resp, body := trace(); bytes.Contains(body, []byte("secret-token-1")) {
		t.Fatalf("TRACE echoed without the fault: %d %s", resp.StatusCode, body)
	}
	e.srv.SetFaults(ServiceAEM, Faults{EchoTrace: true})
	resp, body := trace()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "message/http" ||
		!bytes.HasPrefix(body, []byte("TRACE /api/assets.json HTTP/1.1\r\n")) || !bytes.Contains(body, []byte("Authorization: Bearer secret-token-1\r\n")) {
		t.Fatalf("%d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
