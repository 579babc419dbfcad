package callers

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/imsproxy/imsproxy/proxy/route"
)

// RefusedFunc learns of each request the stage refused, with the code and
// status of its answer: the Stock policy audits a refused licensing call
// through it.
type RefusedFunc func(r *http.Request, code string, status int)

// Options is what the admission stage of a route checks against.
type Options struct {
	// File is the callers file; nil when none is configured: anyone who
	// reaches the listener may call.
	File *File
	// Browsers is what requests made by browsers are checked against.
	Browsers Browsers
	// Refused learns of each refusal; nil: nobody.
	Refused RefusedFunc
}

// Check returns the admission stage in front of next.
func Check(opts Options, next http.Handler) http.Handler {
	if opts.Refused == nil {
		opts.Refused = func(*http.Request, string, int) {}
	}
	return &check{file: opts.File, browsers: opts.Browsers, refused: opts.Refused, next: next}
}

var _ http.Handler = (*check)(nil)

type check struct {
	file     *File
	browsers Browsers
	refused  RefusedFunc
	next     http.Handler
}

func (c *check) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if code, status, ok := originForm(w, r); !ok {
		c.refused(r, code, status)
		return
	}
	if no := c.browsers.Check(r); no != nil {
		route.Note(r, slog.LevelInfo, "browser request refused", slog.String("host", r.Host),
			slog.String("origin", r.Header.Get("Origin")), slog.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
		route.Error(w, r, no.Status, no.Code, no.Message)
		c.refused(r, no.Code, no.Status)
		return
	}
	if c.file != nil && !c.known(w, r) {
		return
	}
	if code, status, ok := limitBody(w, r); !ok {
		c.refused(r, code, status)
		return
	}
	c.next.ServeHTTP(w, r)
}

// known identifies the caller and checks that it may use the route.
func (c *check) known(w http.ResponseWriter, r *http.Request) bool {
	rc := route.Config(r)
	caller := c.file.identify(r)
	switch {
	case caller == nil:
		reason := "no caller key"
		if r.Header.Get("X-Api-Key") != "" || r.Header.Get("Authorization") != "" {
			reason = "unknown caller key"
		}
		noteRefusal(r, reason, "")
		w.Header().Set("WWW-Authenticate", `Bearer realm="imsproxy"`)
		route.Error(w, r, http.StatusUnauthorized, route.CodeUnauthorizedCaller,
			"Send your imsproxy caller key as x-api-key or Authorization: Bearer; the operator lists the keys that may call in IMSPROXY_CALLERS_FILE.")
		c.refused(r, route.CodeUnauthorizedCaller, http.StatusUnauthorized)
		return false
	case !caller.MayUse(rc.Name):
		noteRefusal(r, "route not allowed", caller.Name)
		route.SetCaller(r, caller)
		route.Error(w, r, http.StatusForbidden, route.CodeForbidden,
			"Caller "+caller.Name+" may not use route "+rc.Name+"; ask the operator to add the route to its entry in IMSPROXY_CALLERS_FILE.")
		c.refused(r, route.CodeForbidden, http.StatusForbidden)
		return false
	}
	route.SetCaller(r, caller)
	return true
}

func noteRefusal(r *http.Request, reason, caller string) {
	route.Note(r, slog.LevelInfo, "caller refused",
		slog.String("reason", reason), slog.String("caller", caller), slog.String("remote", route.RemoteIP(r)))
}

// allowedMethods is the Allow header of a refused method.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// originForm refuses what would make the route a forward proxy: CONNECT
// tunnels and absolute-form targets ("GET http://elsewhere/ HTTP/1.1").
// Requests always go to the route's upstream anyway; refusing them tells a
// misconfigured client (HTTP_PROXY pointed at the route) what is wrong.
// It also refuses TRACE and TRACK: an upstream that echoes the request it
// received, as Apache does by default (TraceEnable On), would hand the
// caller the route's credentials.
func originForm(w http.ResponseWriter, r *http.Request) (code string, status int, ok bool) {
	switch {
	case r.Method == http.MethodConnect:
		w.Header().Set("Allow", allowedMethods)
		route.Error(w, r, http.StatusMethodNotAllowed, route.CodeMethodNotAllowed,
			"imsproxy is not a forward proxy and does not tunnel CONNECT; call the route's address as the base URL of the API.")
		return route.CodeMethodNotAllowed, http.StatusMethodNotAllowed, false
	case strings.EqualFold(r.Method, http.MethodTrace) || strings.EqualFold(r.Method, "TRACK"):
		w.Header().Set("Allow", allowedMethods)
		route.Error(w, r, http.StatusMethodNotAllowed, route.CodeMethodNotAllowed,
			"imsproxy does not forward "+r.Method+": an upstream that echoes the request would send back the route's credentials.")
		return route.CodeMethodNotAllowed, http.StatusMethodNotAllowed, false
	case r.URL.IsAbs() || r.URL.Host != "" || r.RequestURI != "" && !strings.HasPrefix(r.RequestURI, "/"):
		route.Error(w, r, http.StatusBadRequest, route.CodeBadRequest,
			"imsproxy is not a forward proxy: send origin-form requests (a path such as /Rest/Media/1/Search/Files) to the route's address instead of setting it as an HTTP proxy.")
		return route.CodeBadRequest, http.StatusBadRequest, false
	}
	return "", 0, true
}

// maxReplayBody is the largest request body kept in memory so that the
// request can be sent again after an upstream 401.
const maxReplayBody = 1 << 20

// limitBody enforces MAX_BODY_BYTES and makes small bodies replayable. It
// answers the request itself, and returns the code and status it answered
// with and false, when the body is refused.
func limitBody(w http.ResponseWriter, r *http.Request) (code string, status int, ok bool) {
	limit := route.Config(r).MaxBodyBytes
	if r.ContentLength > limit {
		route.BodyTooLarge(w, r)
		return route.CodeBodyTooLarge, http.StatusRequestEntityTooLarge, false
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return "", 0, true
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength > maxReplayBody {
		return "", 0, true // known to be too big to replay: stream it
	}
	// Read at most one byte more than can be replayed: a body of unknown
	// length (chunked) that ends within the limit is buffered, a longer
	// one is streamed on after the part already read.
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxReplayBody+1))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			route.BodyTooLarge(w, r)
			return route.CodeBodyTooLarge, http.StatusRequestEntityTooLarge, false
		}
		// The caller broke off or sent malformed chunking.
		route.Error(w, r, http.StatusBadRequest, route.CodeBadRequest, "The request body could not be read; send it again.")
		return route.CodeBadRequest, http.StatusBadRequest, false
	}
	if len(buf) > maxReplayBody {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return "", 0, true
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.ContentLength = int64(len(buf))
	r.TransferEncoding = nil // now of known length
	return "", 0, true
}
