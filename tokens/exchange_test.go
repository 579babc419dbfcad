package tokens

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestSources_ReadExpiresInInTheirEndpointsUnit(t *testing.T) {
	// An IMS access token is a JWT carrying its own created_at and
	// expires_in (ms, as strings); used only when the answer has no
	// expires_in.
	imsToken := unsignedJWT(t, map[string]any{
		"created_at": fmt.Sprint(t0.Add(-time.Minute).UnixMilli()),
		"expires_in": "86400000",
	})
	answer := func(token string, expiresIn any) string {
		if expiresIn == nil {
			return fmt.Sprintf(`{"token_type":"bearer","access_token":%q}`, token)
		}
		return fmt.Sprintf(`{"token_type":"bearer","access_token":%q,"expires_in":%v}`, token, expiresIn)
	}
	tests := []struct {
		name   string
		source func(url string) Source
		answer string
		want   time.Time
	}{
		{"jwt counts milliseconds", jwtSource, answer("at", 86399999), t0.Add(86399999 * time.Millisecond)},
		{"jwt accepts a string", jwtSource, answer("at", `"86399999"`), t0.Add(86399999 * time.Millisecond)},
		{"oauth counts seconds", oauthSource, answer("at", 86399), t0.Add(86399 * time.Second)},
		{"oauth accepts a float", oauthSource, answer("at", 3600.0), t0.Add(time.Hour)},
		{"the answer wins over the token's claims", jwtSource, answer(imsToken, 3000), t0.Add(3 * time.Second)},
		{"no expires_in: the token's claims", jwtSource, answer(imsToken, nil), t0.Add(-time.Minute + 24*time.Hour)},
		{"zero expires_in: the token's claims", oauthSource, answer(imsToken, 0), t0.Add(-time.Minute + 24*time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ims := newFakeIMS(t, 200, tt.answer)
			tok, err := tt.source(ims.URL).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !tok.Expiry.Equal(tt.want) {
				t.Errorf("Expiry = %v, want %v", tok.Expiry, tt.want)
			}
			if !tok.Obtained.Equal(t0) {
				t.Errorf("Obtained = %v, want the clock's %v", tok.Obtained, t0)
			}
			if tok.Value == "" {
				t.Error("no token value")
			}
		})
	}
}

func TestSources_RejectAnswersWithoutAUsableLifetime(t *testing.T) {
	for _, body := range []string{
		`{"access_token":"opaque"}`,
		`{"access_token":"opaque","expires_in":-5}`,
		`{"access_token":"opaque","expires_in":"soon"}`,
		`{"access_token":"opaque","expires_in":1e300}`,
	} {
		t.Run(body, func(t *testing.T) {
			ims := newFakeIMS(t, 200, body)
			_, err := oauthSource(ims.URL).Fetch(context.Background())
			if ErrorCode(err) != CodeInvalidResponse {
				t.Errorf("error %v (code %q), want %s", err, ErrorCode(err), CodeInvalidResponse)
			}
		})
	}
}

func TestOAuthSource_PostsClientCredentialsForm(t *testing.T) {
	ims := newFakeIMS(t, 200, `{"access_token":"at","token_type":"bearer","expires_in":86399}`)
	s := testOAuthSource(ims.URL + "/")
	s.Scopes = []string{"openid", " AdobeID ", "", "read_organizations"}
	if _, err := s.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := ims.last(t)
	if r.Method != "POST" || r.Path != "/ims/token/v3" || r.RawQuery != "" {
		t.Errorf("request %s %s?%s, want POST /ims/token/v3 with no query", r.Method, r.Path, r.RawQuery)
	}
	if r.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type %q", r.ContentType)
	}
	want := map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     "oauth-client",
		"client_secret": "p8e-oauth-secret",
		"scope":         "openid,AdobeID,read_organizations",
	}
	for k, v := range want {
		if got := r.Form.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(r.Form) != len(want) {
		t.Errorf("form fields %v, want %v", keys(r.Form), keys(want))
	}
}

func jwtSource(url string) Source   { return testJWTSource(url) }
func oauthSource(url string) Source { return testOAuthSource(url) }
