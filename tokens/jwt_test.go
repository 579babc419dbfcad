package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/imsproxy/imsproxy/config"
)

const okJWTAnswer = `{"token_type":"bearer","access_token":"at-123","expires_in":86399999}`

// exchangedJWT runs one Fetch against a fake IMS and returns the JWT it
// posted, verified with the public key, and its raw payload.
func exchangedJWT(t *testing.T, s *JWTSource) (jwt.MapClaims, map[string]json.RawMessage) {
	t.Helper()
	ims := newFakeIMS(t, 200, okJWTAnswer)
	if s.IMSURL == "" {
		s.IMSURL = ims.URL
	}
	if _, err := s.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	signed := ims.last(t).Form.Get("jwt_token")

	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(signed, claims, func(*jwt.Token) (any, error) { return &testKey().PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(fixedClock), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("the posted JWT does not verify with the public key: %v", err)
	}
	if tok.Header["typ"] != "JWT" {
		t.Errorf("header typ = %v, want JWT", tok.Header["typ"])
	}

	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(signed, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatal(err)
	}
	return claims, raw
}

var jsonInteger = regexp.MustCompile(`^[0-9]+$`)

// checkFreshExpAndJTI asserts what IMS insists on: exp and jti are JSON
// integers (Adobe Stock's Access API Reference: otherwise invalid_token), exp is 5 min ahead, jti fits
// a float64 exactly.
func checkFreshExpAndJTI(t *testing.T, raw map[string]json.RawMessage) {
	t.Helper()
	for _, name := range []string{"exp", "jti"} {
		if !jsonInteger.Match(raw[name]) {
			t.Errorf("%s = %s, want a JSON integer", name, raw[name])
		}
	}
	var exp, jti int64
	_ = json.Unmarshal(raw["exp"], &exp)
	_ = json.Unmarshal(raw["jti"], &jti)
	if want := t0.Add(5 * time.Minute).Unix(); exp != want {
		t.Errorf("exp = %d, want now+5min = %d", exp, want)
	}
	if jti >= 1<<53 {
		t.Errorf("jti = %d, want below 2^53", jti)
	}
}

func TestJWTSource_SignsClaimsIMSAccepts(t *testing.T) {
	s := testJWTSource("")
	s.Metascopes = []string{"ent_user_sdk", " https://ims-na1.adobelogin.com/s/ent_aem_cloud_api ", ""}
	claims, raw := exchangedJWT(t, s)
	checkFreshExpAndJTI(t, raw)

	ims := s.IMSURL
	want := map[string]any{
		"iss":                   s.OrgID,
		"sub":                   s.TechnicalAccountID,
		"aud":                   ims + "/c/" + s.ClientID,
		ims + "/s/ent_user_sdk": true,
		"https://ims-na1.adobelogin.com/s/ent_aem_cloud_api": true,
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %q = %v, want %v", k, claims[k], v)
		}
	}
	if len(raw) != len(want)+2 {
		t.Errorf("payload has claims %v, want exactly %d (the above, exp and jti)", keys(raw), len(want)+2)
	}
}

func TestJWTSource_UsesPayloadClaimsExactlyWithFreshExpAndJTI(t *testing.T) {
	payload := map[string]any{
		"iss": "ORG@AdobeOrg",
		"sub": "TA@techacct.adobe.com",
		"aud": "https://ims-na1.adobelogin.com/c/from-payload",
		"https://ims-na1.adobelogin.com/s/ent_brand_portal_sdk": true,
		"exp":  float64(1600000000), // stale values from the console, replaced
		"jti":  "not-an-integer",
		"note": "kept as is",
	}
	s := testJWTSource("")
	s.Claims = payload
	s.Metascopes = []string{"ignored_when_a_payload_is_given"}
	claims, raw := exchangedJWT(t, s)
	checkFreshExpAndJTI(t, raw)

	for k, v := range payload {
		if k != "exp" && k != "jti" && claims[k] != v {
			t.Errorf("claim %q = %v, want %v from the payload", k, claims[k], v)
		}
	}
	if len(raw) != len(payload) {
		t.Errorf("payload has claims %v, want exactly those of the configured payload", keys(raw))
	}
	if payload["exp"] != float64(1600000000) || payload["jti"] != "not-an-integer" {
		t.Error("Fetch changed the configured payload map")
	}
}

func TestJWTSource_FreshJTIPerExchange(t *testing.T) {
	_, a := exchangedJWT(t, testJWTSource(""))
	_, b := exchangedJWT(t, testJWTSource(""))
	if string(a["jti"]) == string(b["jti"]) {
		t.Errorf("two exchanges sent the same jti %s", a["jti"])
	}
}

func TestJWTSource_PostsFormToExchangeEndpoint(t *testing.T) {
	for _, suffix := range []string{"", "/", "//"} {
		t.Run("IMS URL with suffix "+suffix, func(t *testing.T) {
			ims := newFakeIMS(t, 200, okJWTAnswer)
			s := testJWTSource(ims.URL + suffix)
			if _, err := s.Fetch(context.Background()); err != nil {
				t.Fatal(err)
			}
			r := ims.last(t)
			if r.Method != "POST" || r.Path != "/ims/exchange/jwt" || r.RawQuery != "" {
				t.Errorf("request %s %s?%s, want POST /ims/exchange/jwt with no query", r.Method, r.Path, r.RawQuery)
			}
			if r.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type %q, want application/x-www-form-urlencoded", r.ContentType)
			}
			if got := r.Form.Get("client_id"); got != s.ClientID {
				t.Errorf("client_id = %q", got)
			}
			if got := r.Form.Get("client_secret"); got != s.ClientSecret.Reveal() {
				t.Errorf("client_secret = %q", got)
			}
			if len(r.Form) != 3 || r.Form.Get("jwt_token") == "" {
				t.Errorf("form fields %v, want client_id, client_secret, jwt_token", keys(r.Form))
			}
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(r.Form.Get("jwt_token"), claims); err != nil {
				t.Fatal(err)
			}
			if want := ims.URL + "/c/" + s.ClientID; claims["aud"] != want {
				t.Errorf("aud = %v, want %s (no doubled slash)", claims["aud"], want)
			}
		})
	}
}

func TestJWTSource_NoPrivateKeyFailsBeforeCallingIMS(t *testing.T) {
	ims := newFakeIMS(t, 200, okJWTAnswer)
	s := testJWTSource(ims.URL)
	s.PrivateKey = config.PrivateKey{}
	if _, err := s.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "no private key") {
		t.Errorf("Fetch without a key: error %v, want one saying there is no private key", err)
	}
	if ims.count() != 0 {
		t.Error("IMS was called without a signed JWT")
	}
}

// keys lists a map's keys, sorted, for messages.
func keys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
