package tokens

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// tokenTimes reads when a JWT access token was created and when it expires
// from its payload, without verifying the signature: it is only used to
// learn an expiry, never to trust the token. IMS tokens carry created_at and
// expires_in in milliseconds, as strings (aio-lib-ims computes their expiry
// as created_at + expires_in); other JWTs carry the standard exp, in
// seconds. created is zero when the token does not say; both are zero when
// the value is not a JWT or says neither.
func tokenTimes(value string) (created, expiry time.Time) {
	parts := strings.Split(value, ".")
	if len(parts) != 3 {
		return time.Time{}, time.Time{}
	}
	// Some encoders keep the base64 padding that JWTs leave out.
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, time.Time{}
	}
	var c struct {
		CreatedAt lenientInt `json:"created_at"`
		ExpiresIn lenientInt `json:"expires_in"`
		Exp       lenientInt `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return time.Time{}, time.Time{}
	}
	if life, ok := lifetime(c.ExpiresIn, time.Millisecond); ok && c.CreatedAt > 0 {
		created = time.UnixMilli(int64(c.CreatedAt))
		return created, created.Add(life)
	}
	if c.Exp > 0 {
		return time.Time{}, time.Unix(int64(c.Exp), 0)
	}
	return time.Time{}, time.Time{}
}
