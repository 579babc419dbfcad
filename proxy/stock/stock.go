// Package stock is the Stock policy stage of a stock route: licensing
// calls (which spend the organisation's credits) pass the guards — enabled
// on the route, the caller's license right, a well-formed request, the
// daily limit, the editorial check — and are audited; downloads go to
// Stock's download host with the token in the query instead of a header;
// and the download URLs in licensing answers are rewritten to the route's
// own address, so that a caller never needs the token.
package stock

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// allowEditorialHeader is how a caller accepts an editorial-use-only
// asset. It is the proxy's own header and never goes upstream.
const allowEditorialHeader = "X-Imsproxy-Allow-Editorial"

// Auditor records licensing attempts (the audit log).
type Auditor interface {
	// Write appends rec. An error means the line is not on disk: the
	// attempt line of a license must be, so the license is refused.
	Write(rec audit.Record) error
}

// Limiter bounds the memory held for answers being rewritten across all
// requests (an *inflight.Limiter): a licensing answer waits for room,
// and is never cut short.
type Limiter interface {
	// Wait reserves n bytes, waiting until there is room or ctx is done.
	Wait(ctx context.Context, n int) error
	// Release gives back n reserved bytes.
	Release(n int)
}

// Options is what the policy of one stock route works with.
type Options struct {
	// Audit records every licensing attempt; nil: none kept.
	Audit Auditor
	// Trail is the audit trail a fleet shares (fleet mode): it gets every
	// attempt line, and the outcomes whose Slot did not record them; nil:
	// none.
	Trail Auditor
	// Budget is the route's LICENSE_DAILY_LIMIT; nil: no limit.
	Budget Budget
	// Lookup carries the editorial check's search to the upstream with
	// the route's credentials (a tokens.Transport).
	Lookup http.RoundTripper
	// Download forwards a download to DOWNLOAD_UPSTREAM with the token in
	// the query; nil: the route has no download host.
	Download http.Handler
	// OnLicensed runs after each license made through the route: search
	// answers carry is_licensed, so the search cache empties itself.
	OnLicensed func(ctx context.Context)
	// Count counts licensing attempts by outcome; nil: not counted.
	Count func(outcome string)
	// Now is the clock of the editorial cache and the audit; nil: time.Now.
	Now func() time.Time
	// Limiter bounds the memory of the answers held; nil: only each
	// answer's own bound (8 MiB).
	Limiter Limiter
}

// Policy is the Stock policy of one route.
type Policy struct {
	cfg       *config.Route
	opts      Options
	editorial *editorialCache
	lookup    *http.Client
	// downloadBase is DOWNLOAD_UPSTREAM without a trailing slash: download
	// URLs that start with it are rewritten to the route's own address.
	downloadBase string
}

// New returns the policy of stock route rc.
func New(rc *config.Route, opts Options) *Policy {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Budget == nil {
		opts.Budget = unlimited{}
	}
	if opts.Count == nil {
		opts.Count = func(string) {}
	}
	if opts.OnLicensed == nil {
		opts.OnLicensed = func(context.Context) {}
	}
	p := &Policy{cfg: rc, opts: opts, editorial: newEditorialCache(opts.Now),
		// The lookup carries the route's token: it never follows a
		// redirect, which could take the token to another host.
		lookup: &http.Client{Transport: opts.Lookup, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
	if rc.DownloadUpstream != nil {
		p.downloadBase = strings.TrimSuffix(rc.DownloadUpstream.String(), "/")
	}
	return p
}

// Handler returns the policy stage in front of next.
func (p *Policy) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowEditorial := false
		if v := r.Header[allowEditorialHeader]; v != nil { // the name is canonical already
			allowEditorial = len(v) > 0 && strings.EqualFold(strings.TrimSpace(v[0]), "true")
			delete(r.Header, allowEditorialHeader)
		}
		special, ambiguous := scanPath(r.URL.Path)
		if ambiguous {
			p.refusePath(w, r)
			return
		}
		kind := pathOther // most requests (searches): decided without allocating
		if special {
			kind = classifySpecial(r.URL.Path)
		}
		switch kind {
		case pathLicense:
			p.license(w, r, next, allowEditorial)
		case pathLicensing:
			h := p.hold(w, r)
			next.ServeHTTP(h, r)
			h.finish()
		case pathDownload:
			p.download(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// Refused audits a licensing call that an earlier stage refused (an
// unknown caller, a route the caller may not use, a body too large); it
// is the callers stage's RefusedFunc.
func (p *Policy) Refused(r *http.Request, code string, status int) {
	if classify(r.URL.Path) == pathLicense {
		p.newAttempt(r).settle(code, status, 0, "")
	}
}

// refusePath answers a path that servers read differently; on a path
// that may be a license, the refusal is audited.
func (p *Policy) refusePath(w http.ResponseWriter, r *http.Request) {
	msg := "Send the path as Stock documents it: a path with \";\", characters outside ASCII or beginning with \"//\" is read differently by different servers."
	if containsFold(r.URL.Path, "licen") || classify(r.URL.Path) == pathLicense {
		p.newAttempt(r).refuse(w, r, http.StatusBadRequest, audit.OutcomeBadRequest, "The license was not requested. "+msg)
		return
	}
	route.Error(w, r, http.StatusBadRequest, route.CodeBadRequest, msg)
}

// download forwards a download to DOWNLOAD_UPSTREAM.
func (p *Policy) download(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Nothing but a GET carries the route's token to the download host.
		w.Header().Set("Allow", "GET, HEAD")
		route.Error(w, r, http.StatusMethodNotAllowed, route.CodeMethodNotAllowed, "Downloads are fetched with GET.")
		return
	}
	if p.opts.Download == nil {
		route.Error(w, r, http.StatusNotFound, route.CodeNotFound, "This route has no download host (DOWNLOAD_UPSTREAM).")
		return
	}
	p.opts.Download.ServeHTTP(w, r)
}

// stockPath sorts the paths a stock route treats specially.
type stockPath int

const (
	pathOther     stockPath = iota
	pathLicense             // Content/License, any method: the licensing guards
	pathLicensing           // Content/Info, Member/LicenseHistory: download URLs rewritten
	pathDownload            // the download host's paths: token in the query
)

const (
	licensePrefix = "/rest/libraries/1/content/license"
	downloadPath  = "/rest/libraries/download/"
	watermarked   = "/rest/libraries/watermarked/download/"
)

// classify sorts a request path. Licensing is recognised however the path
// is spelt — any case, backslashes, dot segments, doubled slashes, a
// second level of percent-encoding, anything after "License" — because an
// upstream that normalises a spelling the guard missed would license
// unguarded: when in doubt, a path is a license.
func classify(p string) stockPath {
	if special, _ := scanPath(p); !special {
		return pathOther
	}
	return classifySpecial(p)
}

// classifySpecial is classify of a path scanPath found special.
func classifySpecial(p string) stockPath {
	forms := []string{p}
	if u, err := url.PathUnescape(p); err == nil && u != p {
		forms = append(forms, u)
	}
	for _, f := range forms {
		f = strings.ToLower(strings.ReplaceAll(f, `\`, "/"))
		if strings.HasPrefix(f, licensePrefix) || strings.HasPrefix(cleanPath(f), licensePrefix) {
			return pathLicense
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

// logf logs a line about the request with its fields.
func logf(r *http.Request, level slog.Level, msg string, attrs ...slog.Attr) {
	route.Log(r.Context(), level, msg, attrs...)
}
