package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
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

// Every proxy-made error answer of a route gets exactly one log line
// (SPEC §8), written by Route.record once the answer is out: route,
// request_id, method, path (never the query), status and code, plus what
// the code that decided the answer noted with noteError (why IMS refused,
// which caller, the upstream's error). Answers whose deciding code notes
// nothing (a body too large, a malformed request) still get the line.

// noteError adds msg and attrs to the request's error line. Outside a
// route's request (w has no recorder) the line is logged at once.
func (rt *Route) noteError(w http.ResponseWriter, r *http.Request, level slog.Level, msg string, attrs ...slog.Attr) {
	if rec := recorderOf(w); rec != nil {
		rec.note(level, msg, attrs...)
		return
	}
	rt.log.LogAttrs(r.Context(), level, msg, append(rt.requestAttrs(r, r.Header.Get(requestIDHeader)), attrs...)...)
}

// requestAttrs starts every log line about a request: the route, the
// request id, the method and the path — never the query, where callers
// may put anything.
func (rt *Route) requestAttrs(r *http.Request, id string) []slog.Attr {
	return []slog.Attr{slog.String("route", rt.cfg.Name), slog.String("request_id", id),
		slog.String("method", r.Method), slog.String("path", r.URL.Path)}
}

// errorLine logs the request's error line when the answer is a proxy-made
// error (it carries ErrorHeader) or something was noted: 5xx at warn, the
// rest at info, unless a noted level is higher.
func (rt *Route) errorLine(ctx context.Context, rec *recorder, r *http.Request, id string, status int) {
	var code string
	if v := rec.Header()[ErrorHeader]; len(v) > 0 { // every request passes here: no key canonicalising
		code = v[0]
	}
	if code == "" && !rec.noted() {
		return
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	level = max(level, rec.logLevel)
	msg := rec.logMsg
	if msg == "" {
		msg = "proxy error"
	}
	if !rt.log.Enabled(ctx, level) {
		return
	}
	attrs := append(rt.requestAttrs(r, id), slog.Int("status", status), slog.String("code", code))
	rt.log.LogAttrs(ctx, level, msg, append(attrs, rec.logAttrs...)...)
}
