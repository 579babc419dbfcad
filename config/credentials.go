package config

import (
	"crypto/x509"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
)

// credentialSource is what a route's credentials were built from, kept so
// that ReloadCredentials re-reads them exactly as Load did. The variables do
// not change while the process runs; the files they name may.
type credentialSource struct {
	prefix string    // IMSPROXY_<NAME>_
	typ    RouteType // for the type's default metascope
	auth   AuthKind  // decided at Load; a reload never changes it
	vars   routeVars
	now    func() time.Time

	// globalIMS is IMSPROXY_IMS_URL (validated, "" when invalid), and
	// globalIMSSet whether it was set explicitly rather than defaulted.
	globalIMS    string
	globalIMSSet bool
}

// v returns the full name of the route variable with this suffix.
func (s *credentialSource) v(suffix string) string { return s.prefix + suffix }

// ReloadCredentials re-reads the route's credentials (CREDENTIALS_FILE,
// CLIENT_SECRET_FILE, PRIVATE_KEY_FILE, JWT_PAYLOAD_FILE, ACCESS_TOKEN_FILE,
// CERTIFICATE_FILE and the variables) exactly as Load did, for a file change or SIGHUP. It
// returns the new credentials and the files they came from, or Problems.
// The auth kind and the IMS URL stay as loaded: changing them needs a
// restart.
func (r *Route) ReloadCredentials() (Credentials, []string, error) {
	if r.reload == nil {
		return Credentials{}, nil, errors.New("config: route " + r.Name + " was not made by Load and cannot reload")
	}
	c, _, files, ps := r.reload()
	if len(ps) > 0 {
		return Credentials{}, files, ps.err()
	}
	return c, files, nil
}

// files lists the credential files the variables name.
func (s *credentialSource) files() []string {
	var fs []string
	for _, f := range []string{s.vars.CredentialsFile, s.vars.ClientSecretFile, s.vars.PrivateKeyFile,
		s.vars.JWTPayloadFile, s.vars.AccessTokenFile, s.vars.CertificateFile} {
		if f != "" {
			fs = append(fs, f)
		}
	}
	return fs
}

// inline returns the content of a value given either inline (VAR) or as a
// file (VAR_FILE), with the name of the variable it came from; that name is
// "" when there is no usable value. Both set is a problem: which one wins
// would be a guess.
func (s *credentialSource) inline(ps *Problems, suffix string, value Secret, file string) ([]byte, string) {
	switch {
	case value != "" && file != "":
		ps.add(s.v(suffix), "set either %s or %s, not both", s.v(suffix), s.v(suffix+"_FILE"))
		return nil, ""
	case value != "":
		return []byte(value.Reveal()), s.v(suffix)
	case file != "":
		b, msg := readSecretFile(file)
		if msg != "" {
			ps.add(s.v(suffix+"_FILE"), "%s", msg)
			return nil, ""
		}
		return b, s.v(suffix + "_FILE")
	}
	return nil, ""
}

// load builds the credentials and the route's effective IMS URL from the
// variables and files. Precedence, most specific first: an explicit route
// variable, the JWT payload, the credentials file, the default.
func (s *credentialSource) load() (Credentials, string, []string, Problems) {
	var ps Problems
	var c Credentials
	vs := s.vars

	var sc serviceCredentials
	credsVar := ""
	if vs.CredentialsFile != "" {
		credsVar = s.v("CREDENTIALS_FILE")
		if b, msg := readSecretFile(vs.CredentialsFile); msg != "" {
			ps.add(credsVar, "%s", msg)
		} else {
			var fps Problems
			sc, fps = parseServiceCredentials(credsVar, b)
			ps = append(ps, fps...)
		}
	}

	var payload jwtPayload
	data, payloadVar := s.inline(&ps, "JWT_PAYLOAD", vs.JWTPayload, vs.JWTPayloadFile)
	if payloadVar != "" {
		var pps Problems
		payload, pps = parseJWTPayload(payloadVar, data)
		ps = append(ps, pps...)
		c.JWTClaims = payload.Claims
	}

	c.ClientID = first(vs.ClientID, sc.ClientID)
	c.ClientSecret = Secret(first(s.clientSecret(&ps), sc.ClientSecret))
	c.OrgID = first(vs.OrgID, payload.Iss, sc.OrgID)
	c.TechnicalAccountID = first(vs.TechnicalAccountID, payload.Sub, sc.TechnicalAccountID)
	c.Scopes = splitScopes(vs.Scopes)
	c.Metascopes = s.metascopes(&ps, payload, sc)

	// A payload carries iss and sub into the JWT as they are; a variable
	// that says otherwise would be silently ignored, so it is refused.
	if payload.Iss != "" && vs.OrgID != "" && payload.Iss != vs.OrgID {
		ps.add(s.v("ORG_ID"), "differs from the iss claim of %s; set only one of them", payloadVar)
	}
	if payload.Sub != "" && vs.TechnicalAccountID != "" && payload.Sub != vs.TechnicalAccountID {
		ps.add(s.v("TECHNICAL_ACCOUNT_ID"), "differs from the sub claim of %s; set only one of them", payloadVar)
	}
	if payload.Aud != "" && c.ClientID != "" && !strings.HasSuffix(payload.Aud, "/c/"+c.ClientID) {
		// IMS answers invalid_client when client_id and aud disagree. Client
		// IDs and URLs are not secrets, so both are shown, but the claim only
		// when it is a URL: anything else may be a value pasted by mistake.
		aud := "claim aud"
		if u, msg := parseHTTPURL(payload.Aud); msg == "" && u.User == nil {
			aud += " is " + payload.Aud + ", which"
		}
		ps.add(payloadVar, "%s does not end with /c/%s (the client ID): IMS would answer invalid_client", aud, c.ClientID)
	}

	keyData, keyVar := s.inline(&ps, "PRIVATE_KEY", vs.PrivateKey, vs.PrivateKeyFile)
	switch {
	case keyVar != "":
		k, msg := parsePrivateKey(keyData)
		if msg != "" {
			ps.add(keyVar, "%s", msg)
		}
		c.PrivateKey = NewPrivateKey(k)
	case sc.PrivateKey != nil:
		c.PrivateKey = NewPrivateKey(sc.PrivateKey)
		keyVar = credsVar
	}

	cert, certVar, certField := sc.Certificate, credsVar, fieldPublicKey
	if cert == nil {
		certField = fieldCertExpiry
	}
	c.CertificateExpiry = sc.CertificateExpiry
	if vs.CertificateFile != "" {
		certVar, certField, cert = s.v("CERTIFICATE_FILE"), "", nil
		if b, msg := readFile(vs.CertificateFile); msg != "" {
			ps.add(certVar, "%s", msg)
		} else if cert, msg = parseCertificate(b); msg != "" {
			ps.add(certVar, "%s", msg)
		} else {
			c.CertificateExpiry = cert.NotAfter
		}
	}
	if s.auth == AuthJWT {
		s.checkCertificate(&ps, c, cert, certVar, certField, keyVar)
	}

	data, tokenVar := s.inline(&ps, "ACCESS_TOKEN", vs.AccessToken, vs.AccessTokenFile)
	if tokenVar != "" {
		t, msg := parseAccessToken(data)
		if msg != "" {
			ps.add(tokenVar, "%s", msg)
		}
		c.AccessToken = Secret(t)
	}

	ims := s.imsURL(&ps, sc)
	s.require(&ps, c, sc, credsVar, payloadVar)
	return c, ims, s.files(), ps
}

// clientSecret returns CLIENT_SECRET, or the content of CLIENT_SECRET_FILE
// without the white space around it: a Kubernetes secret mount, or a file
// written with echo, ends with a line break that is no part of the secret.
// The file is how a secret is rotated without a restart: Adobe lets a
// credential hold several client secrets at once.
func (s *credentialSource) clientSecret(ps *Problems) string {
	data, from := s.inline(ps, "CLIENT_SECRET", s.vars.ClientSecret, s.vars.ClientSecretFile)
	if from != s.v("CLIENT_SECRET_FILE") {
		return string(data)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		ps.add(from, "is empty")
	}
	return secret
}

// metascopeNameRE matches a metascope name such as ent_aem_cloud_api.
var metascopeNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// defaultMetascopes is the metascope a route type uses when none is
// configured: Adobe Stock's (ent_stocksearch_sdk, the one the Developer
// Console binds to a Stock service account and the JWT payload of AEM's
// Adobe IMS configuration for Stock carries; ent_user_sdk is User
// Management's) and the one AEM service credentials carry. Generic routes
// have none.
func defaultMetascopes(t RouteType) []string {
	switch t {
	case TypeStock:
		return []string{"ent_stocksearch_sdk"}
	case TypeAEM:
		return []string{"ent_aem_cloud_api"}
	}
	return nil
}

// first returns the first non-empty value.
func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// metascopes picks the metascopes: METASCOPES, else the payload's claims,
// else the credentials file's, else the route type's default.
func (s *credentialSource) metascopes(ps *Problems, p jwtPayload, sc serviceCredentials) []string {
	if s.vars.Metascopes == "" {
		switch {
		case len(p.Metascopes) > 0:
			return p.Metascopes
		case len(sc.Metascopes) > 0:
			return sc.Metascopes
		}
		return defaultMetascopes(s.typ)
	}
	if p.Claims != nil {
		ps.add(s.v("METASCOPES"), "conflicts with the JWT payload, which carries the metascope claims itself; set only one of them")
	}
	ms := splitList(s.vars.Metascopes)
	for _, m := range ms {
		if !metascopeNameRE.MatchString(m) && !metascopeClaimRE.MatchString(m) {
			ps.add(s.v("METASCOPES"), "want comma-separated metascope names (ent_aem_cloud_api) or claim URLs (https://ims-na1.adobelogin.com/s/ent_aem_cloud_api)")
			return nil
		}
	}
	return ms
}

// checkCertificate refuses an expired certificate and one that does not
// belong to the private key: either way IMS refuses every exchange.
// certField is the credentials-file field the certificate came from, ""
// for CERTIFICATE_FILE.
func (s *credentialSource) checkCertificate(ps *Problems, c Credentials, cert *x509.Certificate, certVar, certField, keyVar string) {
	if certVar == "" {
		return
	}
	where := ""
	if certField != "" {
		where = "field " + certField + ": "
	}
	if !c.CertificateExpiry.IsZero() && !c.CertificateExpiry.After(s.now()) {
		ps.add(certVar, "%sthe certificate expired on %s: add a new certificate in the Adobe Developer Console",
			where, c.CertificateExpiry.UTC().Format(time.RFC3339))
	}
	if cert != nil && !c.PrivateKey.IsZero() && !matchesKey(cert, c.PrivateKey.RSA()) {
		ps.add(certVar, "%sis not the certificate of the private key in %s: IMS would answer invalid_signature",
			where, keyVar)
	}
}

// imsURL picks the route's IMS base URL: the route's IMS_URL, else the
// global IMSPROXY_IMS_URL when set explicitly, else the credentials file's
// imsEndpoint, else the global default.
func (s *credentialSource) imsURL(ps *Problems, sc serviceCredentials) string {
	if s.vars.IMSURL != "" {
		u, msg := imsBase(s.vars.IMSURL)
		if msg != "" {
			ps.add(s.v("IMS_URL"), "%s", msg)
		}
		return u
	}
	if !s.globalIMSSet && sc.IMSURL != "" {
		return sc.IMSURL
	}
	return s.globalIMS
}

// requirement is one credential an auth kind needs.
type requirement struct {
	missing bool
	suffix  string   // the variable that supplies it
	field   string   // the credentials-file field that supplies it, if any
	alt     []string // other variables that supply it
	hint    string   // an example, when the name alone does not say
}

// require reports each credential the auth kind needs that no source
// supplied. A credential whose source is configured but broken is not
// reported again: the broken source already is.
func (s *credentialSource) require(ps *Problems, c Credentials, sc serviceCredentials, credsVar, payloadVar string) {
	var reqs []requirement
	switch s.auth {
	case AuthJWT:
		reqs = []requirement{
			{c.ClientID == "", "CLIENT_ID", fieldClientID, []string{"CREDENTIALS_FILE"}, ""},
			{c.ClientSecret.IsZero(), "CLIENT_SECRET", fieldClientSecret, []string{"CLIENT_SECRET_FILE", "CREDENTIALS_FILE"}, ""},
			{c.OrgID == "", "ORG_ID", fieldOrg, []string{"CREDENTIALS_FILE", "JWT_PAYLOAD"}, ""},
			{c.TechnicalAccountID == "", "TECHNICAL_ACCOUNT_ID", fieldTechAccount, []string{"CREDENTIALS_FILE", "JWT_PAYLOAD"}, ""},
			{c.PrivateKey.IsZero(), "PRIVATE_KEY_FILE", fieldPrivateKey, []string{"PRIVATE_KEY", "CREDENTIALS_FILE"}, ""},
			{len(c.Metascopes) == 0, "METASCOPES", fieldMetascopes, []string{"JWT_PAYLOAD"}, ", e.g. ent_brand_portal_sdk for Brand Portal"},
		}
	case AuthOAuth:
		reqs = []requirement{
			{c.ClientID == "", "CLIENT_ID", fieldClientID, []string{"CREDENTIALS_FILE"}, ""},
			{c.ClientSecret.IsZero(), "CLIENT_SECRET", fieldClientSecret, []string{"CLIENT_SECRET_FILE", "CREDENTIALS_FILE"}, ""},
			{len(c.Scopes) == 0, "SCOPES", "", nil, ": copy the credential's scopes from the Adobe Developer Console, e.g. openid,AdobeID"},
		}
	case AuthToken:
		reqs = []requirement{{c.AccessToken.IsZero(), "ACCESS_TOKEN", "", []string{"ACCESS_TOKEN_FILE"}, ""}}
	}
	for _, r := range reqs {
		if !r.missing {
			continue
		}
		// The variables meant to supply it: when one is broken it says so.
		vars := []string{s.v(r.suffix)}
		for _, a := range r.alt {
			switch {
			case a == "JWT_PAYLOAD" && payloadVar != "":
				vars = append(vars, payloadVar, s.v(a))
			case strings.HasSuffix(a, "_FILE"):
				if a != "CREDENTIALS_FILE" {
					vars = append(vars, s.v(a))
				}
			default:
				vars = append(vars, s.v(a), s.v(a+"_FILE"))
			}
		}
		switch {
		case ps.has(vars...):
		case credsVar != "" && r.field != "":
			// An unreadable file is reported already, and so is a field
			// that is present but unusable.
			if sc.loaded && !sc.broken[r.field] {
				ps.add(credsVar, "field %s is missing", r.field)
			}
		default:
			alts := make([]string, len(r.alt))
			for i, a := range r.alt {
				alts[i] = s.v(a)
			}
			or := ""
			if len(alts) > 0 {
				or = " (or set " + strings.Join(alts, " or ") + ")"
			}
			suppliers := vars
			if slices.Contains(r.alt, "CREDENTIALS_FILE") {
				suppliers = append(suppliers, s.v("CREDENTIALS_FILE"))
			}
			ps.addMissing(suppliers, "required for AUTH=%s%s%s", s.auth, r.hint, or)
		}
	}
}
