// Package route is the skeleton every route's handler runs in. For each
// request it keeps or makes the request id, carries the request's log
// fields in its context, recovers a panic, counts the answer and writes
// the one log line of an answer the proxy made itself. It also renders
// those answers, so that every stage (the packages beside this one)
// answers in the same shape and logs through the same fields: stages call
// Error, Note and Log with the request, and never look at another stage's
// ResponseWriter.
package route

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// CountFunc counts one answered request: its method, final status,
// X-Cache value ("" when the cache had no say) and the time from its
// arrival to the end of its answer.
type CountFunc func(method string, status int, xcache string, elapsed time.Duration)

// Handler is the skeleton of one route around the route's stages.
type Handler struct {
	cfg   *config.Route
	log   *slog.Logger
	count CountFunc // nil: not counted
	next  http.Handler
}

var _ http.Handler = (*Handler)(nil)

// New returns the skeleton of route cfg around next. log receives the
// request and error lines; count, when not nil, every answered request.
func New(cfg *config.Route, log *slog.Logger, count CountFunc, next http.Handler) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log, count: count, next: next}
}

// ServeHTTP runs the request through the route's stages.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &state{Context: r.Context(), route: h, start: time.Now(), method: r.Method, path: r.URL.Path}
	st.rec.ResponseWriter = w
	st.id = setRequestID(w, r)
	r = r.WithContext(st)
	defer h.recoverPanic(st)
	h.next.ServeHTTP(&st.rec, r)
	h.finish(st)
}

// finish counts the answer, writes the error line of a proxy-made error
// (or of anything noted) and, at debug level, the request line.
func (h *Handler) finish(st *state) {
	status := st.rec.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends an empty 200
	}
	var xcache string
	if v := st.rec.Header()["X-Cache"]; len(v) > 0 { // every request passes here: no key canonicalising
		xcache = v[0]
	}
	elapsed := time.Since(st.start)
	if h.count != nil {
		h.count(st.method, status, xcache, elapsed)
	}
	h.errorLine(st, status)
	if h.log.Enabled(st, slog.LevelDebug) {
		cache := xcache
		if cache == "" {
			cache = "none"
		}
		h.log.LogAttrs(st, slog.LevelDebug, "request", append(st.attrs(),
			slog.Int("status", status), slog.String("cache", cache),
			slog.Duration("duration", elapsed))...)
	}
}

// errorLine logs the request's one error line when the answer is a
// proxy-made error (it carries ErrorHeader) or something was noted: 5xx
// at warn, the rest at info, unless a noted level is higher.
func (h *Handler) errorLine(st *state, status int) {
	var code string
	if v := st.rec.Header()[ErrorHeader]; len(v) > 0 {
		code = v[0]
	}
	if code == "" && st.logMsg == "" {
		return
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	level = max(level, st.logLevel)
	msg := st.logMsg
	if msg == "" {
		msg = "proxy error"
	}
	if !h.log.Enabled(st, level) {
		return
	}
	attrs := append(st.attrs(), slog.Int("status", status), slog.String("code", code))
	for _, a := range st.logAttrs {
		// A noted attribute the line has already (the caller) would
		// make the line invalid JSON for a reader keeping the first.
		if !slices.ContainsFunc(attrs, func(b slog.Attr) bool { return b.Key == a.Key }) {
			attrs = append(attrs, a)
		}
	}
	h.log.LogAttrs(st, level, msg, attrs...)
}

// state is one request on its way through the route. It is the request's
// context, so that every stage reaches it from the request alone (Note,
// Log, Caller), including code running in a context detached from the
// caller's (context.WithoutCancel keeps values). It is one allocation
// with the recorder of the answer.
type state struct {
	context.Context
	route  *Handler
	rec    recorder
	id     string
	start  time.Time
	method string
	path   string
	caller *config.Caller // nil until identified (or without a callers file)
	body   watchedBody    // the upstream answer's body (WatchBody)

	// The request's error line: the message and attributes noted by the
	// code that decided the answer; logLevel is the least level asked for.
	logMsg   string
	logLevel slog.Level
	logAttrs []slog.Attr
}

type stateKey struct{}

// Value implements context.Context: the state answers for itself.
func (s *state) Value(key any) any {
	if key == (stateKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// from returns the state of the request whose context is ctx; nil outside
// a route.
func from(ctx context.Context) *state {
	s, _ := ctx.Value(stateKey{}).(*state)
	return s
}

// attrs starts every log line about the request: the route, the request
// id, the method, the path (never the query, where callers may put
// anything) and, once known, the caller.
func (s *state) attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("route", s.route.cfg.Name), slog.String("request_id", s.id),
		slog.String("method", s.method), slog.String("path", s.path))
	if s.caller != nil {
		attrs = append(attrs, slog.String("caller", s.caller.Name))
	}
	return attrs
}

// recorder remembers the status of the answer. It unwraps to the real
// ResponseWriter so that http.ResponseController (flushing a streamed
// answer) reaches it.
type recorder struct {
	http.ResponseWriter
	status int
}

func (rec *recorder) WriteHeader(code int) {
	// 1xx answers (103 Early Hints) are not the final status.
	if rec.status == 0 && code >= 200 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

// Unwrap is used by http.ResponseController.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
