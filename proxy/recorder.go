package proxy

import (
	"log/slog"
	"net/http"
	"slices"
	"sync"
)

// recorder remembers the status of an answer for metrics and the request
// log, and what is known about a proxy-made error so that Route.record
// writes one line per such answer. It unwraps to the real ResponseWriter so
// http.ResponseController (flushing streamed answers) reaches it.
type recorder struct {
	http.ResponseWriter
	status int

	// The request's error line (errorLine): the message and attributes
	// noted by the code that decided the answer; logLevel is the least
	// level asked for.
	logMsg   string
	logLevel slog.Level
	logAttrs []slog.Attr
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func newRecorder(w http.ResponseWriter) *recorder {
	rec := recorders.Get().(*recorder)
	rec.ResponseWriter, rec.status = w, 0
	return rec
}

func (rec *recorder) release() {
	rec.ResponseWriter = nil
	rec.logMsg, rec.logLevel = "", 0
	clear(rec.logAttrs)
	rec.logAttrs = rec.logAttrs[:0]
	recorders.Put(rec)
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

// Status is the final status written, 200 if only a body was, 0 if nothing.
func (rec *recorder) Status() int { return rec.status }

// note adds to the request's error line: the first message noted stays,
// the level is the highest asked for, and an attribute whose key is
// already there is dropped (the line must stay valid JSON for a reader
// that keeps the last of duplicate keys).
func (rec *recorder) note(level slog.Level, msg string, attrs ...slog.Attr) {
	if rec.logMsg == "" {
		rec.logMsg = msg
	}
	rec.logLevel = max(rec.logLevel, level)
	for _, a := range attrs {
		if !slices.ContainsFunc(rec.logAttrs, func(b slog.Attr) bool { return b.Key == a.Key }) {
			rec.logAttrs = append(rec.logAttrs, a)
		}
	}
}

// noted reports whether anything was noted for the error line.
func (rec *recorder) noted() bool { return rec.logMsg != "" }

// recorderOf finds the request's recorder under the writers that wrap it
// (held licensing answers, a cache fetch's capture); nil when w is not a
// route's.
func recorderOf(w http.ResponseWriter) *recorder {
	for range 8 { // the route's wrappers nest two deep at most
		switch x := w.(type) {
		case *recorder:
			return x
		case *heldAnswer:
			w = x.w
		case *capture:
			w = x.leader
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
	return nil
}
