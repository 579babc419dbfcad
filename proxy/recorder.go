package proxy

import (
	"net/http"
	"sync"
)

// recorder remembers the status of an answer for metrics and the request
// log. It unwraps to the real ResponseWriter so http.ResponseController
// (flushing streamed answers) reaches it.
type recorder struct {
	http.ResponseWriter
	status int
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func newRecorder(w http.ResponseWriter) *recorder {
	rec := recorders.Get().(*recorder)
	rec.ResponseWriter, rec.status = w, 0
	return rec
}

func (rec *recorder) release() {
	rec.ResponseWriter = nil
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
