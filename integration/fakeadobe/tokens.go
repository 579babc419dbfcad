package fakeadobe

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenState is what the emulator makes of a presented access token.
type TokenState string

// Token states.
const (
	TokenNone    TokenState = "none"    // no token was presented
	TokenValid   TokenState = "valid"   // issued here, unexpired, unrevoked
	TokenExpired TokenState = "expired" // issued here, past its lifetime
	TokenRevoked TokenState = "revoked" // issued here, revoked by a test
	TokenInvalid TokenState = "invalid" // not a token this emulator issued
)

// TokenInfo describes an access token. It never holds the token itself.
type TokenInfo struct {
	// ID is the token's "id" claim, unique per token; "" when invalid.
	ID       string `json:"id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Org      string `json:"org,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	Grant    string `json:"grant,omitempty"` // "jwt_exchange" or "client_credentials"
	// Certificate is the Fingerprint of the certificate whose key signed
	// the JWT this token was exchanged for ("" for client credentials), so
	// a test can tell which key a rotating client used.
	Certificate string     `json:"certificate,omitempty"`
	State       TokenState `json:"state"`
	IssuedAt    time.Time  `json:"issued_at,omitzero"`
	ExpiresAt   time.Time  `json:"expires_at,omitzero"`
}

type tokenRecord struct {
	info    TokenInfo
	revoked bool
}

// Grants, as recorded in TokenInfo.Grant.
const (
	grantJWT    = "jwt_exchange"
	grantClient = "client_credentials"
)

// issueToken mints an IMS-style access token: a JWT signed by the emulator
// whose created_at and expires_in claims are strings of milliseconds
// (as @adobe/aio-lib-ims reads them). cert is the fingerprint of the certificate that
// verified the exchanged JWT, if any. Call with s.mu held.
func (s *Server) issueTokenLocked(st *clientState, grant, scope, cert string) (string, TokenInfo, error) {
	now := s.now()
	s.pruneTokensLocked(now)
	s.tokenSeq++
	rnd := make([]byte, 8)
	_, _ = rand.Read(rnd)
	id := fmt.Sprintf("%d_%s%04x_ue1", now.UnixMilli(), hex.EncodeToString(rnd), s.tokenSeq&0xffff)
	claims := jwt.MapClaims{
		"id":         id,
		"type":       "access_token",
		"client_id":  st.ID,
		"user_id":    st.TechAccount,
		"as":         s.opts.Region,
		"aa_id":      st.TechAccount,
		"ctp":        0,
		"fg":         strings.ToUpper(hex.EncodeToString(rnd[:4])) + "====",
		"moi":        hex.EncodeToString(rnd[4:]),
		"pba":        "MedSecNoEV,LowSec",
		"created_at": strconv.FormatInt(now.UnixMilli(), 10),
		"expires_in": strconv.FormatInt(s.lifetime.Milliseconds(), 10),
		"scope":      scope,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	keyID := strings.ReplaceAll(s.opts.Region, "-", "_") + "-key-at-1"
	t.Header["kid"] = keyID
	t.Header["x5u"] = keyID + ".cer"
	t.Header["itt"] = "at"
	signed, err := t.SignedString(s.signKey)
	if err != nil {
		return "", TokenInfo{}, fmt.Errorf("sign access token: %w", err)
	}
	info := TokenInfo{
		ID: id, ClientID: st.ID, Org: st.Org, UserID: st.TechAccount, Grant: grant, Certificate: cert,
		State: TokenValid, IssuedAt: now, ExpiresAt: now.Add(s.lifetime),
	}
	s.tokens[id] = &tokenRecord{info: info}
	return signed, info, nil
}

// pruneTokensLocked forgets tokens an hour past their expiry, so a
// long-running emulator with 3 s tokens does not grow without bound.
func (s *Server) pruneTokensLocked(now time.Time) {
	for id, rec := range s.tokens {
		if now.Sub(rec.info.ExpiresAt) > time.Hour {
			delete(s.tokens, id)
		}
	}
}

// LookupToken says what the emulator makes of an access token: whether it
// issued it, to whom, and whether it is still valid.
func (s *Server) LookupToken(raw string) TokenInfo {
	if raw == "" {
		return TokenInfo{State: TokenNone}
	}
	parsed, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return &s.signKey.PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		return TokenInfo{State: TokenInvalid}
	}
	claims, _ := parsed.Claims.(jwt.MapClaims)
	id, _ := claims["id"].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tokens[id]
	if !ok {
		return TokenInfo{State: TokenInvalid}
	}
	info := rec.info
	switch {
	case rec.revoked:
		info.State = TokenRevoked
	case !s.now().Before(info.ExpiresAt):
		info.State = TokenExpired
	default:
		info.State = TokenValid
	}
	return info
}

// RevokeTokens revokes every token issued so far and returns how many were
// still valid. Tokens issued afterwards work.
func (s *Server) RevokeTokens() int { return s.revokeWhere(func(*tokenRecord) bool { return true }) }

// RevokeClientTokens revokes the tokens issued to one client.
func (s *Server) RevokeClientTokens(clientID string) int {
	return s.revokeWhere(func(r *tokenRecord) bool { return r.info.ClientID == clientID })
}

// RevokeToken revokes one token; false when the emulator did not issue it.
func (s *Server) RevokeToken(raw string) bool {
	info := s.LookupToken(raw)
	if info.ID == "" {
		return false
	}
	s.revokeWhere(func(r *tokenRecord) bool { return r.info.ID == info.ID })
	return true
}

func (s *Server) revokeWhere(match func(*tokenRecord) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, rec := range s.tokens {
		if match(rec) && !rec.revoked {
			if now.Before(rec.info.ExpiresAt) {
				n++
			}
			rec.revoked = true
		}
	}
	return n
}

// bearer extracts the token of an "Authorization: Bearer" header; ok is
// false when the header is absent, present is true when there was one at
// all (even malformed, which makes the token invalid).
func bearer(h []string) (token string, present bool) {
	if len(h) == 0 {
		return "", false
	}
	if len(h) > 1 {
		return "", true
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}
