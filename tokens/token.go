// Package tokens obtains Adobe IMS access tokens and keeps them fresh: a
// Source per auth kind (JWT exchange, OAuth client credentials, fixed token)
// and a Manager per route that caches, refreshes ahead of expiry, coalesces
// concurrent fetches and backs off when IMS fails.
package tokens

import (
	"context"
	"time"
)

// Token is an IMS access token. It never prints its value.
type Token struct {
	// Value is the access token itself.
	Value string
	// Expiry is when IMS stops accepting it; zero when unknown (a fixed
	// token that is not a JWT).
	Expiry time.Time
	// Obtained is when the token was received (or configured).
	Obtained time.Time
	// ClientID is the client the token was issued to, which a request
	// carrying it must name in x-api-key; "" when not known. It travels
	// with the token so that a credentials reload that changes the client
	// can never pair a token with the other client's key.
	ClientID string
	// FromFleet is set on a token read from the fleet's shared store
	// (SHARE_TOKEN): another replica made the exchange, so this replica's
	// metrics and log must not count one.
	FromFleet bool
}

// String implements fmt.Stringer without revealing the token.
func (t Token) String() string {
	if t.Expiry.IsZero() {
		return "token(no known expiry)"
	}
	return "token(expires " + t.Expiry.UTC().Format(time.RFC3339) + ")"
}

// GoString implements fmt.GoStringer, so %#v does not leak either.
func (t Token) GoString() string { return t.String() }

// Lifetime is how long the token lives from Obtained; 0 when unknown.
func (t Token) Lifetime() time.Duration {
	if t.Expiry.IsZero() {
		return 0
	}
	return t.Expiry.Sub(t.Obtained)
}

// Source obtains a new token. Implementations are safe for concurrent use;
// each call performs one exchange (or returns the fixed token).
type Source interface {
	Fetch(ctx context.Context) (Token, error)
}
