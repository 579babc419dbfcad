package fakeadobe

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The metascopes of the services the emulator serves, as the Adobe
// Developer Console binds them to a credential: Adobe Stock's and Brand
// Portal's are those of Adobe's list of JWT metascopes
// (github.com/AdobeDocs/adobeio-auth, JWT/Scopes.md); AEM as a Cloud Service
// service credentials carry ent_aem_cloud_api in their "metascopes" field.
const (
	MetascopeAEM         = "ent_aem_cloud_api"
	MetascopeStock       = "ent_stocksearch_sdk"
	MetascopeBrandPortal = "ent_brand_portal_sdk"
)

// DefaultMetascopes are bound to generated credentials, as to a Developer
// Console project that added AEM, Adobe Stock and Brand Portal, so any
// route's default works. User Management (ent_user_sdk) is not among them:
// a JWT asking for it is refused with invalid_scope, as IMS refuses a
// metascope outside the binding.
var DefaultMetascopes = []string{MetascopeAEM, MetascopeStock, MetascopeBrandPortal}

// DefaultScopes are the OAuth scopes generated credentials may ask for.
var DefaultScopes = []string{"openid", "AdobeID", "read_organizations",
	"additional_info.projectedProductContext", "aem.folders", "aem.assets.author"}

// Credentials is a complete, working credential set: what the Developer
// Console hands an operator.
type Credentials struct {
	ClientID              string
	ClientSecret          string
	OrgID                 string // ...@AdobeOrg
	TechnicalAccountID    string // ...@techacct.adobe.com
	TechnicalAccountEmail string
	Metascopes            []string
	Scopes                []string
	RequireJTI            bool
	Quota                 int
	PrivateKey            *rsa.PrivateKey
	Certificate           *x509.Certificate // self-signed, for PrivateKey
}

// CredentialOptions tunes GenerateCredentials; the zero value is fine.
type CredentialOptions struct {
	Name       string        // certificate common name; "" = "fakeadobe"
	ClientID   string        // "" = 32 random hex digits, like a Console API key
	Metascopes []string      // nil = DefaultMetascopes
	Scopes     []string      // nil = DefaultScopes
	RequireJTI bool          // the binding requires a jti
	Quota      int           // Stock quota of the organisation; 0 = DefaultQuota
	Validity   time.Duration // certificate lifetime; 0 = 365 days
	// Key reuses a key instead of generating a 2048-bit one (generation
	// takes a moment; tests share one).
	Key *rsa.PrivateKey
	Now func() time.Time // certificate validity start; nil = time.Now
}

// GenerateCredentials makes a new credential set: IDs in Adobe's formats, a
// secret, an RSA key and a self-signed certificate for it.
func GenerateCredentials(opts CredentialOptions) (*Credentials, error) {
	key := opts.Key
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("fakeadobe: generate key: %w", err)
		}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	validity := opts.Validity
	if validity == 0 {
		validity = 365 * 24 * time.Hour
	}
	name := opts.Name
	if name == "" {
		name = "fakeadobe"
	}
	cert, err := selfSigned(key, name, now(), validity)
	if err != nil {
		return nil, err
	}
	c := &Credentials{
		ClientID:              opts.ClientID,
		ClientSecret:          "p8e-" + randomHex(16),
		OrgID:                 strings.ToUpper(randomHex(12)) + "@AdobeOrg",
		TechnicalAccountID:    strings.ToUpper(randomHex(12)) + "@techacct.adobe.com",
		TechnicalAccountEmail: randomUUID() + "@techacct.adobe.com",
		Metascopes:            slices.Clone(opts.Metascopes),
		Scopes:                slices.Clone(opts.Scopes),
		RequireJTI:            opts.RequireJTI,
		Quota:                 opts.Quota,
		PrivateKey:            key,
		Certificate:           cert,
	}
	if c.ClientID == "" {
		c.ClientID = randomHex(16)
	}
	if c.Metascopes == nil {
		c.Metascopes = slices.Clone(DefaultMetascopes)
	}
	if c.Scopes == nil {
		c.Scopes = slices.Clone(DefaultScopes)
	}
	return c, nil
}

func selfSigned(key *rsa.PrivateKey, cn string, start time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, fmt.Errorf("fakeadobe: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"fakeadobe"}},
		NotBefore:    start.Add(-time.Hour),
		NotAfter:     start.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("fakeadobe: create certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUUID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Client is the IMS side of the credentials, ready for RegisterClient.
func (c *Credentials) Client() Client {
	return Client{
		ID: c.ClientID, Secret: c.ClientSecret, Org: c.OrgID, TechAccount: c.TechnicalAccountID,
		Metascopes: slices.Clone(c.Metascopes), Scopes: slices.Clone(c.Scopes),
		RequireJTI: c.RequireJTI, Quota: c.Quota, Certificates: []*x509.Certificate{c.Certificate},
	}
}

// NewCredentials generates a credential set and registers its client.
func (s *Server) NewCredentials(opts CredentialOptions) (*Credentials, error) {
	c, err := GenerateCredentials(opts)
	if err != nil {
		return nil, err
	}
	if err := s.RegisterClient(c.Client()); err != nil {
		return nil, err
	}
	return c, nil
}

// PrivateKeyPEM is the key as PKCS#8 PEM ("BEGIN PRIVATE KEY", what
// openssl req writes).
func (c *Credentials) PrivateKeyPEM() []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// PrivateKeyPKCS1PEM is the key as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY", what
// AEM credentials files hold).
func (c *Credentials) PrivateKeyPKCS1PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(c.PrivateKey)})
}

// CertificatePEM is the certificate as PEM.
func (c *Credentials) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate.Raw})
}

func crlf(b []byte) string { return strings.ReplaceAll(string(b), "\n", "\r\n") }

// ServiceCredentialsJSON is the AEM as a Cloud Service service-credentials
// file, as the AEM Developer Console downloads it, for these credentials: imsEndpoint is the bare
// host of imsBaseURL (clients add https://, so a client of a plain-HTTP
// emulator must set its IMS URL explicitly), the key is PKCS#1 and both PEMs
// use \r\n line endings.
func (c *Credentials) ServiceCredentialsJSON(imsBaseURL string) ([]byte, error) {
	u, err := url.Parse(imsBaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("fakeadobe: IMS base URL %q: not an absolute URL", imsBaseURL)
	}
	// The AEM Developer Console issues service credentials for AEM alone:
	// their metascope is AEM's, whatever else the client is bound to.
	metascopes := c.Metascopes
	if slices.Contains(metascopes, MetascopeAEM) {
		metascopes = []string{MetascopeAEM}
	}
	doc := map[string]any{
		"ok": true,
		"integration": map[string]any{
			"imsEndpoint": u.Host,
			"metascopes":  strings.Join(metascopes, ","),
			"technicalAccount": map[string]string{
				"clientId": c.ClientID, "clientSecret": c.ClientSecret,
			},
			"email":                     c.TechnicalAccountEmail,
			"id":                        c.TechnicalAccountID,
			"org":                       c.OrgID,
			"privateKey":                crlf(c.PrivateKeyPKCS1PEM()),
			"publicKey":                 crlf(c.CertificatePEM()),
			"certificateExpirationDate": c.Certificate.NotAfter.UTC().Format("2006-01-02T15:04:05.000Z"),
		},
		"statusCode": 200,
	}
	return json.MarshalIndent(doc, "", "  ")
}

// JWTPayload is the Developer Console's "JWT payload" for these
// credentials: iss, sub, aud and one metascope claim each, without exp.
func (c *Credentials) JWTPayload(imsBaseURL string) map[string]any {
	base := strings.TrimSuffix(imsBaseURL, "/")
	p := map[string]any{"iss": c.OrgID, "sub": c.TechnicalAccountID, "aud": base + "/c/" + c.ClientID}
	for _, m := range c.Metascopes {
		p[base+"/s/"+m] = true
	}
	return p
}

// SignJWT signs, as an Adobe client does, the JWT to exchange at
// <imsBaseURL>/ims/exchange/jwt: the JWT payload plus exp, plus extra claims
// (which may override or, with a nil value, delete any claim).
func (c *Credentials) SignJWT(imsBaseURL string, exp time.Time, extra map[string]any) (string, error) {
	claims := jwt.MapClaims(c.JWTPayload(imsBaseURL))
	claims["exp"] = exp.Unix()
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	return jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(c.PrivateKey)
}

// Endpoints are the base URLs written into credential files and the .env
// snippet.
type Endpoints struct {
	IMS      string // IMS base URL
	Stock    string // Stock API base URL (stock.adobe.io)
	Download string // download host (stock.adobe.com); "" = Stock
	AEM      string // AEM author base URL; "" = Stock
	// CA is the PEM of the CA to trust (Server.CACertificatePEM of an
	// HTTPS emulator); nil for plain HTTP.
	CA []byte
}

// CredentialFiles are the paths WriteFiles wrote.
type CredentialFiles struct {
	ServiceCredentials string // aem-service-credentials.json
	PrivateKey         string // private.key (PKCS#8 PEM)
	Certificate        string // certificate.crt
	Env                string // imsproxy.env
	CA                 string // ca.crt, when Endpoints.CA was given
}

// WriteFiles writes the credentials into dir (created if needed; secrets
// with mode 0600): the AEM service-credentials JSON, the private key, the
// certificate, the CA of an HTTPS emulator (e.CA), and an env file
// configuring imsproxy against e: a stock route with OAuth server-to-server,
// an aem route with the credentials file.
func (c *Credentials) WriteFiles(dir string, e Endpoints) (CredentialFiles, error) {
	if e.Download == "" {
		e.Download = e.Stock
	}
	if e.AEM == "" {
		e.AEM = e.Stock
	}
	f := CredentialFiles{
		ServiceCredentials: filepath.Join(dir, "aem-service-credentials.json"),
		PrivateKey:         filepath.Join(dir, "private.key"),
		Certificate:        filepath.Join(dir, "certificate.crt"),
		Env:                filepath.Join(dir, "imsproxy.env"),
	}
	js, err := c.ServiceCredentialsJSON(e.IMS)
	if err != nil {
		return f, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, fmt.Errorf("fakeadobe: credentials dir: %w", err)
	}
	intro := `# The emulator speaks plain HTTP, so IMS_URL is set explicitly: the
# credentials file's imsEndpoint is a bare host that clients prefix with https://.`
	var caVars string
	if e.CA != nil {
		f.CA = filepath.Join(dir, "ca.crt")
		intro = `# The emulator speaks HTTPS with a certificate of its own CA (` + f.CA + `),
# which both routes trust through CA_FILE.`
		caVars = "IMSPROXY_STOCK_CA_FILE=" + f.CA + "\nIMSPROXY_AEM_CA_FILE=" + f.CA + "\n"
	}
	env := fmt.Sprintf(`# imsproxy configuration for the fakeadobe emulator (generated).
%s
IMSPROXY_ROUTES=stock,aem
IMSPROXY_IMS_URL=%s

# Stock: OAuth server-to-server (client credentials).
IMSPROXY_STOCK_AUTH=oauth
IMSPROXY_STOCK_UPSTREAM=%s
IMSPROXY_STOCK_DOWNLOAD_UPSTREAM=%s
IMSPROXY_STOCK_CLIENT_ID=%s
IMSPROXY_STOCK_CLIENT_SECRET=%s
IMSPROXY_STOCK_SCOPES=%s

# AEM: service credentials (JWT exchange).
IMSPROXY_AEM_AUTH=jwt
IMSPROXY_AEM_UPSTREAM=%s
IMSPROXY_AEM_CREDENTIALS_FILE=%s
%s`, intro, e.IMS, e.Stock, e.Download, c.ClientID, c.ClientSecret, strings.Join(c.Scopes, ","), e.AEM, f.ServiceCredentials, caVars)
	type file struct {
		path string
		data []byte
		mode os.FileMode
	}
	files := []file{
		{f.ServiceCredentials, js, 0o600},
		{f.PrivateKey, c.PrivateKeyPEM(), 0o600},
		{f.Certificate, c.CertificatePEM(), 0o644},
	}
	if f.CA != "" {
		files = append(files, file{f.CA, e.CA, 0o644})
	}
	// The env file last: a health check waits for it.
	files = append(files, file{f.Env, []byte(env), 0o600})
	for _, w := range files {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return f, fmt.Errorf("fakeadobe: write %s: %w", w.path, err)
		}
	}
	return f, nil
}
