package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// ErrTokenExpired is returned (wrapped) by StaticSource.Fetch once the fixed
// token's known expiry has passed: only a new token in the configuration
// helps.
var ErrTokenExpired = errors.New("the fixed access token has expired")

// StaticSource serves a fixed token (AUTH=token), such as the AEM local
// development token. When the token is a JWT its expiry is read from its
// payload (IMS created_at + expires_in, or exp), unverified; otherwise the
// expiry is unknown (zero). It is immutable and safe for concurrent use.
type StaticSource struct {
	token Token
	now   func() time.Time
}

// NewStaticSource returns a source of the fixed token value, configured now.
func NewStaticSource(value config.Secret) (*StaticSource, error) {
	return newStaticSource(value, nil)
}

func newStaticSource(value config.Secret, now func() time.Time) (*StaticSource, error) {
	now = clock(now)
	// A token read from a file often ends in a newline; a token never holds
	// white space.
	v := strings.TrimSpace(value.Reveal())
	if v == "" {
		return nil, errors.New("fixed token: the access token is empty")
	}
	created, expiry := tokenTimes(v)
	if created.IsZero() {
		created = now()
	}
	return &StaticSource{token: Token{Value: v, Expiry: expiry, Obtained: created}, now: now}, nil
}

// Fetch implements Source: it returns the fixed token, or an error wrapping
// ErrTokenExpired once its known expiry is near (see usable) or past.
func (s *StaticSource) Fetch(context.Context) (Token, error) {
	// Within the Manager's safety margin the token is as good as expired:
	// it is never sent, and saying so beats "IMS returned a token that is
	// already past".
	now := s.now()
	if t := s.token; !usable(&t, now) {
		when := "expired at"
		if now.Before(t.Expiry) {
			when = "too close to its expiry at"
		}
		return Token{}, fmt.Errorf("fixed token: %s %s: %w", when, t.Expiry.UTC().Format(time.RFC3339), ErrTokenExpired)
	}
	return s.token, nil
}
