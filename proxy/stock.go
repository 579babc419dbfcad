package proxy

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// allowEditorialHeader is how a caller accepts an editorial-use-only asset
// (SPEC §6). It is the proxy's own header and never goes upstream.
const allowEditorialHeader = "X-Imsproxy-Allow-Editorial"

// guards is what a route needs for SPEC §6: who may call, and on a stock
// route the licensing guards, the downloads and the audit log.
type guards struct {
	callers *Callers  // nil: anyone who reaches the listener
	audit   *AuditLog // nil: no audit log
	now     func() time.Time

	// stock routes only
	limit     *licenceLimit
	editorial *editorialCache
	download  *httputil.ReverseProxy
	// downloadBase is DOWNLOAD_UPSTREAM without a trailing slash: download
	// URLs that start with it are rewritten to the route's own address.
	downloadBase string
}

func newGuards(rt *Route, opts RouteOptions) guards {
	g := guards{callers: opts.Callers, audit: opts.Audit, now: opts.Now}
	if g.now == nil {
		g.now = time.Now
	}
	cfg := rt.cfg
	if cfg.Type != config.TypeStock {
		return g
	}
	today := utcDay(g.now())
	g.limit = newLicenceLimit(cfg.LicenseDailyLimit, today, opts.Audit.licencesOn(today, cfg.Name))
	g.editorial = newEditorialCache(g.now)
	if cfg.DownloadUpstream != nil {
		g.download = rt.downloadProxy(cfg.DownloadUpstream)
		g.downloadBase = strings.TrimSuffix(cfg.DownloadUpstream.String(), "/")
	}
	return g
}

// stockPath sorts the paths a stock route treats specially.
type stockPath int

const (
	pathOther     stockPath = iota
	pathLicence             // Content/License, any method: the licensing guards
	pathLicensing           // Content/Info, Member/LicenseHistory: download URLs rewritten
	pathDownload            // the download host's paths: token in the query
)

const (
	licencePrefix = "/rest/libraries/1/content/license"
	downloadPath  = "/rest/libraries/download/"
	watermarked   = "/rest/libraries/watermarked/download/"
)

// classifyStock sorts a request path. Licensing is recognised however the
// path is spelt — any case, backslashes, dot segments, doubled slashes, a
// second level of percent-encoding, anything after "License" — because an
// upstream that normalises a spelling the guard missed would license
// unguarded: when in doubt, a path is a licence.
func classifyStock(p string) stockPath {
	if !maybeSpecial(p) {
		return pathOther // most requests (searches): decided without allocating
	}
	forms := []string{p}
	if u, err := url.PathUnescape(p); err == nil && u != p {
		forms = append(forms, u)
	}
	for _, f := range forms {
		f = strings.ToLower(strings.ReplaceAll(f, `\`, "/"))
		if strings.HasPrefix(f, licencePrefix) || strings.HasPrefix(cleanPath(f), licencePrefix) {
			return pathLicence
		}
	}
	switch c := strings.ToLower(cleanPath(p)); {
	case c == "/rest/libraries/1/content/info", c == "/rest/libraries/1/member/licensehistory":
		return pathLicensing
	case strings.HasPrefix(c, downloadPath), strings.HasPrefix(c, watermarked):
		return pathDownload
	}
	return pathOther
}

func cleanPath(p string) string { return path.Clean("/" + p) }

// maybeSpecial is a quick screen: a path without any of these cannot be a
// licensing, licence-information or download path in any spelling that
// classifyStock recognises.
func maybeSpecial(p string) bool {
	return strings.ContainsAny(p, `%\`) || containsFold(p, "icens") || containsFold(p, "download") || containsFold(p, "info")
}

// containsFold reports whether s contains the lower-case ASCII sub, in any
// ASCII case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && s[i+j]|0x20 == sub[j] {
			j++
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

// stock runs a stock route's stage between the caller check and the
// forward: licences are guarded (and answered here when refused),
// downloads go to the download host, and the answers that carry download
// URLs are held back to rewrite them. It returns the writer to forward
// with and the held answer to finish afterwards (nil when not held); ok is
// false when the request has been answered.
func (rt *Route) stock(w http.ResponseWriter, r *http.Request, caller *Caller) (_ http.ResponseWriter, _ *heldAnswer, ok bool) {
	if rt.cfg.Type != config.TypeStock {
		return w, nil, true
	}
	allowEditorial := strings.EqualFold(strings.TrimSpace(r.Header.Get(allowEditorialHeader)), "true")
	delete(r.Header, allowEditorialHeader)
	switch classifyStock(r.URL.Path) {
	case pathLicence:
		a, ok := rt.guardLicence(w, r, caller, allowEditorial)
		if !ok {
			return nil, nil, false
		}
		h := rt.hold(w, r)
		h.attempt = a
		return h, h, true
	case pathLicensing:
		h := rt.hold(w, r)
		return h, h, true
	case pathDownload:
		rt.serveDownload(w, r)
		return nil, nil, false
	}
	return w, nil, true
}
