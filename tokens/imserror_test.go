package tokens

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestSources_TurnIMSErrorsIntoIMSError(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantCode  string // IMSError.Code
		wantLabel string // ErrorCode
		wantDesc  string // part of IMSError.Description
		wantHint  string // part of Hint
	}{
		{"400 invalid_client", 400, `{"error":"invalid_client","error_description":"invalid client_id parameter"}`,
			"invalid_client", "invalid_client", "invalid client_id parameter", "another IMS environment"},
		{"401 invalid_client", 401, `{"error":"invalid_client","error_description":"invalid client_secret parameter"}`,
			"invalid_client", "invalid_client", "client_secret", "exchange_jwt"},
		{"invalid_token", 400, `{"error":"invalid_token","error_description":"JWT token is expired"}`,
			"invalid_token", "invalid_token", "expired", "clock"},
		{"invalid_signature", 400, `{"error":"invalid_signature","error_description":"signature does not match"}`,
			"invalid_signature", "invalid_signature", "signature", "certificate"},
		{"invalid_jti", 400, `{"error":"invalid_jti","error_description":"jti reused"}`,
			"invalid_jti", "invalid_jti", "jti", "jti"},
		{"invalid_scope", 400, `{"error":"invalid_scope","error_description":"The metascopes in the JWT are not a subset of the metascopes in the binding."}`,
			"invalid_scope", "invalid_scope", "metascopes", "METASCOPES"},
		{"bad_request", 400, `{"error":"bad_request","error_description":"bad sub"}`,
			"bad_request", "bad_request", "bad sub", "TECHNICAL_ACCOUNT_ID"},
		{"internal_error", 500, `{"error":"internal_error","error_description":"Please try again later"}`,
			"internal_error", "internal_error", "try again", "retried"},
		{"gateway shape", 403, `{"error_code":"403003","message":"Api Key is invalid"}`,
			"403003", "http_4xx", "Api Key is invalid", "does not know"},
		{"unknown code", 400, `{"error":"brand_new_code","error_description":"new"}`,
			"brand_new_code", "http_4xx", "new", "does not know"},
		{"error that is an object", 400, `{"error":{"code":7}}`,
			"http_400", "http_4xx", "", "does not know"},
		{"HTML from a proxy", 502, `<html>Bad Gateway</html>`,
			"http_502", "http_5xx", "not JSON", "failed"},
		{"empty 400", 400, ``, "http_400", "http_4xx", "empty answer", "does not know"},
		{"throttled", 429, ``, "http_429", "http_429", "empty answer", "throttling"},
		{"error on the success path", 200, `{"error":"invalid_scope","error_description":"not a subset"}`,
			"invalid_scope", "invalid_scope", "not a subset", "METASCOPES"},
		{"unknown error on the success path", 200, `{"error":"odd"}`,
			"odd", "invalid_response", "", "without a usable token"},
		{"200 without a token", 200, `{"token_type":"bearer","expires_in":86399999}`,
			"invalid_response", "invalid_response", "no access_token", "without a usable token"},
		{"200 not JSON", 200, `token please`, "invalid_response", "invalid_response", "not JSON", "without a usable token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ims := newFakeIMS(t, tt.status, tt.body)
			_, err := testJWTSource(ims.URL).Fetch(context.Background())
			var ie *IMSError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v (%T), want an *IMSError", err, err)
			}
			if ie.StatusCode != tt.status || ie.Code != tt.wantCode {
				t.Errorf("status %d code %q, want %d %q", ie.StatusCode, ie.Code, tt.status, tt.wantCode)
			}
			if !strings.Contains(ie.Description, tt.wantDesc) {
				t.Errorf("description %q, want it to contain %q", ie.Description, tt.wantDesc)
			}
			if got := ErrorCode(err); got != tt.wantLabel {
				t.Errorf("ErrorCode = %q, want %q", got, tt.wantLabel)
			}
			if h := ie.Hint(); !strings.Contains(h, tt.wantHint) {
				t.Errorf("Hint %q, want it to mention %q", h, tt.wantHint)
			}
			wantMsg := fmt.Sprintf("IMS answered %d %s", tt.status, tt.wantCode)
			if !strings.HasPrefix(err.Error(), wantMsg) {
				t.Errorf("message %q, want it to start with %q", err.Error(), wantMsg)
			}
		})
	}
}

func TestIMSError_MessageFormat(t *testing.T) {
	e := &IMSError{StatusCode: 400, Code: "invalid_signature", Description: "no match"}
	if got, want := e.Error(), "IMS answered 400 invalid_signature: no match"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e.Description = ""
	if got, want := e.Error(), "IMS answered 400 invalid_signature"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestSources_UnreachableIMS(t *testing.T) {
	_, err := testOAuthSource(closedURL(t)).Fetch(context.Background())
	var ie *IMSError
	if !errors.As(err, &ie) || ie.Code != CodeUnreachable || ie.StatusCode != 0 {
		t.Fatalf("error %#v, want an *IMSError with code %s and status 0", err, CodeUnreachable)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Errorf("error %v does not wrap the transport error", err)
	}
	if ErrorCode(err) != CodeUnreachable {
		t.Errorf("ErrorCode %q, want %s", ErrorCode(err), CodeUnreachable)
	}
	if !strings.HasPrefix(err.Error(), "IMS unreachable: ") || !strings.Contains(ie.Hint(), "HTTPS_PROXY") {
		t.Errorf("message %q, hint %q", err.Error(), ie.Hint())
	}
}

func TestSources_CanceledFetchWrapsTheCancellation(t *testing.T) {
	ims := newFakeIMS(t, 200, okJWTAnswer)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := testJWTSource(ims.URL).Fetch(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v: want one wrapping context.Canceled", err)
	}
}

func TestSources_DoNotFollowRedirects(t *testing.T) {
	elsewhere := newFakeIMS(t, 200, okJWTAnswer)
	ims := newFakeIMSFunc(t, func(w http.ResponseWriter, r *http.Request, _ url.Values) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	})
	_, err := testJWTSource(ims.URL).Fetch(context.Background())
	if ErrorCode(err) != "http_3xx" {
		t.Errorf("error %v (code %q), want http_3xx", err, ErrorCode(err))
	}
	if elsewhere.count() != 0 {
		t.Error("the redirect was followed: the client secret went to another server")
	}
}

func TestErrorCode_IsBounded(t *testing.T) {
	// The codes ErrorCode's documentation promises.
	allowed := map[string]bool{}
	for _, c := range []string{"invalid_client", "invalid_token", "invalid_signature", "invalid_jti", "invalid_scope",
		"bad_request", "invalid_request", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
		"internal_error", "server_error", "temporarily_unavailable", CodeUnreachable, CodeInvalidResponse,
		"http_3xx", "http_4xx", "http_429", "http_5xx", CodeTokenExpired, CodeOther} {
		allowed[c] = true
	}
	var errs []error
	for _, status := range []int{0, 200, 204, 301, 400, 401, 403, 404, 418, 429, 500, 502, 503, 599} {
		for _, code := range []string{"", "invalid_client", "invalid_scope", "internal_error", "http_418",
			"403003", "ims_unreachable", "invalid_response", "weird code with spaces", strings.Repeat("x", 500)} {
			errs = append(errs, &IMSError{StatusCode: status, Code: code})
		}
	}
	errs = append(errs, errors.New("boom"), fmt.Errorf("route stock: %w", &IMSError{StatusCode: 401, Code: "invalid_client"}),
		fmt.Errorf("x: %w", ErrTokenExpired), context.DeadlineExceeded)
	for _, err := range errs {
		if c := ErrorCode(err); !allowed[c] {
			t.Errorf("ErrorCode(%v) = %q, not one of the documented codes", err, c)
		}
	}
	if ErrorCode(nil) != "" {
		t.Error(`ErrorCode(nil) != ""`)
	}
	if got := ErrorCode(fmt.Errorf("route stock: %w", &IMSError{StatusCode: 401, Code: "invalid_client"})); got != "invalid_client" {
		t.Errorf("ErrorCode of a wrapped IMSError = %q, want invalid_client", got)
	}
}

// A 401 invalid_client from /ims/token/v3 cannot be about the exchange_jwt
// scope: that hint belongs to the JWT exchange only.
func TestIMSError_InvalidClientHintDependsOnExchange(t *testing.T) {
	ims := newFakeIMS(t, 401, `{"error":"invalid_client","error_description":"invalid client_secret parameter"}`)
	for _, tt := range []struct {
		name string
		src  Source
		jwt  bool
	}{
		{"jwt", testJWTSource(ims.URL), true},
		{"oauth", testOAuthSource(ims.URL), false},
	} {
		_, err := tt.src.Fetch(context.Background())
		var ie *IMSError
		if !errors.As(err, &ie) || ie.JWTExchange != tt.jwt {
			t.Fatalf("%s: %v, want an *IMSError with JWTExchange %v", tt.name, err, tt.jwt)
		}
		if got := strings.Contains(ie.Hint(), "exchange_jwt"); got != tt.jwt {
			t.Errorf("%s: hint %q mentions exchange_jwt: %v, want %v", tt.name, ie.Hint(), got, tt.jwt)
		}
	}
}

// The hints of invalid_client (not 401) and invalid_scope name what the
// route's kind of credential has: an OAuth route has no JWT, no aud and no
// metascopes.
func TestIMSError_ScopeAndUnknownClientHintsFollowTheCredential(t *testing.T) {
	for _, tc := range []struct {
		body, jwtWants, oauthWants, oauthLacks string
	}{
		{`{"error":"invalid_scope","error_description":"invalid scope"}`, "check METASCOPES", "check SCOPES", "METASCOPES"},
		{`{"error":"invalid_client","error_description":"unknown client"}`, "the JWT's aud", "check CLIENT_ID", "JWT"},
	} {
		ims := newFakeIMS(t, 400, tc.body)
		for _, src := range []struct {
			name        string
			src         Source
			want, lacks string
		}{
			{"jwt", testJWTSource(ims.URL), tc.jwtWants, ""},
			{"oauth", testOAuthSource(ims.URL), tc.oauthWants, tc.oauthLacks},
		} {
			_, err := src.src.Fetch(context.Background())
			var ie *IMSError
			if !errors.As(err, &ie) {
				t.Fatalf("%s: %v, want an *IMSError", src.name, err)
			}
			if h := ie.Hint(); !strings.Contains(h, src.want) || (src.lacks != "" && strings.Contains(h, src.lacks)) {
				t.Errorf("%s %s: hint %q, want %q without %q", src.name, ie.Code, h, src.want, src.lacks)
			}
		}
	}
}
