package stock

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/imsproxy/imsproxy/proxy/route"
)

// maxHeldBody is the largest answer held back for rewriting; a larger one
// (no license or license-history page is near it) streams on unchanged.
const maxHeldBody = 8 << 20

// heldAnswer holds back the answer to a licensing call (Content/License,
// Content/Info, Member/LicenseHistory) until it is complete, so that the
// download URLs in it can be rewritten to the route's own address (a
// caller never needs the token) and, for a license, its outcome read
// before the caller sees it.
//
// It deliberately has no Unwrap: http.ResponseController must not reach
// the real writer and flush headers that are still to be rewritten.
type heldAnswer struct {
	p      *Policy
	r      *http.Request // for its log fields
	w      http.ResponseWriter
	base   string // the route's own origin as the caller reached it; "" unknown
	header http.Header
	status int
	body   []byte

	streaming bool // too large: passed on unchanged
	done      bool
	attempt   *attempt // nil unless a license
	reserved  int      // bytes reserved from the Limiter for body
}

var _ http.Flusher = (*heldAnswer)(nil)

// hold prepares r's answer to be held: the upstream may compress it only
// with gzip, which the rewrite can undo and redo.
func (p *Policy) hold(w http.ResponseWriter, r *http.Request) *heldAnswer {
	if route.AcceptsGzip(r.Header.Values("Accept-Encoding")) {
		r.Header.Set("Accept-Encoding", "gzip")
	} else {
		r.Header.Del("Accept-Encoding")
	}
	return &heldAnswer{p: p, r: r, w: w, base: route.BaseURL(r), header: http.Header{}}
}

func (h *heldAnswer) Header() http.Header {
	if h.streaming {
		return h.w.Header()
	}
	return h.header
}

func (h *heldAnswer) WriteHeader(code int) {
	if h.streaming {
		h.w.WriteHeader(code)
		return
	}
	// 1xx answers are dropped: the real status line has to wait.
	if code >= 200 && h.status == 0 {
		h.status = code
		// A known length is reserved at once, rather than grown into.
		if n, err := strconv.Atoi(h.header.Get("Content-Length")); err == nil && n > 0 && n <= maxHeldBody && !h.room(n) {
			h.stream("no memory left (IMSPROXY_MAX_INFLIGHT_BYTES) to hold an answer to rewrite its download URLs; passed on unchanged")
		}
	}
}

func (h *heldAnswer) Write(b []byte) (int, error) {
	if h.streaming {
		return h.w.Write(b)
	}
	if h.status == 0 {
		h.WriteHeader(http.StatusOK)
		if h.streaming {
			return h.w.Write(b)
		}
	}
	need := len(h.body) + len(b)
	switch {
	case need > maxHeldBody:
		logf(h.r, slog.LevelWarn, "answer too large to rewrite its download URLs; passed on unchanged", slog.Int("limit_bytes", maxHeldBody))
	case !h.room(need):
		h.stream("no memory left (IMSPROXY_MAX_INFLIGHT_BYTES) to hold an answer to rewrite its download URLs; passed on unchanged")
	default:
		h.body = append(h.body, b...)
		return len(b), nil
	}
	if err := h.stream(""); err != nil {
		return 0, err
	}
	return h.w.Write(b)
}

// room reserves what a body of need bytes takes from the Limiter, waiting
// for room while the request lasts (a license's own bounded context).
func (h *heldAnswer) room(need int) bool {
	l := h.p.opts.Limiter
	if l == nil || need <= h.reserved {
		return true
	}
	grow := min(max(need, 2*h.reserved, 16<<10), maxHeldBody) - h.reserved
	if l.Wait(h.r.Context(), grow) != nil {
		return false
	}
	h.reserved += grow
	return true
}

// stream stops holding: the header and what is held go out, the rest
// passes through. why, when not "", is logged.
func (h *heldAnswer) stream(why string) error {
	if h.streaming {
		return nil
	}
	if why != "" {
		logf(h.r, slog.LevelWarn, why)
	}
	h.streaming = true
	h.sendHeader()
	body := h.body
	h.body = nil
	defer h.release()
	if len(body) > 0 {
		_, err := h.w.Write(body)
		return err
	}
	return nil
}

// release gives back the bytes reserved, once the body is sent.
func (h *heldAnswer) release() {
	if h.reserved > 0 {
		h.p.opts.Limiter.Release(h.reserved)
		h.reserved = 0
	}
}

// Flush is a no-op: nothing may reach the caller before the rewrite.
func (h *heldAnswer) Flush() {}

func (h *heldAnswer) sendHeader() {
	dst := h.w.Header()
	for k, v := range h.header {
		dst[k] = v
	}
	if h.status != 0 {
		h.w.WriteHeader(h.status)
	}
}

// finish sends the held answer, its download URLs rewritten, and settles
// a license. It is a no-op on nil.
func (h *heldAnswer) finish() {
	if h == nil || h.done {
		return
	}
	h.done = true
	defer h.release()
	// A status the proxy recorded without an answer (the request's own
	// deadline passed) is no answer from Stock either.
	proxyMade := h.header.Get(route.ErrorHeader) != "" || h.status == route.StatusClientClosed
	if h.streaming {
		// Too large to read; a license counts as made (settleAnswer).
		h.attempt.settleAnswer(h.status, proxyMade, nil)
		return
	}
	var plain []byte
	if h.status/100 == 2 && !proxyMade {
		plain = h.rewrite()
	}
	// Settled first: the audit line is on disk before the caller has
	// its answer.
	h.attempt.settleAnswer(h.status, proxyMade, plain)
	h.sendHeader()
	if h.status != 0 { // else nothing was written: net/http sends an empty 200
		_, _ = h.w.Write(h.body)
	}
}

// abandon settles a license that a panic cut short (the upstream broke
// off mid-answer). It is a no-op on nil and after finish. A 2xx already
// held counts as a license; no answer at all is unknown.
func (h *heldAnswer) abandon() {
	if h == nil || h.done {
		return
	}
	h.done = true
	h.release()
	h.attempt.settleAnswer(h.status, false, nil)
}

// rewrite replaces the download URLs in the held body and returns the
// decoded, rewritten body (nil when it cannot be decoded).
func (h *heldAnswer) rewrite() []byte {
	enc := strings.ToLower(strings.TrimSpace(h.header.Get("Content-Encoding")))
	raw := h.body
	var plain []byte
	switch enc {
	case "", "identity":
		plain = raw
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			plain, err = io.ReadAll(io.LimitReader(zr, maxHeldBody+1))
		}
		if err != nil || len(plain) > maxHeldBody {
			logf(h.r, slog.LevelWarn, "gzip answer could not be decoded to rewrite its download URLs; passed on unchanged")
			return nil
		}
	default:
		logf(h.r, slog.LevelWarn, "answer encoded with "+enc+"; download URLs not rewritten")
		return nil
	}
	out, changed := rewriteDownloadURLs(plain, h.p.downloadBase, h.base)
	if !changed {
		return out
	}
	if enc == "gzip" || enc == "x-gzip" {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(out)
		_ = zw.Close()
		h.body = buf.Bytes()
	} else {
		h.body = out
	}
	h.header.Set("Content-Length", strconv.Itoa(len(h.body)))
	h.header.Del("ETag") // the body is no longer the one it tagged
	h.header.Del("Content-Md5")
	return out
}

// rewriteDownloadURLs replaces, in a JSON body, every string that starts
// with a download URL on from (DOWNLOAD_UPSTREAM) by the same URL on to.
// Only the paths the route forwards to the download host are rewritten,
// and both JSON spellings of a URL ("https://a/b" and "https:\/\/a\/b", as
// PHP writes it) are recognised. The body is otherwise left byte for byte.
func rewriteDownloadURLs(body []byte, from, to string) ([]byte, bool) {
	if from == "" || to == "" || len(body) == 0 {
		return body, false
	}
	changed := false
	for _, p := range []string{"/Rest/Libraries/Download/", "/Rest/Libraries/Watermarked/Download/"} {
		for _, esc := range []func(string) string{func(s string) string { return s }, escapeSlashes} {
			old := []byte(`"` + esc(from+p))
			if bytes.Contains(body, old) {
				body = bytes.ReplaceAll(body, old, []byte(`"`+esc(to+p)))
				changed = true
			}
		}
	}
	return body, changed
}

func escapeSlashes(s string) string { return strings.ReplaceAll(s, "/", `\/`) }
