package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// Downloads without the token (SPEC §6, adobe-facts §4.5): Stock's
// download host takes the access token in the token query parameter and
// fails a download that carries an Authorization header. A stock route
// forwards /Rest/Libraries/Download/... and /Rest/Libraries/Watermarked/
// Download/... there that way, and passes the redirect to the signed file
// back without following it.

type downloadTokenKey struct{}

// downloadProxy forwards to the download host base. The request URL it
// sends carries a live token: it is never logged (proxyError logs the
// path only and drops the URL from errors).
func (rt *Route) downloadProxy(base *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(base)
			h := pr.Out.Header
			delete(h, "Authorization")
			delete(h, "Proxy-Authorization")
			delete(h, "X-Api-Key")
			if tok, ok := pr.In.Context().Value(downloadTokenKey{}).(string); ok {
				pr.Out.URL.RawQuery = withToken(pr.Out.URL.RawQuery, tok)
			}
		},
		Transport:  rt.rp.Transport,
		BufferPool: copyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			tok, _ := resp.Request.Context().Value(downloadTokenKey{}).(string)
			if tok == "" {
				return nil
			}
			// The redirect goes to a signed URL that needs no token; one
			// that carries ours must not reach the caller.
			if strings.Contains(resp.Header.Get("Location"), url.QueryEscape(tok)) {
				return errTokenInRedirect
			}
			// The download host refused the token ("This download is
			// expired"): the next request gets a new one. This one cannot
			// be sent again from here; the caller retries.
			if resp.StatusCode == http.StatusUnauthorized {
				rt.tokens.Invalidate(tok)
			}
			return nil
		},
		ErrorHandler: rt.proxyError,
		ErrorLog:     slog.NewLogLogger(rt.log.Handler(), slog.LevelWarn),
	}
}

var errTokenInRedirect = errors.New("the download host redirected to a URL carrying the access token; the redirect was not passed on")

// withToken returns rawQuery with any token parameter of the caller's
// replaced by token, the other parameters kept in their order.
func withToken(rawQuery, token string) string {
	var parts []string
	for _, p := range strings.Split(rawQuery, "&") {
		if p == "" {
			continue
		}
		k, _, _ := strings.Cut(p, "=")
		if key, err := url.QueryUnescape(k); err == nil && key == "token" || k == "token" {
			continue
		}
		parts = append(parts, p)
	}
	return strings.Join(append(parts, "token="+url.QueryEscape(token)), "&")
}

// serveDownload forwards a download to DOWNLOAD_UPSTREAM with the route's
// token in the query.
func (rt *Route) serveDownload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Nothing but a GET carries the route's token to the download host.
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
			"Downloads are fetched with GET.", rt.cfg.Name)
		return
	}
	if rt.guards.download == nil {
		writeError(w, http.StatusNotFound, "not_found", "This route has no download host (DOWNLOAD_UPSTREAM).", rt.cfg.Name)
		return
	}
	if rt.tokens != nil {
		tok, err := rt.tokens.Token(r.Context())
		if err != nil {
			rt.tokenError(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), downloadTokenKey{}, tok.Value))
	}
	rt.guards.download.ServeHTTP(w, r)
}
