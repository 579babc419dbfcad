package config

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Field paths in an AEM as a Cloud Service service-credentials file (the
// JSON the AEM Developer Console downloads), as messages name them.
const (
	fieldIMSEndpoint  = "integration.imsEndpoint"
	fieldMetascopes   = "integration.metascopes"
	fieldClientID     = "integration.technicalAccount.clientId"
	fieldClientSecret = "integration.technicalAccount.clientSecret"
	fieldTechAccount  = "integration.id"
	fieldOrg          = "integration.org"
	fieldPrivateKey   = "integration.privateKey"
	fieldPublicKey    = "integration.publicKey"
	fieldCertExpiry   = "certificateExpirationDate"
)

// serviceCredentials is what an AEM service-credentials file provides. Any
// field may be empty: whether it is required depends on the route's auth
// kind and on the variables that override it, which the caller knows.
type serviceCredentials struct {
	IMSURL             string // https:// + imsEndpoint, no trailing slash
	ClientID           string
	ClientSecret       string
	OrgID              string
	TechnicalAccountID string
	Metascopes         []string
	PrivateKey         *rsa.PrivateKey
	Certificate        *x509.Certificate // from publicKey
	CertificateExpiry  time.Time         // Certificate.NotAfter, else certificateExpirationDate

	loaded bool            // the file is a service-credentials object
	broken map[string]bool // fields present but unusable (already reported)
}

// decodeObject decodes data as exactly one JSON object, keeping numbers as
// json.Number so that claims copied into a JWT keep their exact value.
func decodeObject(data []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // trailing data: not one object
	}
	return obj, true
}

// jsonString returns the string at path. A missing field, a null and an
// empty string all count as absent (ok with ""); a value of another type is
// reported through wrongType.
func jsonString(obj map[string]any, path string) (s string, wrongType bool) {
	var v any = obj
	for _, k := range strings.Split(path, ".") {
		m, isObj := v.(map[string]any)
		if !isObj {
			return "", v != nil
		}
		v = m[k]
	}
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return strings.TrimSpace(v), false
	}
	return "", true
}

// parseServiceCredentials parses a service-credentials file read from the
// variable v. Each field that is present but unusable is its own problem.
func parseServiceCredentials(v string, data []byte) (serviceCredentials, Problems) {
	var sc serviceCredentials
	var ps Problems
	obj, ok := decodeObject(data)
	if !ok {
		ps.add(v, "is not a JSON object: want the service credentials JSON downloaded from the AEM Developer Console")
		return sc, ps
	}
	if _, isObj := obj["integration"].(map[string]any); !isObj {
		if _, hasToken := obj["accessToken"]; hasToken {
			ps.add(v, "is a local development token file, not service credentials: name it in %s instead",
				strings.TrimSuffix(v, "CREDENTIALS_FILE")+"ACCESS_TOKEN_FILE")
		} else {
			ps.add(v, "has no integration object: not an AEM service credentials file")
		}
		return sc, ps
	}
	sc.loaded = true
	sc.broken = map[string]bool{}
	bad := func(field, format string, args ...any) {
		sc.broken[field] = true
		ps.add(v, "field "+field+" "+format, args...)
	}
	str := func(field string) string {
		s, wrong := jsonString(obj, field)
		if wrong {
			bad(field, "is not a string")
		}
		return s
	}
	sc.ClientID = str(fieldClientID)
	sc.ClientSecret = str(fieldClientSecret)
	sc.OrgID = str(fieldOrg)
	sc.TechnicalAccountID = str(fieldTechAccount)

	if host := str(fieldIMSEndpoint); host != "" {
		// The file holds a bare host (ims-na1.adobelogin.com); the Adobe
		// libraries add https:// themselves. Accept a full URL too.
		if !strings.Contains(host, "://") {
			host = "https://" + host
		}
		if u, msg := imsBase(host); msg != "" {
			bad(fieldIMSEndpoint, "is not a host name or URL")
		} else {
			sc.IMSURL = u
		}
	}

	// A comma string in Adobe's files; accept a list as some tools write.
	switch m := obj["integration"].(map[string]any)["metascopes"].(type) {
	case nil:
	case string:
		sc.Metascopes = splitList(m)
	case []any:
		for _, e := range m {
			s, isStr := e.(string)
			if !isStr {
				bad(fieldMetascopes, "is not a comma-separated string")
				sc.Metascopes = nil
				break
			}
			sc.Metascopes = append(sc.Metascopes, splitList(s)...)
		}
	default:
		bad(fieldMetascopes, "is not a comma-separated string")
	}

	if pk := str(fieldPrivateKey); pk != "" {
		k, msg := parsePrivateKey([]byte(pk))
		if msg != "" {
			bad(fieldPrivateKey, "%s", msg)
		}
		sc.PrivateKey = k
	}
	if pub := str(fieldPublicKey); pub != "" {
		c, msg := parseCertificate([]byte(pub))
		if msg != "" {
			bad(fieldPublicKey, "%s", msg)
		} else {
			sc.Certificate = c
			sc.CertificateExpiry = c.NotAfter
		}
	}
	// certificateExpirationDate is seen only in third-party material, not
	// in Adobe's documentation, inside or next to integration; the
	// certificate itself is authoritative when present.
	for _, field := range []string{"integration." + fieldCertExpiry, fieldCertExpiry} {
		s := str(field)
		if s == "" || sc.Certificate != nil {
			continue
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			bad(field, "is not an RFC 3339 time such as 2026-05-21T14:16:46.000Z")
			continue
		}
		sc.CertificateExpiry = t
	}
	return sc, ps
}

// metascopeClaimRE matches a metascope claim name: <ims base>/s/<metascope>.
var metascopeClaimRE = regexp.MustCompile(`^https?://[^/\s]+(/[^\s]*)?/s/[A-Za-z0-9_.-]+$`)

// jwtPayload is the "JWT payload" JSON copied from the Developer Console.
type jwtPayload struct {
	Claims     map[string]any // every claim but exp and jti, set fresh per exchange
	Iss        string         // org ID
	Sub        string         // technical account ID
	Aud        string         // <ims>/c/<client id>
	Metascopes []string       // the metascope claim names, sorted
}

// parseJWTPayload parses a JWT payload read from the variable v.
func parseJWTPayload(v string, data []byte) (jwtPayload, Problems) {
	var p jwtPayload
	var ps Problems
	obj, ok := decodeObject(data)
	if !ok {
		ps.add(v, "is not a JSON object: want the JWT payload copied from the Developer Console")
		return p, ps
	}
	delete(obj, "exp")
	delete(obj, "jti")
	p.Claims = obj
	claim := func(name string) string {
		s, wrong := jsonString(obj, name)
		switch {
		case wrong:
			ps.add(v, "claim %s is not a string", name)
		case s == "":
			ps.add(v, "claim %s is missing", name)
		}
		return s
	}
	p.Iss, p.Sub, p.Aud = claim("iss"), claim("sub"), claim("aud")
	for k, val := range obj {
		if !metascopeClaimRE.MatchString(k) {
			continue
		}
		if b, isBool := val.(bool); !isBool || !b {
			// IMS only reads a metascope claim whose value is true.
			ps.add(v, "metascope claim %s is not the boolean true", k)
			continue
		}
		p.Metascopes = append(p.Metascopes, k)
	}
	sort.Strings(p.Metascopes)
	if len(p.Metascopes) == 0 && !ps.has(v) {
		ps.add(v, `has no metascope claim ("https://ims-na1.adobelogin.com/s/<metascope>": true)`)
	}
	return p, ps
}

// parseAccessToken reads a fixed access token: the token itself, or the
// Developer Console's local development token JSON ({"accessToken": ...}).
// The IMS answer shape ({"access_token": ...}) is accepted too, since it is
// what an operator gets when saving a token fetched by hand.
func parseAccessToken(data []byte) (string, string) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", "is empty"
	}
	if strings.HasPrefix(s, "{") {
		obj, ok := decodeObject([]byte(s))
		if !ok {
			return "", "starts like JSON but is not a JSON object"
		}
		for _, f := range []string{"accessToken", "access_token"} {
			if t, wrong := jsonString(obj, f); !wrong && t != "" {
				s = t
				break
			}
		}
		if strings.HasPrefix(s, "{") {
			return "", "is JSON without an accessToken field: want the token itself or the local development token JSON"
		}
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return "", `contains spaces or line breaks: want the token alone, without "Bearer "`
	}
	return s, ""
}
