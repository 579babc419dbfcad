package tokens

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/imsproxy/imsproxy/config"
)

// jwtLifetime is how long a signed JWT is valid. It only serves the one
// exchange that follows its signing, so it is short, as Adobe recommends;
// IMS allows about 30 s of clock skew, far less than this.
const jwtLifetime = 5 * time.Minute

// JWTSource obtains tokens by the Service Account (JWT) exchange: every
// Fetch signs a fresh JWT with the private key and exchanges it at
// <IMSURL>/ims/exchange/jwt. Fetch only reads the fields, so concurrent calls
// are safe as long as nobody changes them.
type JWTSource struct {
	IMSURL             string // e.g. https://ims-na1.adobelogin.com; a trailing slash is ignored
	ClientID           string // client_id, and aud = <IMSURL>/c/<ClientID>
	ClientSecret       config.Secret
	OrgID              string // iss, …@AdobeOrg
	TechnicalAccountID string // sub, …@techacct.adobe.com
	PrivateKey         config.PrivateKey
	// Metascopes become claims "<IMSURL>/s/<name>": true; an entry that
	// starts with "http" is already a full claim name and is used as is.
	Metascopes []string
	// Claims, when not nil, is the JWT payload from the Developer Console:
	// used exactly, instead of iss, sub, aud and the metascopes, except exp
	// and jti, which are always set fresh.
	Claims     map[string]any
	HTTPClient *http.Client // nil: http.DefaultClient

	now func() time.Time // nil: time.Now
}

// Fetch implements Source.
func (s *JWTSource) Fetch(ctx context.Context) (Token, error) {
	now := clock(s.now)
	signed, err := s.sign(now())
	if err != nil {
		return Token{}, err
	}
	secret := s.ClientSecret.Reveal()
	tok, err := exchange{
		jwt:      true,
		client:   s.HTTPClient,
		endpoint: baseURL(s.IMSURL) + "/ims/exchange/jwt",
		form: url.Values{
			"client_id":     {s.ClientID},
			"client_secret": {secret},
			"jwt_token":     {signed},
		},
		unit: time.Millisecond, // the JWT exchange counts expires_in in ms
		// The signature alone counts too: with the claims, which are no
		// secret, it makes the JWT whole again.
		secrets: []string{secret, signed, signed[strings.LastIndexByte(signed, '.')+1:]},
		now:     now,
	}.do(ctx)
	if err == nil {
		tok.ClientID = s.ClientID
	}
	return tok, err
}

// sign returns the RS256-signed JWT for an exchange made at now.
func (s *JWTSource) sign(now time.Time) (string, error) {
	key := s.PrivateKey.RSA()
	if key == nil {
		return "", errors.New("sign JWT: no private key configured")
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodRS256, s.claims(now)).SignedString(key)
	if err != nil {
		// The jwt and rsa errors describe the failure, never the key.
		return "", fmt.Errorf("sign JWT: %w", err)
	}
	return signed, nil
}

// claims builds the JWT payload for an exchange made at now.
func (s *JWTSource) claims(now time.Time) jwt.MapClaims {
	c := jwt.MapClaims{}
	if s.Claims != nil {
		maps.Copy(c, s.Claims)
	} else {
		ims := baseURL(s.IMSURL)
		c["iss"] = s.OrgID
		c["sub"] = s.TechnicalAccountID
		c["aud"] = ims + "/c/" + s.ClientID
		for _, m := range s.Metascopes {
			m = strings.TrimSpace(m)
			if m == "" {
				continue
			}
			if !strings.HasPrefix(m, "http") {
				m = ims + "/s/" + m
			}
			c[m] = true
		}
	}
	// Both int64, so they encode as JSON integers: IMS answers invalid_token
	// when exp or jti is not an integer (Adobe Stock's Access API Reference).
	c["exp"] = now.Add(jwtLifetime).Unix()
	c["jti"] = newJTI()
	return c
}

// newJTI returns a random jti, fresh for every JWT: IMS refuses a reused one
// where the binding requires a jti (invalid_jti). It is kept below 2^53 so
// that it stays exact in every JSON consumer that reads numbers as float64
// (JavaScript, Go's encoding/json into any); 53 random bits still make a
// repeat practically impossible.
func newJTI() int64 {
	var b [8]byte
	// crypto/rand.Read never returns an error (Go 1.24+): it crashes instead.
	_, _ = rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:]) & (1<<53 - 1))
}
