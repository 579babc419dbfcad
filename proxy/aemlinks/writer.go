package aemlinks

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/imsproxy/imsproxy/proxy/route"
)

// writer is the ResponseWriter next writes to. It keeps the answer's
// header until the status is known, rewrites the links in it, then either
// streams the answer on (anything but JSON, and JSON it cannot hold) or
// holds a JSON body back until it is complete, to rewrite it.
type writer struct {
	http.ResponseWriter
	h *handler
	r *http.Request

	// header is the answer's header until it is sent: a panic in between
	// leaves the real one as it was, for the error answer.
	header http.Header
	state  state
	status int
	body   []byte // a held JSON body
	held   int    // bytes reserved from the Limiter

	base     string // the route's own origin, "" when it cannot be told
	baseDone bool
}

type state uint8

const (
	pending   state = iota // no status yet
	streaming              // the header is sent; the body passes through
	holding                // a JSON body is held back to be rewritten
	finished               // the held answer is sent
)

var writers = sync.Pool{New: func() any { return &writer{header: http.Header{}} }}

// release gives back the bytes reserved and the writer, once next is done
// with it.
func (w *writer) release() {
	if w.held > 0 && w.h.limiter != nil {
		w.h.limiter.Release(w.held)
	}
	clear(w.header)
	*w = writer{header: w.header}
	writers.Put(w)
}

// Unwrap lets http.ResponseController reach the real writer (deadlines)
// and the proxy find its own wrappers. Flush and Hijack do not go through
// it: FlushError and Hijack answer first.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection over for a protocol upgrade (101 Switching
// Protocols): the reverse proxy then writes the answer's header itself,
// into the real header, as it would without this stage.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.state == pending {
		w.passHeader()
		w.state = streaming
	}
	return conn, brw, err
}

func (w *writer) Header() http.Header {
	if w.state == streaming || w.state == finished {
		return w.ResponseWriter.Header()
	}
	return w.header
}

func (w *writer) WriteHeader(code int) {
	switch {
	case w.state == streaming:
		w.ResponseWriter.WriteHeader(code)
		return
	case w.state != pending:
		return // superfluous, as net/http treats it
	case code < 200:
		w.informational(code)
		return
	}
	w.status = code
	w.rewriteHeader()
	if code == http.StatusNotModified {
		w.weakenNotModified()
	}
	if isJSON(w.header.Get("Content-Type")) && w.baseURL() != "" && bodyMayChange(code) {
		if w.r.Method == http.MethodHead {
			// The body a GET gets may be rewritten, its length changed.
			delete(w.header, "Content-Length")
		} else if w.hold() {
			return
		}
	}
	w.send()
}

// bodyMayChange: a 206 is a byte range of a body, and 204 and 304 have
// none.
func bodyMayChange(code int) bool {
	return code != http.StatusPartialContent && code != http.StatusNoContent && code != http.StatusNotModified
}

// informational passes a 1xx answer (103 Early Hints carries Link) on
// with its links rewritten; its header is not the final answer's.
func (w *writer) informational(code int) {
	w.rewriteHeader()
	dst := w.ResponseWriter.Header()
	before := make(http.Header, len(w.header))
	for k, v := range w.header {
		if old, ok := dst[k]; ok {
			before[k] = old
		}
		dst[k] = v
	}
	w.ResponseWriter.WriteHeader(code)
	for k := range w.header {
		if old, ok := before[k]; ok {
			dst[k] = old
		} else {
			delete(dst, k)
		}
	}
}

// passHeader puts the answer's header into the real one.
func (w *writer) passHeader() {
	dst := w.ResponseWriter.Header()
	for k, v := range w.header {
		dst[k] = v
	}
}

// send sends the header and status: from now on everything streams.
func (w *writer) send() {
	w.passHeader()
	w.state = streaming
	w.ResponseWriter.WriteHeader(w.status)
}

func (w *writer) Write(p []byte) (int, error) {
	if w.state == pending {
		w.WriteHeader(http.StatusOK)
	}
	if w.state != holding {
		return w.ResponseWriter.Write(p)
	}
	if len(w.body)+len(p) > maxBody {
		w.h.warn(w.r, "AEM answer too large to rewrite its links; passed on unchanged",
			slog.Int("limit_bytes", maxBody))
		return w.giveUp(p)
	}
	if len(w.body)+len(p) > cap(w.body) && !w.grow(len(w.body)+len(p)) {
		w.h.warn(w.r, "no memory left to rewrite the links of an AEM answer; passed on unchanged")
		return w.giveUp(p)
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// grow makes room for need bytes in the held body, within the Limiter.
func (w *writer) grow(need int) bool {
	size := min(max(need, 2*cap(w.body), 16<<10), maxBody)
	if !w.reserve(size - cap(w.body)) {
		return false
	}
	body := make([]byte, len(w.body), size)
	copy(body, w.body)
	w.body = body
	return true
}

// giveUp stops holding: what is held and p go out unchanged, the rest
// streams.
func (w *writer) giveUp(p []byte) (int, error) {
	held := w.body
	w.body = nil
	w.send()
	if _, err := w.ResponseWriter.Write(held); err != nil {
		return 0, err
	}
	return w.ResponseWriter.Write(p)
}

// FlushError flushes a streamed answer; a held one cannot be, it is not
// rewritten yet.
func (w *writer) FlushError() error {
	if w.state == pending {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == holding {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for the callers of http.Flusher.
func (w *writer) Flush() { _ = w.FlushError() }

// hold decides whether the JSON answer is held back to be rewritten: not
// when it is larger than the limit, encoded in a way that cannot be
// undone, announces trailers, or the Limiter has no room for it.
func (w *writer) hold() bool {
	switch coding(w.header) {
	case "", "identity", "gzip":
	default:
		return false
	}
	if len(w.header["Trailer"]) > 0 {
		return false
	}
	size := 0
	if v := w.header.Get("Content-Length"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return false // nothing to rewrite, or a length net/http will refuse anyway
		}
		if n > maxBody {
			w.h.warn(w.r, "AEM answer too large to rewrite its links; passed on unchanged",
				slog.Int("limit_bytes", maxBody), slog.Int("content_length", n))
			return false
		}
		size = n
	}
	if size > 0 {
		if !w.reserve(size) {
			w.h.warn(w.r, "no memory left to rewrite the links of an AEM answer; passed on unchanged")
			return false
		}
		w.body = make([]byte, 0, size)
	}
	w.state = holding
	return true
}

// coding is the answer's Content-Encoding, lower case, x-gzip as gzip.
func coding(h http.Header) string {
	c := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
	if c == "x-gzip" {
		return "gzip"
	}
	if len(h["Content-Encoding"]) > 1 {
		return "several"
	}
	return c
}

func (w *writer) reserve(n int) bool {
	if w.h.limiter != nil && !w.h.limiter.Reserve(n) {
		return false
	}
	w.held += n
	return true
}

// finish sends a held answer, rewritten, once next has written all of it.
func (w *writer) finish() {
	switch w.state {
	case pending: // nothing written: net/http answers 200 with the header
		w.passHeader()
	case holding:
		body := w.body
		if out := w.rewriteBody(); out != nil {
			body = out
			h := w.header
			delete(h, "Content-Encoding")
			h.Set("Content-Length", strconv.Itoa(len(out)))
			// The body is not the one the upstream's validator and
			// digests name; it means the same, which a weak tag says.
			if etag := h.Get("Etag"); etag != "" && !strings.HasPrefix(etag, "W/") {
				h.Set("Etag", "W/"+etag)
			}
			for _, k := range []string{"Content-Md5", "Digest", "Content-Digest", "Repr-Digest"} {
				delete(h, k)
			}
		}
		w.send()
		_, _ = w.ResponseWriter.Write(body)
	}
	w.state = finished
}

// rewriteBody returns the held body with its links rewritten, decoded
// from gzip; nil when nothing changes or it cannot be rewritten.
func (w *writer) rewriteBody() []byte {
	plain := w.body
	if coding(w.header) == "gzip" {
		var ok bool
		if plain, ok = w.gunzip(w.body); !ok {
			return nil
		}
	}
	j := newJSONRewrite(w.h.origin, w.base)
	size, urls := j.size(plain)
	if urls == 0 {
		return nil
	}
	if !w.reserve(size) {
		w.h.warn(w.r, "no memory left to rewrite the links of an AEM answer; passed on unchanged")
		return nil
	}
	return j.appendTo(make([]byte, 0, size), plain)
}

var gzipReaders sync.Pool // *gzip.Reader

// gunzip decodes a gzip body of at most maxBody bytes decoded, within the
// Limiter.
func (w *writer) gunzip(raw []byte) ([]byte, bool) {
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(raw))
	} else {
		err = zr.Reset(bytes.NewReader(raw))
	}
	if err != nil {
		w.h.warn(w.r, "AEM answer is not valid gzip; its links are not rewritten")
		return nil, false
	}
	defer gzipReaders.Put(zr)
	var out []byte
	for {
		if len(out) == cap(out) {
			if cap(out) > maxBody {
				w.h.warn(w.r, "AEM answer too large to rewrite its links once decoded; passed on unchanged",
					slog.Int("limit_bytes", maxBody))
				return nil, false
			}
			size := min(max(2*cap(out), 4*len(raw), 16<<10), maxBody+1)
			if !w.reserve(size - cap(out)) {
				w.h.warn(w.r, "no memory left to rewrite the links of an AEM answer; passed on unchanged")
				return nil, false
			}
			out = append(make([]byte, 0, size), out...)
		}
		n, err := zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			w.h.warn(w.r, "AEM answer is not valid gzip; its links are not rewritten")
			return nil, false
		}
	}
	if len(out) > maxBody {
		w.h.warn(w.r, "AEM answer too large to rewrite its links once decoded; passed on unchanged",
			slog.Int("limit_bytes", maxBody))
		return nil, false
	}
	return out, true
}

// rewriteHeader rewrites the URLs in Location, Content-Location and Link.
func (w *writer) rewriteHeader() {
	for _, k := range []string{"Location", "Content-Location"} {
		for i, v := range w.header[k] {
			if base := w.baseURL(); base != "" {
				w.header[k][i], _ = w.h.origin.rewriteURL(v, base)
			}
		}
	}
	for i, v := range w.header["Link"] {
		if base := w.baseURL(); base != "" {
			w.header["Link"][i], _ = w.h.origin.rewriteLink(v, base)
		}
	}
}

// weakenNotModified answers a revalidation with the tag the caller holds:
// a rewritten body carries the upstream's tag made weak (finish), and the
// upstream, comparing weakly, answers 304 with its own strong tag.
func (w *writer) weakenNotModified() {
	etag := w.header.Get("Etag")
	if etag == "" || strings.HasPrefix(etag, "W/") {
		return
	}
	for _, v := range w.r.Header.Values("If-None-Match") {
		if strings.Contains(v, "W/"+etag) {
			w.header.Set("Etag", "W/"+etag)
			return
		}
	}
}

// baseURL is the route's own origin as the caller reached it.
func (w *writer) baseURL() string {
	if !w.baseDone {
		w.baseDone = true
		w.base = route.BaseURL(w.r)
	}
	return w.base
}
