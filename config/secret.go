package config

import (
	"crypto/rsa"
	"fmt"
	"log/slog"
)

// redacted is what every credential-bearing value prints as, wherever it ends
// up: fmt verbs, slog attributes, JSON.
const redacted = "[REDACTED]"

// Secret is a string that must never be printed: a client secret, an access
// token, a caller key. Its formatting methods all render "[REDACTED]"; use
// Reveal where the value is really needed (a form field, a header).
type Secret string

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is unset.
func (s Secret) IsZero() bool { return s == "" }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer, so %#v does not leak either.
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter, so no verb (%x, %q, %d...) leaks either.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON, logs).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// PrivateKey holds an RSA private key and, like Secret, never prints it.
type PrivateKey struct{ key *rsa.PrivateKey }

// NewPrivateKey wraps k.
func NewPrivateKey(k *rsa.PrivateKey) PrivateKey { return PrivateKey{key: k} }

// RSA returns the key itself (nil when unset).
func (p PrivateKey) RSA() *rsa.PrivateKey { return p.key }

// IsZero reports whether no key is set.
func (p PrivateKey) IsZero() bool { return p.key == nil }

// String implements fmt.Stringer.
func (p PrivateKey) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (p PrivateKey) GoString() string { return redacted }

// Format implements fmt.Formatter.
func (p PrivateKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (p PrivateKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText implements encoding.TextMarshaler.
func (p PrivateKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }
