package fakeadobe

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServiceCredentialsJSON_WorksLikeTheConsoleDownload reads the written
// AEM credentials file the way a client does (aemcs-api-client-lib) and
// exchanges a JWT built from it alone.
func TestServiceCredentialsJSON_WorksLikeTheConsoleDownload(t *testing.T) {
	e := newEnv(t, Options{})
	dir := t.TempDir()
	files, err := e.creds.WriteFiles(dir, Endpoints{IMS: e.base, Stock: e.base})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(files.ServiceCredentials)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OK          bool `json:"ok"`
		StatusCode  int  `json:"statusCode"`
		Integration struct {
			IMSEndpoint      string `json:"imsEndpoint"`
			Metascopes       string `json:"metascopes"`
			TechnicalAccount struct {
				ClientID     string `json:"clientId"`
				ClientSecret string `json:"clientSecret"`
			} `json:"technicalAccount"`
			Email      string `json:"email"`
			ID         string `json:"id"`
			Org        string `json:"org"`
			PrivateKey string `json:"privateKey"`
			PublicKey  string `json:"publicKey"`
			Expiry     string `json:"certificateExpirationDate"`
		} `json:"integration"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	in := doc.Integration
	if !doc.OK || doc.StatusCode != 200 || "http://"+in.IMSEndpoint != e.base || strings.Contains(in.IMSEndpoint, "://") {
		t.Fatalf("imsEndpoint %q: want the bare host of %s", in.IMSEndpoint, e.base)
	}
	if !strings.HasPrefix(in.PrivateKey, "-----BEGIN RSA PRIVATE KEY-----\r\n") || !strings.HasSuffix(in.PublicKey, "-----END CERTIFICATE-----\r\n") {
		t.Fatalf("keys must be PKCS#1 / certificate PEM with \\r\\n: %q", in.PrivateKey[:40])
	}
	if !strings.HasSuffix(in.Email, "@techacct.adobe.com") || in.Expiry == "" {
		t.Fatalf("email %q expiry %q", in.Email, in.Expiry)
	}
	block, _ := pem.Decode([]byte(in.PrivateKey))
	key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	fromFile := &Credentials{ClientID: in.TechnicalAccount.ClientID, ClientSecret: in.TechnicalAccount.ClientSecret,
		OrgID: in.Org, TechnicalAccountID: in.ID, Metascopes: strings.Split(in.Metascopes, ","), PrivateKey: key}
	status, body := e.post("/ims/exchange/jwt", e.exchangeForm(fromFile, e.signJWT(fromFile, nil)))
	if status != 200 {
		t.Fatalf("exchange with the file's credentials: %d %v", status, body)
	}

	for path, mode := range map[string]os.FileMode{files.ServiceCredentials: 0o600, files.PrivateKey: 0o600, files.Env: 0o600, files.Certificate: 0o644} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v, want %v", filepath.Base(path), err, fi.Mode().Perm(), mode)
		}
	}
	pemKey, _ := os.ReadFile(files.PrivateKey)
	if !strings.HasPrefix(string(pemKey), "-----BEGIN PRIVATE KEY-----\n") {
		t.Errorf("private.key is not PKCS#8 PEM")
	}
	envFile, _ := os.ReadFile(files.Env)
	for _, want := range []string{"IMSPROXY_IMS_URL=" + e.base, "IMSPROXY_STOCK_CLIENT_ID=" + e.creds.ClientID,
		"IMSPROXY_STOCK_CLIENT_SECRET=" + e.creds.ClientSecret, "IMSPROXY_AEM_CREDENTIALS_FILE=" + files.ServiceCredentials} {
		if !strings.Contains(string(envFile), want+"\n") {
			t.Errorf("env file lacks %q", want)
		}
	}
}

func TestGenerateCredentials_Formats(t *testing.T) {
	c, err := GenerateCredentials(CredentialOptions{Key: testKey(t, 0), Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !orgPattern.MatchString(c.OrgID) || !techAcctPattern.MatchString(c.TechnicalAccountID) ||
		len(c.ClientID) != 32 || !strings.HasPrefix(c.ClientSecret, "p8e-") {
		t.Fatalf("%+v", c)
	}
	if d := time.Until(c.Certificate.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
		t.Errorf("certificate valid for %v", d)
	}
	p := c.JWTPayload("https://ims-na1.adobelogin.com/")
	if p["aud"] != "https://ims-na1.adobelogin.com/c/"+c.ClientID || p["https://ims-na1.adobelogin.com/s/ent_aem_cloud_api"] != true {
		t.Errorf("JWT payload %v", p)
	}
	if _, err := c.ServiceCredentialsJSON("not a url"); err == nil {
		t.Error("ServiceCredentialsJSON accepted a base URL without a host")
	}
}

func TestRegisterClient_Validates(t *testing.T) {
	srv := New(Options{SigningKey: testKey(t, 2), CatalogueSize: 10})
	err := srv.RegisterClient(Client{ID: "", Org: "acme", TechAccount: "bob@example.com"})
	if err == nil || !strings.Contains(err.Error(), "client ID") || !strings.Contains(err.Error(), "org") || !strings.Contains(err.Error(), "technical account") {
		t.Fatalf("want every problem at once, got %v", err)
	}
}

func TestStart_RefusesNonLoopback(t *testing.T) {
	srv := New(Options{SigningKey: testKey(t, 2), CatalogueSize: 10})
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0"} {
		if _, err := srv.Start(addr); err == nil {
			t.Errorf("Start(%q) succeeded", addr)
		}
	}
	u, err := srv.Start("127.0.0.1:0")
	if err != nil || u != srv.URL() || !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("Start: %q %v", u, err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// The AEM Developer Console issues service credentials for AEM alone: the
// file names AEM's metascope, so its token is refused by Stock.
func TestServiceCredentialsJSON_NamesAEMsMetascopeOnly(t *testing.T) {
	c, err := GenerateCredentials(CredentialOptions{Key: testKey(t, 0)}) // bound to every service
	if err != nil {
		t.Fatal(err)
	}
	js, err := c.ServiceCredentialsJSON("https://ims-na1.adobelogin.com")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Integration struct {
			Metascopes string `json:"metascopes"`
		} `json:"integration"`
	}
	if err := json.Unmarshal(js, &doc); err != nil || doc.Integration.Metascopes != MetascopeAEM {
		t.Errorf("metascopes = %q (%v), want %s only", doc.Integration.Metascopes, err, MetascopeAEM)
	}
}
