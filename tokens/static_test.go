package tokens

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

func TestStaticSource_LearnsExpiryFromTheToken(t *testing.T) {
	created := t0.Add(-time.Hour)
	ms := created.UnixMilli()
	padded := func(tok string) string {
		// The same token with the base64 padding some encoders keep.
		parts := strings.Split(tok, ".")
		b, _ := base64.RawURLEncoding.DecodeString(parts[1])
		parts[1] = base64.URLEncoding.EncodeToString(b)
		return strings.Join(parts, ".")
	}
	imsStrings := unsignedJWT(t, map[string]any{"type": "access_token", "created_at": strconv.FormatInt(ms, 10), "expires_in": "86400000"})
	tests := []struct {
		name         string
		token        string
		wantObtained time.Time
		wantExpiry   time.Time
	}{
		{"IMS claims as strings", imsStrings, created, created.Add(24 * time.Hour)},
		{"IMS claims as numbers", unsignedJWT(t, map[string]any{"created_at": ms, "expires_in": 86400000}), created, created.Add(24 * time.Hour)},
		{"padded base64", padded(imsStrings), created, created.Add(24 * time.Hour)},
		{"standard exp", unsignedJWT(t, map[string]any{"exp": t0.Add(time.Hour).Unix()}), t0, t0.Add(time.Hour)},
		{"IMS claims win over exp", unsignedJWT(t, map[string]any{"created_at": ms, "expires_in": 86400000, "exp": 1}), created, created.Add(24 * time.Hour)},
		{"opaque token", "opaque-token-value", t0, time.Time{}},
		{"JWT without times", unsignedJWT(t, map[string]any{"sub": "x"}), t0, time.Time{}},
		{"three parts, not base64", "a.!!!.c", t0, time.Time{}},
		{"trailing newline from a file", "opaque\n", t0, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newStaticSource(config.Secret(tt.token), fixedClock)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.Value != strings.TrimSpace(tt.token) {
				t.Errorf("Value = %q, want the configured token", tok.Value)
			}
			if !tok.Obtained.Equal(tt.wantObtained) || !tok.Expiry.Equal(tt.wantExpiry) {
				t.Errorf("Obtained %v Expiry %v, want %v %v", tok.Obtained, tok.Expiry, tt.wantObtained, tt.wantExpiry)
			}
		})
	}
}

func TestStaticSource_ExpiredTokenIsAnError(t *testing.T) {
	tok := unsignedJWT(t, map[string]any{"created_at": strconv.FormatInt(t0.Add(-25*time.Hour).UnixMilli(), 10), "expires_in": "86400000"})
	s, err := newStaticSource(config.Secret(tok), fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Fetch(context.Background())
	if !errors.Is(err, ErrTokenExpired) || ErrorCode(err) != CodeTokenExpired {
		t.Errorf("error %v (code %q): want ErrTokenExpired, %s", err, ErrorCode(err), CodeTokenExpired)
	}
}

func TestStaticSource_RejectsEmptyToken(t *testing.T) {
	if _, err := NewStaticSource(config.Secret(" \n")); err == nil {
		t.Error("an empty token was accepted")
	}
}
