package fakeadobe

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Client is an API client (a Developer Console credential) and its binding:
// what IMS knows about it.
type Client struct {
	// ID is the client ID (the API key, sent as x-api-key).
	ID string `json:"client_id"`
	// Secret is the client secret. AddSecret adds more (secret rotation).
	Secret string `json:"client_secret,omitempty"`
	// Org is the IMS organisation, "<24 hex>@AdobeOrg": the JWT iss.
	Org string `json:"org"`
	// TechAccount is the technical account, "<24 hex>@techacct.adobe.com":
	// the JWT sub.
	TechAccount string `json:"technical_account"`
	// Metascopes are the binding's metascopes as short names
	// ("ent_aem_cloud_api"); a JWT must carry a non-empty subset.
	Metascopes []string `json:"metascopes"`
	// Scopes are the scopes the client may ask for with client credentials
	// at /ims/token/v3; empty = the grant is not allowed.
	Scopes []string `json:"scopes"`
	// RequireJTI makes the binding require an integer jti, used only once.
	RequireJTI bool `json:"require_jti"`
	// NoExchangeJWT models a client without the exchange_jwt scope
	// (IMS answers 401 invalid_client).
	NoExchangeJWT bool `json:"no_exchange_jwt"`
	// Certificates are the public certificates bound to the client; a JWT
	// must be signed by the key of one that is unrevoked and unexpired.
	Certificates []*x509.Certificate `json:"-"`
	// Quota is the Stock license quota of the organisation, set when the
	// organisation is first registered; 0 = DefaultQuota, < 0 = none.
	Quota int `json:"quota"`
}

type clientState struct {
	Client
	secrets []string
	certs   []*certState
	jtis    map[int64]time.Time // used jti → when it may be forgotten
}

type certState struct {
	cert        *x509.Certificate
	fingerprint string
	revoked     bool
}

type orgState struct {
	id       string
	quota    int
	memberID int
	licenses []*purchase
}

// The formats IMS expects of iss and sub (bad_request otherwise).
var (
	orgPattern      = regexp.MustCompile(`^[A-Za-z0-9]+@AdobeOrg$`)
	techAcctPattern = regexp.MustCompile(`^[A-Za-z0-9]+@techacct\.adobe\.com$`)
)

// Fingerprint is the SHA-256 of a certificate's DER, in lower-case hex: how
// the control API names a certificate.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// RegisterClient adds (or replaces) a client. It checks that the client is
// one IMS could hold: an ID, an organisation and a technical account in
// Adobe's formats, RSA certificates.
func (s *Server) RegisterClient(c Client) error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("client ID is empty"))
	}
	if !orgPattern.MatchString(c.Org) {
		errs = append(errs, fmt.Errorf("org %q is not <id>@AdobeOrg", c.Org))
	}
	if !techAcctPattern.MatchString(c.TechAccount) {
		errs = append(errs, fmt.Errorf("technical account %q is not <id>@techacct.adobe.com", c.TechAccount))
	}
	for _, cert := range c.Certificates {
		if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
			errs = append(errs, errors.New("certificate does not hold an RSA public key"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("fakeadobe: register client %q: %w", c.ID, errors.Join(errs...))
	}
	st := &clientState{Client: c, jtis: map[int64]time.Time{}}
	st.Metascopes = slices.Clone(c.Metascopes)
	st.Scopes = slices.Clone(c.Scopes)
	st.Certificates = nil
	if c.Secret != "" {
		st.secrets = []string{c.Secret}
	}
	for _, cert := range c.Certificates {
		st.certs = append(st.certs, &certState{cert: cert, fingerprint: Fingerprint(cert)})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = st
	if _, ok := s.orgs[c.Org]; !ok {
		q := c.Quota
		switch {
		case q == 0:
			q = DefaultQuota
		case q < 0:
			q = 0
		}
		s.memberSeq++
		s.orgs[c.Org] = &orgState{id: c.Org, quota: q, memberID: 14357000 + s.memberSeq}
	}
	return nil
}

// Clients lists the registered clients (without secrets), sorted by ID.
func (s *Server) Clients() []Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Client, 0, len(s.clients))
	for _, st := range s.clients {
		c := st.Client
		c.Secret = ""
		c.Metascopes = slices.Clone(st.Metascopes)
		c.Scopes = slices.Clone(st.Scopes)
		for _, cs := range st.certs {
			if !cs.revoked {
				c.Certificates = append(c.Certificates, cs.cert)
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) clientLocked(id string) (*clientState, error) {
	st, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("fakeadobe: unknown client %q", id)
	}
	return st, nil
}

// AddCertificate binds one more certificate to a client (rotation: the old
// ones stay valid until revoked).
func (s *Server) AddCertificate(clientID string, cert *x509.Certificate) error {
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return errors.New("fakeadobe: certificate does not hold an RSA public key")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.clientLocked(clientID)
	if err != nil {
		return err
	}
	fp := Fingerprint(cert)
	for _, cs := range st.certs {
		if cs.fingerprint == fp {
			cs.revoked = false
			return nil
		}
	}
	st.certs = append(st.certs, &certState{cert: cert, fingerprint: fp})
	return nil
}

// RevokeCertificate unbinds the certificate with this fingerprint (see
// Fingerprint): JWTs signed by its key fail with invalid_signature.
func (s *Server) RevokeCertificate(clientID, fingerprint string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.clientLocked(clientID)
	if err != nil {
		return err
	}
	for _, cs := range st.certs {
		if cs.fingerprint == strings.ToLower(fingerprint) {
			cs.revoked = true
			return nil
		}
	}
	return fmt.Errorf("fakeadobe: client %q has no certificate %s", clientID, fingerprint)
}

// AddSecret adds a client secret; the old ones stay valid until revoked.
func (s *Server) AddSecret(clientID, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.clientLocked(clientID)
	if err != nil {
		return err
	}
	if !slices.Contains(st.secrets, secret) {
		st.secrets = append(st.secrets, secret)
	}
	return nil
}

// RevokeSecret removes a client secret.
func (s *Server) RevokeSecret(clientID, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.clientLocked(clientID)
	if err != nil {
		return err
	}
	st.secrets = slices.DeleteFunc(st.secrets, func(x string) bool { return x == secret })
	return nil
}

// SetQuota sets the Stock license quota left to an organisation.
func (s *Server) SetQuota(org string, quota int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orgs[org]
	if !ok {
		return fmt.Errorf("fakeadobe: unknown organisation %q", org)
	}
	o.quota = max(quota, 0)
	return nil
}

// Quota is the Stock license quota left to an organisation.
func (s *Server) Quota(org string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.orgs[org]; ok {
		return o.quota
	}
	return 0
}
