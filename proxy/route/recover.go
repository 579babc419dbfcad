package route

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
)

// A panic in a handler is a bug. It is answered with a 500 in the shape of
// every proxy-made error and logged with the panic value's type and the
// stack, never the value itself: a value can be anything the failing code
// held, a token included. (net/http would log the value and cut the
// connection.)

// recoverPanic is deferred by Handler.ServeHTTP.
func (h *Handler) recoverPanic(st *state) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		// The reverse proxy's way of cutting a broken stream: not a bug.
		h.finish(st)
		panic(p)
	}
	// The request's error line (finish) carries the panic.
	st.logMsg, st.logLevel = "", 0
	note(st, slog.LevelError, panicMessage, panicAttrs(p)...)
	if st.rec.status != 0 {
		// Part of the answer is out: cut the connection so the caller
		// sees a broken answer rather than a short one that looks whole.
		h.finish(st)
		panic(http.ErrAbortHandler)
	}
	WriteError(&st.rec, http.StatusInternalServerError, CodeInternal,
		"The proxy failed on this request (a bug, logged with request id "+st.id+"); retry, and report it if it persists.", h.cfg.Name)
	h.finish(st)
}

// Recover guards a handler other than a route's (the admin listener),
// named listener in its log lines and errors.
func Recover(next http.Handler, log *slog.Logger, listener string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == nil || p == http.ErrAbortHandler {
				if p != nil {
					panic(p)
				}
				return
			}
			log.LogAttrs(r.Context(), slog.LevelError, panicMessage, append([]slog.Attr{slog.String("listener", listener),
				slog.String("method", r.Method), slog.String("path", r.URL.Path)}, panicAttrs(p)...)...)
			if rec.status != 0 {
				panic(http.ErrAbortHandler)
			}
			WriteError(rec, http.StatusInternalServerError, CodeInternal,
				"The proxy failed on this request (a bug, logged); retry, and report it if it persists.", listener)
		}()
		next.ServeHTTP(rec, r)
	})
}

const panicMessage = "panic in handler (a bug): the request was answered 500"

// panicAttrs describes a panic for the log: the value's type and the
// stack, never the value.
func panicAttrs(p any) []slog.Attr {
	return []slog.Attr{slog.String("panic_type", fmt.Sprintf("%T", p)), slog.String("stack", string(debug.Stack()))}
}
