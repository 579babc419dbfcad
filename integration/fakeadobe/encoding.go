package fakeadobe

import (
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
)

// acceptsGzip reports whether the request's Accept-Encoding names gzip (or
// x-gzip) with a weight above zero. A bare `*` is not taken as gzip: a
// client that wants gzip says so.
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for elem := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(elem, ";")
			if n := strings.ToLower(strings.TrimSpace(name)); n != "gzip" && n != "x-gzip" {
				continue
			}
			k, q, _ := strings.Cut(strings.TrimSpace(params), "=")
			if f, err := strconv.ParseFloat(strings.TrimSpace(q), 64); strings.EqualFold(strings.TrimSpace(k), "q") && err == nil {
				return f > 0
			}
			return true
		}
	}
	return false
}

// gzipWriter compresses an answer for a client that accepts gzip, as API
// gateways commonly do (unverified for Stock's; the proxy must handle
// both): Content-Encoding: gzip and no Content-Length (the answer is
// chunked, or its compressed length counted by net/http). An answer that
// has no body, or is encoded already, passes through.
type gzipWriter struct {
	http.ResponseWriter
	zw          *gzip.Writer
	wroteHeader bool
}

func (g *gzipWriter) WriteHeader(code int) {
	if g.wroteHeader {
		return
	}
	g.wroteHeader = true
	h := g.Header()
	if code != http.StatusNoContent && code != http.StatusNotModified && h.Get("Content-Encoding") == "" {
		h.Set("Content-Encoding", "gzip")
		h.Del("Content-Length")
		g.zw = gzip.NewWriter(g.ResponseWriter)
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(p []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	if g.zw == nil {
		return g.ResponseWriter.Write(p)
	}
	return g.zw.Write(p)
}

// close ends the gzip stream; nothing is written if the answer never began
// (the client went away first).
func (g *gzipWriter) close() {
	if g.zw != nil {
		_ = g.zw.Close()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }
