package route

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/tokens"
)

// Codes of the answers the proxy makes itself. Answers from the upstream,
// errors included, pass through unchanged and carry none of them.
const (
	CodeUnauthorizedCaller = "unauthorized_caller"
	CodeForbidden          = "forbidden"
	CodeLicensingDisabled  = "licensing_disabled"
	CodeEditorialUseOnly   = "editorial_use_only"
	// CodeCrossSiteRequest: a browser sent the request for another
	// site's page; CodeHostNotAllowed: its Host does not name this
	// machine (DNS rebinding).
	CodeCrossSiteRequest = "cross_site_request"
	CodeHostNotAllowed   = "host_not_allowed"
	// CodeAuditUnavailable: the audit line of a license could not be
	// written, so the license was not requested.
	CodeAuditUnavailable    = "audit_unavailable"
	CodeBodyTooLarge        = "body_too_large"
	CodeLicenseLimitReached = "license_limit_reached"
	// CodeLicenseLimitUnavailable: the daily license count could not be
	// checked, so the license was not requested.
	CodeLicenseLimitUnavailable = "license_limit_unavailable"
	CodeUpstreamUnreachable     = "upstream_unreachable"
	CodeTokenUnavailable        = "token_unavailable"
	CodeUpstreamTimeout         = "upstream_timeout"
	CodeBadRequest              = "bad_request"
	CodeMethodNotAllowed        = "method_not_allowed"
	CodeNotFound                = "not_found"
	CodeInternal                = "internal_error"
)

// ErrorHeader marks an answer made by the proxy, so that a caller can tell
// it from the upstream's own errors.
const ErrorHeader = "X-Imsproxy-Error"

// StatusClientClosed is recorded (never really sent) when the caller went
// away before an answer, as nginx does.
const StatusClientClosed = 499

// errorBody is the JSON of every proxy-made error.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Route   string `json:"route"`
}

// Error answers r with an error the proxy makes itself: status, the body
// {"error": code, "message": message, "route": <route>} and ErrorHeader.
// message is one sentence telling the caller what to do; it must never
// carry a secret. The request's error line (written when the answer is
// out) records code.
func Error(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	name := ""
	if st := from(r.Context()); st != nil {
		name = st.route.cfg.Name
	}
	WriteError(w, status, code, message, name)
}

// WriteError is Error outside a route's request (the admin listener names
// itself as route).
func WriteError(w http.ResponseWriter, status int, code, message, route string) {
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

// RetryAfter sets Retry-After to d in whole seconds, at least 1.
func RetryAfter(w http.ResponseWriter, d time.Duration) {
	s := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(s, 1), 10))
}

// Note adds msg and attrs to the request's one error line: the first
// message noted stays, the level is the highest asked for, and an
// attribute whose key is already there is dropped (the line must stay
// valid JSON for a reader that keeps the last of duplicate keys). Outside
// a route the line is logged at once to the default logger.
func Note(r *http.Request, level slog.Level, msg string, attrs ...slog.Attr) {
	st := from(r.Context())
	if st == nil {
		slog.LogAttrs(r.Context(), level, msg, attrs...)
		return
	}
	note(st, level, msg, attrs...)
}

func note(st *state, level slog.Level, msg string, attrs ...slog.Attr) {
	if st.logMsg == "" {
		st.logMsg = msg
	}
	st.logLevel = max(st.logLevel, level)
	for _, a := range attrs {
		if !slices.ContainsFunc(st.logAttrs, func(b slog.Attr) bool { return b.Key == a.Key }) {
			st.logAttrs = append(st.logAttrs, a)
		}
	}
}

// Log writes a line about the request now, with its route, request id,
// method, path and caller, then attrs.
func Log(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	st := from(ctx)
	if st == nil {
		slog.LogAttrs(ctx, level, msg, attrs...)
		return
	}
	if st.route.log.Enabled(ctx, level) {
		st.route.log.LogAttrs(ctx, level, msg, append(st.attrs(), attrs...)...)
	}
}

// ID is the request's id (X-Request-Id); "" outside a route.
func ID(r *http.Request) string {
	if st := from(r.Context()); st != nil {
		return st.id
	}
	return ""
}

// Config is the configuration of the request's route; nil outside a route.
func Config(r *http.Request) *config.Route {
	if st := from(r.Context()); st != nil {
		return st.route.cfg
	}
	return nil
}

// SetCaller records who is calling (from the callers file), for the
// stages after the check and every log line about the request.
func SetCaller(r *http.Request, c *config.Caller) {
	if st := from(r.Context()); st != nil {
		st.caller = c
	}
}

// Caller is who is calling; nil without a callers file.
func Caller(r *http.Request) *config.Caller {
	if st := from(r.Context()); st != nil {
		return st.caller
	}
	return nil
}

// RemoteIP is the caller's IP address, for logs and the audit log.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// UpstreamError answers a request whose round trip to the upstream failed
// (the reverse proxy's ErrorHandler, the editorial lookup): 499 when the
// caller went away, 503 token_unavailable when there was no token to send,
// 413 when the body was over MAX_BODY_BYTES, 504 when the upstream did not
// answer within TIMEOUT, else 502.
func UpstreamError(w http.ResponseWriter, r *http.Request, err error) {
	HostError(w, r, err, "UPSTREAM")
}

// HostError is UpstreamError for the host named by the route's variable
// upstream (UPSTREAM, DOWNLOAD_UPSTREAM), which the 502 tells the operator
// to check.
func HostError(w http.ResponseWriter, r *http.Request, err error, upstream string) {
	rc := Config(r)
	var unavailable *tokens.UnavailableError
	var tooLarge *http.MaxBytesError
	switch {
	case r.Context().Err() != nil:
		w.WriteHeader(StatusClientClosed)
	case errors.As(err, &unavailable):
		code := tokens.ErrorCode(err)
		Note(r, slog.LevelWarn, "no token for request", slog.String("ims_error", code), slog.Any("error", err))
		RetryAfter(w, unavailable.RetryAfter)
		Error(w, r, http.StatusServiceUnavailable, CodeTokenUnavailable,
			"The proxy has no valid Adobe IMS token (IMS error: "+code+"); retry after the Retry-After delay, and if it persists ask the operator to run `imsproxy check`.")
	case errors.As(err, &tooLarge):
		BodyTooLarge(w, r)
	case IsTimeout(err):
		Note(r, slog.LevelWarn, "upstream request failed", slog.Any("error", RedactURL(err)))
		Error(w, r, http.StatusGatewayTimeout, CodeUpstreamTimeout,
			"The upstream did not answer within "+rc.Timeout.String()+" ("+rc.Var("TIMEOUT")+"); retry later.")
	default:
		Note(r, slog.LevelWarn, "upstream request failed", slog.Any("error", RedactURL(err)))
		Error(w, r, http.StatusBadGateway, CodeUpstreamUnreachable,
			"The upstream could not be reached; retry later, and if it persists ask the operator to check "+rc.Var(upstream)+" and the network.")
	}
}

// BodyTooLarge answers a request whose body is over MAX_BODY_BYTES.
func BodyTooLarge(w http.ResponseWriter, r *http.Request) {
	rc := Config(r)
	Error(w, r, http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
		"Send a request body of at most "+strconv.FormatInt(rc.MaxBodyBytes, 10)+" bytes ("+rc.Var("MAX_BODY_BYTES")+").")
}

// IsTimeout tells an answer that did not come in time (504) from a
// connection that could not be made (502).
func IsTimeout(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RedactURL drops the URL from a *url.Error: a download's carries the
// access token in its query.
func RedactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New(ue.Op + ": " + ue.Err.Error())
	}
	return err
}

// AcceptsGzip reads Accept-Encoding (RFC 9110 §12.5.3): gzip (or x-gzip)
// with a non-zero weight, or `*` when gzip is not named.
func AcceptsGzip(values []string) bool {
	gzipQ, anyQ := -1.0, -1.0
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(elem, ";")
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					}
				}
			}
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "gzip", "x-gzip":
				gzipQ = q
			case "*":
				anyQ = q
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return anyQ > 0
}

// BaseURL is the route's own origin as the caller reached it, for the URLs
// the proxy writes into answers: "http://" and the Host the caller used
// when it is a plain host[:port], else the listener's address; "" when
// neither is known.
func BaseURL(r *http.Request) string {
	if plainHost(r.Host) {
		return "http://" + r.Host
	}
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && plainHost(addr.String()) {
		return "http://" + addr.String()
	}
	return ""
}

// plainHost reports whether s is a host name or IP address with an
// optional port and nothing else: it goes into URLs and JSON as it is.
func plainHost(s string) bool {
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		port := s[i+1:]
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return false
		}
		host = s[:i]
	}
	if inner, ok := strings.CutPrefix(host, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		a, err := netip.ParseAddr(inner)
		return ok && err == nil && a.Is6() && a.Zone() == ""
	}
	return host != "" && strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~") == ""
}
