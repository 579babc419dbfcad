package fakeadobe

import (
	"bytes"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// exchangeError is one of IMS's documented refusals (Adobe Stock's Access
// API Reference).
type exchangeError struct {
	status int
	code   string
	desc   string
}

func (e *exchangeError) Error() string { return e.code + ": " + e.desc }

func badRequest(code, format string, args ...any) *exchangeError {
	return &exchangeError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

// The text IMS really sends for a metascope problem (quoted in
// AdobeDocs/adobe-dev-console issue #54 and adobe/jwt-auth issue #6).
const metascopeMismatch = "The metascopes in the JWT are not a subset of the metascopes in the binding."

// tokenResponse is IMS's success answer.
type tokenResponse struct {
	TokenType   string `json:"token_type"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

const maxFormBytes = 1 << 20

// readBodyForm returns the fields of a form body in either encoding Adobe's
// clients use: application/x-www-form-urlencoded (the docs, aemcs-lib) or
// multipart/form-data (@adobe/jwt-auth, aio-lib-ims). Anything else gives
// no fields.
func readBodyForm(w http.ResponseWriter, r *http.Request) url.Values {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err == nil {
			return r.PostForm
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(maxFormBytes); err == nil && r.MultipartForm != nil {
			return url.Values(r.MultipartForm.Value)
		}
	}
	return url.Values{}
}

func requirePOST(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	writeIMSError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use POST")
	return false
}

func (s *Server) handleIMSNotFound(w http.ResponseWriter, r *http.Request) {
	writeIMSError(w, http.StatusNotFound, "not_found", "No such IMS endpoint: "+r.URL.Path)
}

// handleExchangeJWT is POST /ims/exchange/jwt (with or without the trailing
// slash @adobe/jwt-auth adds).
func (s *Server) handleExchangeJWT(w http.ResponseWriter, r *http.Request) {
	if !requirePOST(w, r) {
		return
	}
	form := readBodyForm(w, r)
	q := r.URL.Query()
	if form.Get("jwt_token") == "" && form.Get("client_id") == "" &&
		(q.Get("jwt_token") != "" || q.Get("client_id") != "") {
		// One user who sent the fields as query parameters got exactly
		// this (adobe-dev-console issue #124); the docs want a body.
		s.rec.countExchange("internal_error")
		writeIMSError(w, http.StatusInternalServerError, "internal_error", "Please try again later")
		return
	}
	token, info, err := s.exchange(s.imsBase(r), form)
	if err != nil {
		s.rec.countExchange(err.code)
		writeIMSError(w, err.status, err.code, err.desc)
		return
	}
	s.rec.countExchange("success")
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tokenResponse{
		TokenType:   "bearer",
		AccessToken: token,
		// Milliseconds, one short of the lifetime, as IMS answers
		// 86399999 for a 24 h token (the CLI output in the README of Adobe's
		// aemcs-api-client-lib).
		ExpiresIn: max(info.ExpiresAt.Sub(info.IssuedAt).Milliseconds()-1, 0),
	})
}

// jwtParts is a decoded, not yet verified, JWT.
type jwtParts struct {
	header       map[string]any
	claims       map[string]any
	signingInput string
	signature    []byte
}

func decodeJWT(raw string) (*jwtParts, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, false
	}
	p := &jwtParts{signingInput: parts[0] + "." + parts[1]}
	for i, dst := range []*map[string]any{&p.header, &p.claims} {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
		if err != nil {
			return nil, false
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // to tell 1700000000 from 1700000000.5 and "1700000000"
		if err := dec.Decode(dst); err != nil || *dst == nil {
			return nil, false
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil {
		return nil, false
	}
	p.signature = sig
	return p, true
}

// intClaim reads an integer claim: present reports whether it exists, ok
// whether it is a JSON integer.
func intClaim(claims map[string]any, name string) (v int64, present, ok bool) {
	raw, present := claims[name]
	if !present {
		return 0, false, false
	}
	n, isNum := raw.(json.Number)
	if !isNum {
		return 0, true, false
	}
	v, err := n.Int64()
	return v, true, err == nil
}

// exchange performs every check of Adobe Stock's Access API Reference, in
// the order a request meets them, and issues a token when all pass.
func (s *Server) exchange(imsBase string, form url.Values) (string, TokenInfo, *exchangeError) {
	clientID, secret, raw := form.Get("client_id"), form.Get("client_secret"), form.Get("jwt_token")
	now := s.now()

	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.clients[clientID]
	switch {
	case clientID == "":
		return "", TokenInfo{}, badRequest("invalid_client", "The client_id parameter is missing")
	case !ok:
		return "", TokenInfo{}, badRequest("invalid_client", "Client ID %q does not exist", clientID)
	}
	if st.NoExchangeJWT {
		return "", TokenInfo{}, &exchangeError{http.StatusUnauthorized, "invalid_client",
			"Client ID does not have the exchange_jwt scope"}
	}
	if !secretMatches(st.secrets, secret) {
		return "", TokenInfo{}, &exchangeError{http.StatusUnauthorized, "invalid_client",
			"The client ID and client secret combination is invalid"}
	}
	if raw == "" {
		return "", TokenInfo{}, badRequest("invalid_token", "JWT is missing (form field jwt_token)")
	}
	p, ok := decodeJWT(raw)
	if !ok {
		return "", TokenInfo{}, badRequest("invalid_token", "JWT cannot be decoded")
	}
	if alg, _ := p.header["alg"].(string); alg != "RS256" {
		return "", TokenInfo{}, badRequest("invalid_signature",
			"The signature does not match the algorithm specified in the JWT header (%q; RS256 expected)", alg)
	}
	if e := checkAudience(p.claims, imsBase, clientID); e != nil {
		return "", TokenInfo{}, e
	}
	exp, present, isInt := intClaim(p.claims, "exp")
	switch {
	case !present:
		return "", TokenInfo{}, badRequest("bad_request", "The JWT has no exp")
	case !isInt:
		return "", TokenInfo{}, badRequest("invalid_token", "The exp field of the JWT is not an integer")
	}
	jti, jtiPresent, jtiInt := intClaim(p.claims, "jti")
	if jtiPresent && !jtiInt {
		return "", TokenInfo{}, badRequest("invalid_token", "The jti field of the JWT is not an integer")
	}
	iss, _ := p.claims["iss"].(string)
	sub, _ := p.claims["sub"].(string)
	if !orgPattern.MatchString(iss) {
		return "", TokenInfo{}, badRequest("bad_request", "The iss field of the JWT is not an organization ID (<id>@AdobeOrg)")
	}
	if !techAcctPattern.MatchString(sub) {
		return "", TokenInfo{}, badRequest("bad_request", "The sub field of the JWT is not a technical account ID (<id>@techacct.adobe.com)")
	}
	if iss != st.Org || sub != st.TechAccount {
		return "", TokenInfo{}, badRequest("invalid_signature",
			"The JWT signature does not match any certificate on record for given iss / sub combination")
	}
	cert := s.signatureMatchesLocked(st, p, now)
	if cert == "" {
		return "", TokenInfo{}, badRequest("invalid_signature",
			"The JWT signature does not match any certificate on record for given iss / sub combination")
	}
	if expAt := time.Unix(exp, 0); now.After(expAt.Add(ClockSkew)) {
		return "", TokenInfo{}, badRequest("invalid_token",
			"JWT expired: exp %s is %s before the IMS clock (%s allowed for clock skew)",
			expAt.UTC().Format(time.RFC3339), now.Sub(expAt).Round(time.Second), ClockSkew)
	}
	scopes, e := metascopes(p.claims, imsBase, st.Metascopes)
	if e != nil {
		return "", TokenInfo{}, e
	}
	if st.RequireJTI {
		if !jtiPresent {
			return "", TokenInfo{}, badRequest("invalid_jti", "The binding requires a JTI, but the jti field is missing")
		}
		for j, until := range st.jtis {
			if now.After(until) {
				delete(st.jtis, j)
			}
		}
		if _, used := st.jtis[jti]; used {
			return "", TokenInfo{}, badRequest("invalid_jti", "The binding requires a JTI, but the jti field was previously used")
		}
	}
	token, info, err := s.issueTokenLocked(st, grantJWT, strings.Join(scopes, ","), cert)
	if err != nil {
		return "", TokenInfo{}, &exchangeError{http.StatusInternalServerError, "internal_error", "Please try again later"}
	}
	if st.RequireJTI {
		st.jtis[jti] = time.Unix(exp, 0).Add(ClockSkew)
	}
	return token, info, nil
}

func secretMatches(secrets []string, got string) bool {
	if got == "" {
		return false
	}
	for _, s := range secrets {
		if subtle.ConstantTimeCompare([]byte(s), []byte(got)) == 1 {
			return true
		}
	}
	return false
}

// checkAudience wants aud = <ims base>/c/<client_id> exactly.
func checkAudience(claims map[string]any, imsBase, clientID string) *exchangeError {
	aud, _ := claims["aud"].(string)
	if aud == "" {
		return badRequest("invalid_client", "The JWT has no aud")
	}
	base, audClient, ok := strings.Cut(aud, "/c/")
	if !ok || base != imsBase {
		return badRequest("invalid_client",
			"The aud field in the JWT (%s) points to a different IMS environment (expected %s/c/%s)", aud, imsBase, clientID)
	}
	if audClient != clientID {
		return badRequest("invalid_client", "The client_id parameter and the aud field in the JWT do not match")
	}
	return nil
}

// metascopes returns the metascope names the JWT asks for, or invalid_scope
// when there are none or one is outside the binding. A metascope claim is
// "<ims base>/s/<name>": true; one naming another IMS environment is no
// metascope of this binding.
func metascopes(claims map[string]any, imsBase string, binding []string) ([]string, *exchangeError) {
	var names []string
	for k, v := range claims {
		if !strings.Contains(k, "/s/") {
			continue
		}
		if b, _ := v.(bool); !b {
			continue
		}
		name, ok := strings.CutPrefix(k, imsBase+"/s/")
		if !ok || !slices.Contains(binding, name) {
			return nil, badRequest("invalid_scope", metascopeMismatch)
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, badRequest("invalid_scope", metascopeMismatch)
	}
	slices.Sort(names)
	return names, nil
}

// signatureMatchesLocked verifies the RS256 signature against each bound,
// unrevoked certificate that is valid now (an expired certificate is the
// classic cause of a JWT that "suddenly" fails, says the Stock API FAQ), and
// returns the fingerprint of the one that verified it ("" for none).
func (s *Server) signatureMatchesLocked(st *clientState, p *jwtParts, now time.Time) string {
	for _, cs := range st.certs {
		if cs.revoked || now.After(cs.cert.NotAfter) || now.Before(cs.cert.NotBefore) {
			continue
		}
		pub, ok := cs.cert.PublicKey.(*rsa.PublicKey)
		if !ok {
			continue
		}
		if jwt.SigningMethodRS256.Verify(p.signingInput, p.signature, pub) == nil {
			return cs.fingerprint
		}
	}
	return ""
}

// handleTokenV3 is POST /ims/token/v3, the OAuth server-to-server
// client_credentials grant (the Developer Console's server-to-server guide):
// expires_in in seconds.
func (s *Server) handleTokenV3(w http.ResponseWriter, r *http.Request) {
	if !requirePOST(w, r) {
		return
	}
	form := readBodyForm(w, r)
	// The fields may also go in the query string (dev-console ims.md).
	for k, vs := range r.URL.Query() {
		if _, ok := form[k]; !ok {
			form[k] = vs
		}
	}
	token, info, err := s.clientCredentials(form)
	if err != nil {
		s.rec.countExchange("oauth_" + err.code)
		writeIMSError(w, err.status, err.code, err.desc)
		return
	}
	s.rec.countExchange("oauth_success")
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tokenResponse{
		TokenType:   "bearer",
		AccessToken: token,
		// Seconds, rounded down from one millisecond short of the
		// lifetime: 86399 for 24 h, as in the Developer Console docs.
		ExpiresIn: int64((info.ExpiresAt.Sub(info.IssuedAt) - time.Millisecond) / time.Second),
	})
}

func (s *Server) clientCredentials(form url.Values) (string, TokenInfo, *exchangeError) {
	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		return "", TokenInfo{}, badRequest("invalid_request", "missing grant_type parameter")
	default:
		return "", TokenInfo{}, badRequest("unsupported_grant_type", "unsupported grant_type %q", gt)
	}
	clientID := form.Get("client_id")
	if clientID == "" {
		return "", TokenInfo{}, badRequest("invalid_request", "missing client_id parameter")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.clients[clientID]
	if !ok {
		return "", TokenInfo{}, badRequest("invalid_client", "invalid client_id parameter")
	}
	if !secretMatches(st.secrets, form.Get("client_secret")) {
		return "", TokenInfo{}, &exchangeError{http.StatusUnauthorized, "invalid_client", "invalid client_secret parameter"}
	}
	if len(st.Scopes) == 0 {
		return "", TokenInfo{}, badRequest("unauthorized_client", "the client_credentials grant is not allowed for this client")
	}
	scope := form.Get("scope")
	if scope == "" {
		return "", TokenInfo{}, badRequest("invalid_scope", "missing scope parameter")
	}
	// A comma-separated list, as Adobe documents it (not OAuth's spaces).
	for _, sc := range strings.Split(scope, ",") {
		if !slices.Contains(st.Scopes, sc) {
			return "", TokenInfo{}, badRequest("invalid_scope", "invalid scope (%s)", sc)
		}
	}
	token, info, err := s.issueTokenLocked(st, grantClient, scope, "")
	if err != nil {
		return "", TokenInfo{}, &exchangeError{http.StatusInternalServerError, "server_error", "Please try again later"}
	}
	return token, info, nil
}
