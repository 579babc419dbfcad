package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// The baseline must do what imsproxy does at the minimum — forward the
// path and query and add the two credentials — or the comparison is unfair.
func TestBareProxyForwardsWithCredentials(t *testing.T) {
	var got *http.Request
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		answer(stockLikeAnswer()).ServeHTTP(w, r)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	front := httptest.NewServer(bareProxy(target))
	defer front.Close()

	resp, err := http.Get(front.URL + "/Rest/Media/1/Files?ids=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got == nil || got.URL.RequestURI() != "/Rest/Media/1/Files?ids=1" ||
		got.Header.Get("Authorization") != "Bearer static-token" || got.Header.Get("X-Api-Key") != "client-id" {
		t.Fatalf("upstream saw %+v", got)
	}
	var v struct{ Files []json.RawMessage }
	if err := json.Unmarshal(body, &v); err != nil || len(v.Files) != 8 || len(body) < 600 {
		t.Fatalf("answer (%d bytes) is not the Stock-like JSON: %v", len(body), err)
	}
}
