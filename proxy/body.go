package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
)

// maxReplayBody is the largest request body kept in memory so the request
// can be sent again after an upstream 401 (SPEC §4).
const maxReplayBody = 1 << 20

// limitBody enforces MAX_BODY_BYTES and makes small bodies replayable. It
// answers the request itself (and returns false) when the body is refused.
func (rt *Route) limitBody(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength > rt.cfg.MaxBodyBytes {
		rt.bodyTooLarge(w)
		return false
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return true
	}
	r.Body = http.MaxBytesReader(w, r.Body, rt.cfg.MaxBodyBytes)
	if r.ContentLength > maxReplayBody {
		return true // known to be too big to replay: stream it
	}
	// Read at most one byte more than can be replayed: a body of unknown
	// length (chunked) that ends within the limit is buffered, a longer
	// one is streamed on after the part already read.
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxReplayBody+1))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			rt.bodyTooLarge(w)
		} else {
			// The caller broke off or sent malformed chunking.
			writeError(w, http.StatusBadRequest, "bad_request", "The request body could not be read; send it again.", rt.cfg.Name)
		}
		return false
	}
	if len(buf) > maxReplayBody {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return true
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.ContentLength = int64(len(buf))
	r.TransferEncoding = nil // now of known length
	return true
}

func (rt *Route) bodyTooLarge(w http.ResponseWriter) {
	writeError(w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
		"Send a request body of at most "+itoa(rt.cfg.MaxBodyBytes)+" bytes (IMSPROXY_"+envName(rt.cfg.Name)+"_MAX_BODY_BYTES).",
		rt.cfg.Name)
}

// envName is a route name as it appears in variable names.
func envName(route string) string { return strings.ToUpper(route) }
