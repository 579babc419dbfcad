package tokens

import (
	"errors"
	"net/http"
	"strconv"
)

// Codes the proxy itself gives to failures IMS did not name. Together with
// the IMS codes below they form the bounded set ErrorCode returns.
const (
	// CodeUnreachable: no HTTP answer from IMS (DNS, connection, TLS,
	// timeout, or the answer was cut off).
	CodeUnreachable = "ims_unreachable"
	// CodeInvalidResponse: IMS answered 2xx but with no usable token (not
	// JSON, no access_token, no lifetime).
	CodeInvalidResponse = "invalid_response"
	// CodeTokenExpired: a fixed token (AUTH=token) is past its expiry.
	CodeTokenExpired = "token_expired"
	// CodeOther: any other failure, e.g. a JWT that could not be signed.
	CodeOther = "other"
)

// IMSError is a failed token request: an error answer from IMS (StatusCode
// and the IMS error code), a 2xx answer without a usable token, or no answer
// at all (StatusCode 0, Code CodeUnreachable, Err the cause). Its message
// never contains a credential: the description IMS sent is scrubbed of the
// secrets of the request.
type IMSError struct {
	StatusCode  int    // HTTP status; 0 when IMS was not reached
	Code        string // IMS "error" (or "error_code"), else http_<status>, ims_unreachable, invalid_response
	Description string // IMS "error_description" (or "message"), or what was wrong with the answer
	Err         error  // the transport error behind ims_unreachable; nil otherwise
	// JWTExchange is true when the failed request was the JWT exchange
	// (/ims/exchange/jwt), false for OAuth client credentials.
	JWTExchange bool
}

// Error implements error, e.g. "IMS answered 400 invalid_signature: ...".
func (e *IMSError) Error() string {
	var msg string
	if e.StatusCode == 0 {
		msg = "IMS unreachable"
		if e.Err != nil {
			msg += ": " + e.Err.Error()
		}
		return msg
	}
	msg = "IMS answered " + strconv.Itoa(e.StatusCode) + " " + e.Code
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return msg
}

// Unwrap returns the transport error, so errors.Is(err, context.DeadlineExceeded)
// works on an IMS that did not answer in time.
func (e *IMSError) Unwrap() error { return e.Err }

// ims is the table of codes IMS is known to send (Adobe Stock's Access API
// Reference for the JWT exchange; RFC 6749 §5.2 and §4.1.2.1 for
// /ims/token/v3, whose error codes Adobe does not document) with the likely
// cause to tell the operator. invalid_client is absent: its cause depends
// on the status (see IMSError.Hint).
var ims = map[string]struct {
	hint string
}{
	"invalid_token": {hint: "IMS could not use the JWT: it was undecodable or had already expired when IMS checked it; " +
		"check that this host's clock is right (IMS allows about 30 s of skew)"},
	"invalid_signature": {hint: "the private key does not match any certificate uploaded for this client: " +
		"has the certificate expired or been rotated? Download the current credentials and update the private key"},
	// A jti is fresh for every exchange, so a "reused jti" is a fluke or a
	// replay that a new JWT cures.
	"invalid_jti": {hint: "IMS rejected the JWT's jti (missing or already used); a new JWT is sent on retry"},
	"invalid_scope": {hint: "the metascopes in the JWT are not those bound to this client: " +
		"check METASCOPES (or JWT_PAYLOAD) against the credential in the Adobe Developer Console"},
	"bad_request": {hint: "IMS decoded the JWT but found sub, iss, exp or jti badly formatted: " +
		"check ORG_ID (…@AdobeOrg) and TECHNICAL_ACCOUNT_ID (…@techacct.adobe.com), or JWT_PAYLOAD"},
	"invalid_request":         {hint: "IMS found the token request malformed or missing a field: check CLIENT_ID, CLIENT_SECRET and SCOPES"},
	"invalid_grant":           {hint: "IMS refused the grant: the credential may have been converted, revoked or deleted in the Adobe Developer Console"},
	"unauthorized_client":     {hint: "this client may not use this grant type: check that the credential is of the kind AUTH names (jwt or oauth)"},
	"unsupported_grant_type":  {hint: "IMS does not offer this grant type for this client: check AUTH (jwt or oauth) against the credential's kind"},
	"internal_error":          {hint: "IMS had an internal problem; the exchange is retried"},
	"server_error":            {hint: "IMS had an internal problem; the exchange is retried"},
	"temporarily_unavailable": {hint: "IMS is temporarily unavailable; the exchange is retried"},
}

// Hint tells the operator the likely cause of the failure and what to check.
func (e *IMSError) Hint() string {
	if e.Code == "invalid_client" {
		// Adobe Stock's Access API Reference: the same code means two different things by status.
		if e.StatusCode == http.StatusUnauthorized {
			if !e.JWTExchange {
				return "the client id and client secret do not match (was the secret rotated?): " +
					"copy both from the OAuth server-to-server credential in the Adobe Developer Console"
			}
			return "the client id and client secret do not match (was the secret rotated?), " +
				"or the client lacks the exchange_jwt scope (ask Adobe support)"
		}
		if !e.JWTExchange {
			return "IMS does not know this client id: check CLIENT_ID and IMS_URL (production vs stage)"
		}
		return "IMS does not know this client id, or the JWT's aud names another client or another IMS environment: " +
			"check CLIENT_ID and IMS_URL (production vs stage)"
	}
	if e.Code == "invalid_scope" && !e.JWTExchange {
		return "the requested scopes are not those bound to this client: " +
			"check SCOPES against the OAuth server-to-server credential in the Adobe Developer Console"
	}
	if c, ok := ims[e.Code]; ok {
		return c.hint
	}
	switch ErrorCode(e) {
	case CodeUnreachable:
		return "IMS could not be reached: check DNS, the firewall, HTTPS_PROXY/NO_PROXY and CA_FILE for a TLS-intercepting proxy; the exchange is retried"
	case CodeInvalidResponse:
		return "IMS answered without a usable token; a proxy between here and IMS may have rewritten the answer; the exchange is retried"
	case "http_3xx":
		return "IMS answered with a redirect, which is not followed because the request carries the client secret: check IMS_URL (scheme and host)"
	case "http_429":
		return "IMS is throttling token requests for this client; the exchange is retried with backoff"
	case "http_5xx":
		return "IMS (or a proxy in front of it) failed; the exchange is retried"
	}
	return "IMS refused the token request with a code imsproxy does not know; read its description and check the credentials"
}

// ErrorCode returns a short code for err from a fixed, bounded set, fit for
// a Prometheus label and the "token_unavailable" message: "" for nil; a known
// IMS code (invalid_client, invalid_token, invalid_signature, invalid_jti,
// invalid_scope, bad_request, internal_error, and the OAuth codes of RFC
// 6749); ims_unreachable; invalid_response; http_3xx, http_4xx, http_429 or
// http_5xx for other answers; token_expired; other.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var ie *IMSError
	switch {
	case errors.As(err, &ie):
	case errors.Is(err, ErrTokenExpired):
		return CodeTokenExpired
	default:
		return CodeOther
	}
	if _, ok := ims[ie.Code]; ok || ie.Code == "invalid_client" {
		return ie.Code
	}
	switch s := ie.StatusCode; {
	case ie.Code == CodeUnreachable || s == 0:
		return CodeUnreachable
	case s == http.StatusTooManyRequests:
		return "http_429"
	case s >= 500:
		return "http_5xx"
	case s >= 400:
		return "http_4xx"
	case s >= 300:
		return "http_3xx"
	}
	// A 2xx that is not a token, whatever it called itself.
	return CodeInvalidResponse
}
