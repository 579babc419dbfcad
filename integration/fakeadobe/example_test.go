package fakeadobe_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// An end-to-end test starts the emulator, registers credentials, lets the
// system under test call it, then asserts on what arrived.
func Example() {
	srv := fakeadobe.New(fakeadobe.Options{TokenLifetime: 3 * time.Second, CatalogueSize: 100})
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	creds, err := srv.NewCredentials(fakeadobe.CredentialOptions{Scopes: []string{"openid"}})
	if err != nil {
		panic(err)
	}

	// Here the proxy would fetch a token; this is what it sends.
	resp, err := http.PostForm(base+"/ims/token/v3", url.Values{"grant_type": {"client_credentials"},
		"client_id": {creds.ClientID}, "client_secret": {creds.ClientSecret}, "scope": {"openid"}})
	if err != nil {
		panic(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	fmt.Println("token:", resp.StatusCode, "expires_in", tok.ExpiresIn)

	// ...and a Stock call with it.
	req, _ := http.NewRequest("GET", base+"/Rest/Libraries/1/Member/Profile", nil)
	req.Header.Set("X-Api-Key", creds.ClientID)
	req.Header.Set("X-Product", "example/1.0")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	for _, rec := range srv.Requests(0) {
		fmt.Println(rec.Endpoint, rec.Status, "token", rec.Token.State, "x-api-key", rec.HasAPIKey)
	}
	// Output:
	// token: 200 expires_in 2
	// ims.token_v3 200 token none x-api-key false
	// stock.member_profile 200 token valid x-api-key true
}

// A sandbox writes the generated credentials where imsproxy can read them.
func ExampleCredentials_WriteFiles() {
	srv := fakeadobe.New(fakeadobe.Options{CatalogueSize: 100})
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	creds, err := srv.NewCredentials(fakeadobe.CredentialOptions{Name: "sandbox"})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "sandbox")
	defer os.RemoveAll(dir)
	files, err := creds.WriteFiles(dir, fakeadobe.Endpoints{IMS: base, Stock: base})
	if err != nil {
		panic(err)
	}
	fmt.Println(filepath.Base(files.ServiceCredentials), filepath.Base(files.Env))
	// Output: aem-service-credentials.json imsproxy.env
}
