package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Error codes of the answers the proxy makes itself (SPEC §7).
const (
	CodeUnauthorizedCaller  = "unauthorized_caller"
	CodeForbidden           = "forbidden"
	CodeLicensingDisabled   = "licensing_disabled"
	CodeEditorialUseOnly    = "editorial_use_only"
	CodeBodyTooLarge        = "body_too_large"
	CodeLicenseLimitReached = "license_limit_reached"
	CodeUpstreamUnreachable = "upstream_unreachable"
	CodeTokenUnavailable    = "token_unavailable"
	CodeUpstreamTimeout     = "upstream_timeout"
)

// ErrorHeader names the header that marks an answer made by the proxy, so a
// caller can tell it from the upstream's own errors (which pass unchanged).
const ErrorHeader = "X-Imsproxy-Error"

// errorBody is the JSON of every proxy-made error.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Route   string `json:"route"`
}

// writeError answers with a proxy-made error: status, the JSON body of
// SPEC §7 and X-Imsproxy-Error. message is one sentence telling the caller
// what to do; it must never carry a secret.
func writeError(w http.ResponseWriter, status int, code, message, route string) {
	body, _ := json.Marshal(errorBody{Error: code, Message: message, Route: route})
	h := w.Header()
	// An error replaces whatever the upstream might have announced.
	h.Del("Content-Encoding")
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set(ErrorHeader, code)
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// retryAfterSeconds renders d for Retry-After: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}
