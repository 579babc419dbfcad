// Package aemlinks keeps the callers of an AEM route behind the proxy. AEM
// names itself in absolute URLs — the links of the Assets HTTP API's Siren
// answers, the Location of a 201 Created — and a caller that follows one
// would go around the proxy, without credentials, and get 401. Rewrite
// turns the URLs of the route's upstream into the route's own address in
// the Location, Content-Location and Link headers and in JSON answers,
// and streams every other answer as it comes.
package aemlinks

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/imsproxy/imsproxy/proxy/route"
)

// maxBody is the largest JSON answer held back to be rewritten, before and
// after gzip is undone; a larger one streams on unchanged. AEM's listings
// are pages of a few kilobytes.
const maxBody = 8 << 20

// Limiter bounds the memory that rewrites hold across all requests: the
// answers held back, their decoded and their rewritten bodies. Reserve
// reports whether n more bytes may be held; each granted byte is given
// back with Release once the answer is sent. Both are called by many
// requests at once. When Reserve refuses, the answer streams on unchanged.
type Limiter interface {
	Reserve(n int) bool
	Release(n int)
}

// Options are what Rewrite needs besides the upstream.
type Options struct {
	// Limiter bounds the bytes held for rewriting; nil: only each answer's
	// own limit applies.
	Limiter Limiter
}

// Rewrite returns the middleware that rewrites, in the answers of next,
// the absolute URLs of upstream (its scheme, host and port, and its path
// when it has one) to "http://" and the host the caller addressed (the
// listener's address when the Host header is not a plain host[:port]).
//
// Only gzip can be undone to rewrite a body, so the request's
// Accept-Encoding is narrowed to gzip, or removed when the caller does not
// accept gzip.
func Rewrite(upstream *url.URL, opts Options) func(next http.Handler) http.Handler {
	o := newOrigin(upstream)
	return func(next http.Handler) http.Handler {
		return &handler{next: next, origin: o, limiter: opts.Limiter}
	}
}

type handler struct {
	next    http.Handler
	origin  *origin
	limiter Limiter // nil: none
}

var gzipOnly = []string{"gzip"}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if route.AcceptsGzip(r.Header.Values("Accept-Encoding")) {
		r.Header["Accept-Encoding"] = gzipOnly
	} else {
		delete(r.Header, "Accept-Encoding")
	}
	lw := writers.Get().(*writer)
	lw.h, lw.ResponseWriter, lw.r = h, w, r
	defer lw.release() // also after a panic: the reserved bytes go back
	h.next.ServeHTTP(lw, r)
	lw.finish()
}

// warn logs, with the request's fields, an answer passed on unrewritten
// because of its size, its encoding or the Limiter.
func (h *handler) warn(r *http.Request, msg string, attrs ...slog.Attr) {
	route.Log(r.Context(), slog.LevelWarn, msg, attrs...)
}

// isJSON reports whether a Content-Type is JSON: application/json or any
// application/…+json type, such as Siren's application/vnd.siren+json.
func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	typ, sub, ok := strings.Cut(strings.TrimSpace(mt), "/")
	if !ok || !strings.EqualFold(typ, "application") {
		return false
	}
	return strings.EqualFold(sub, "json") || len(sub) > len("+json") && strings.EqualFold(sub[len(sub)-len("+json"):], "+json")
}
