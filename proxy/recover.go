package proxy

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

// A panic in a handler is a bug. It is answered with a 500 in the shape of
// SPEC §7 and logged with the panic value's type and the stack, never the
// value itself: a value can be anything the failing code held, a token
// included. (net/http would log the value and cut the connection.)

// recoverPanic is deferred by Route.ServeHTTP.
func (rt *Route) recoverPanic(rec *recorder, r *http.Request, id string, start time.Time) {
	record := func() { rt.record(rec, r, id, start) }
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		// The reverse proxy's way of cutting a broken stream: not a bug.
		record()
		panic(p)
	}
	// The request's error line (record) carries the panic.
	rec.note(slog.LevelError, panicMessage, panicAttrs(p)...)
	if rec.Status() != 0 {
		// Part of the answer is out: cut the connection so the caller
		// sees a broken answer rather than a short one that looks whole.
		record()
		panic(http.ErrAbortHandler)
	}
	writeError(rec, http.StatusInternalServerError, "internal_error",
		"The proxy failed on this request (a bug, logged with request id "+id+"); retry, and report it if it persists.", rt.cfg.Name)
	record()
}

// recoverPanics guards a handler other than a route's (the admin listener).
func recoverPanics(h http.Handler, log *slog.Logger, listener string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := newRecorder(w)
		defer rec.release()
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
			if rec.Status() != 0 {
				panic(http.ErrAbortHandler)
			}
			writeError(rec, http.StatusInternalServerError, "internal_error",
				"The proxy failed on this request (a bug, logged); retry, and report it if it persists.", listener)
		}()
		h.ServeHTTP(rec, r)
	})
}

const panicMessage = "panic in handler (a bug): the request was answered 500"

// panicAttrs describes a panic for the log: the value's type and the
// stack, never the value.
func panicAttrs(p any) []slog.Attr {
	return []slog.Attr{slog.String("panic_type", fmt.Sprintf("%T", p)), slog.String("stack", string(debug.Stack()))}
}
