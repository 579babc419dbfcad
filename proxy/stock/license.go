package stock

import (
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// license serves a licensing call: the guards, then the call forwarded with
// its answer held until it is complete, so that its outcome is settled
// (audited, counted) before the caller sees it and its download URLs are
// rewritten.
func (p *Policy) license(w http.ResponseWriter, r *http.Request, next http.Handler, allowEditorial bool) {
	a, ok := p.guard(w, r, allowEditorial)
	if !ok {
		return
	}
	h := p.hold(w, r)
	h.attempt = a
	defer h.abandon() // settles a license cut short by a panic
	next.ServeHTTP(h, r)
	h.finish()
}

// licenseRequest is what a licensing call asks for.
type licenseRequest struct {
	ContentID string // canonical decimal digits
	License   string // "" when absent
	Again     bool   // license_again=true: license (and pay) again
}

// parseLicenseQuery reads the query of a Content/License call. It is
// strict where Stock and the proxy could read the same query differently:
// one content_id, in canonical digits (the editorial check must look up
// the asset Stock will license); at most one license and license_again;
// no array forms (content_id[]=).
func parseLicenseQuery(rawQuery string) (licenseRequest, error) {
	var lr licenseRequest
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return lr, errors.New("the query does not parse; send content_id and license as ordinary query parameters")
	}
	for k := range q {
		for _, name := range []string{"content_id", "license", "license_again"} {
			if k != name && strings.HasPrefix(k, name+"[") {
				return lr, errors.New("send " + name + " once, as a plain value (" + name + "[] is not accepted)")
			}
		}
	}
	ids := q["content_id"]
	if len(ids) != 1 || !canonicalID(ids[0]) {
		return lr, errors.New("send exactly one content_id: the asset's numeric id, without leading zeros")
	}
	lr.ContentID = ids[0]
	switch lics := q["license"]; {
	case len(lics) > 1:
		return lr, errors.New("send license at most once")
	case len(lics) == 1:
		if !licenseName(lics[0]) {
			return lr, errors.New("license must be a license type such as Standard, Extended or Video_HD")
		}
		lr.License = lics[0]
	}
	switch again := q["license_again"]; {
	case len(again) > 1:
		return lr, errors.New("send license_again at most once")
	case len(again) == 1:
		lr.Again = again[0] == "true" || again[0] == "1"
	}
	return lr, nil
}

// canonicalID accepts 1 to 18 decimal digits without a leading zero.
func canonicalID(s string) bool {
	if s == "" || len(s) > 18 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// licenseName accepts the shape of Stock's license types (Standard,
// Video_HD, Standard_M, Internal_Use...): at most 64 letters, digits,
// underscores and hyphens.
func licenseName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkLicenseBody refuses a form-encoded body: the documented body is JSON
// license references, and a form could carry a second content_id that the
// guard would not see.
func checkLicenseBody(r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" || strings.HasPrefix(mt, "multipart/") {
		return errors.New("send license references as a JSON body ({\"cce_agency\":[...]}), not a form")
	}
	return nil
}

// guard applies the licensing guards in order: licensing enabled on the
// route, the caller's license right, a well-formed request, the daily
// limit, the editorial check. A refused call is answered and audited here.
func (p *Policy) guard(w http.ResponseWriter, r *http.Request, allowEditorial bool) (*attempt, bool) {
	a := p.newAttempt(r)
	rc := p.cfg
	caller := route.Caller(r)
	lr, bad := parseLicenseQuery(r.URL.RawQuery)
	if bad == nil {
		bad = checkLicenseBody(r)
	}
	switch {
	case !rc.AllowLicense:
		a.refuse(w, r, http.StatusForbidden, route.CodeLicensingDisabled,
			"Licensing spends the organisation's Stock credits and is off on route "+rc.Name+"; the operator can enable it with "+rc.Var("ALLOW_LICENSE")+"=true.")
		return nil, false
	case caller != nil && !caller.License:
		a.refuse(w, r, http.StatusForbidden, route.CodeForbidden,
			"Caller "+caller.Name+" may not license Stock content; ask the operator to set \"license\": true in its entry in IMSPROXY_CALLERS_FILE.")
		return nil, false
	case bad != nil:
		a.refuse(w, r, http.StatusBadRequest, audit.OutcomeBadRequest, "The license was not requested: "+bad.Error()+".")
		return nil, false
	}
	a.rec.LicenseAgain = lr.Again

	slot, err := p.opts.Budget.Reserve(r.Context())
	var spent *SpentError
	switch {
	case errors.As(err, &spent):
		route.RetryAfter(w, spent.RetryAfter)
		a.refuse(w, r, http.StatusTooManyRequests, route.CodeLicenseLimitReached,
			"Route "+rc.Name+" has made its "+strconv.Itoa(spent.Limit)+" licenses for today ("+rc.Var("LICENSE_DAILY_LIMIT")+"); retry after midnight UTC or ask the operator to raise the limit.")
		return nil, false
	case err != nil:
		// Not reachable with the limit kept in this process.
		a.refuse(w, r, http.StatusServiceUnavailable, route.CodeLicenseLimitUnavailable,
			"The license was not requested: the daily license count could not be checked; retry later.")
		return nil, false
	}
	a.slot = slot

	if allowEditorial {
		a.rec.Editorial = "override"
		return a, true
	}
	editorial, err := p.isEditorial(r, lr.ContentID)
	switch {
	case err != nil:
		a.rec.Editorial = "unknown"
		p.editorialCheckFailed(w, r, a, lr.ContentID, err)
		return nil, false
	case editorial:
		a.rec.Editorial = "yes"
		a.refuse(w, r, http.StatusForbidden, route.CodeEditorialUseOnly,
			"Content "+lr.ContentID+" is editorial use only (Stock marks it so): it may not be used commercially; to license it anyway, send "+allowEditorialHeader+": true.")
		return nil, false
	}
	a.rec.Editorial = "no"
	return a, true
}

// attempt is one licensing call on its way through the route: it writes
// the audit line and counts the outcome once the answer is known.
type attempt struct {
	p       *Policy
	r       *http.Request
	rec     audit.Record
	slot    Slot // held while the call is forwarded; nil otherwise
	settled bool
}

func (p *Policy) newAttempt(r *http.Request) *attempt {
	rec := audit.Record{
		RequestID: route.ID(r),
		Route:     p.cfg.Name,
		Remote:    route.RemoteIP(r),
		Method:    r.Method,
	}
	if c := route.Caller(r); c != nil {
		rec.Caller = c.Name
	}
	// Even a malformed request is recorded with whatever parses.
	q, _ := url.ParseQuery(r.URL.RawQuery)
	if id := q.Get("content_id"); canonicalID(id) {
		rec.ContentID = id
	}
	if lic := q.Get("license"); licenseName(lic) {
		rec.License = lic
	}
	return &attempt{p: p, r: r, rec: rec}
}

// refuse answers the call with a proxy error and settles it.
func (a *attempt) refuse(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	route.Error(w, r, status, code, message)
	a.settle(code, status, 0, "")
}

// settle releases the daily-limit slot (counting a license), writes the
// audit line, counts the metric and logs. It runs once.
func (a *attempt) settle(outcome string, status, upstream int, state string) {
	if a == nil || a.settled {
		return
	}
	a.settled = true
	p := a.p
	if a.slot != nil {
		a.slot.Settle(a.r.Context(), outcome == audit.OutcomeLicensed)
		a.slot = nil
	}
	a.rec.Time = p.opts.Now().UTC()
	a.rec.Outcome, a.rec.Status, a.rec.UpstreamStatus, a.rec.PurchaseState = outcome, status, upstream, state
	if p.opts.Audit != nil {
		_ = p.opts.Audit.Write(a.rec)
	}
	p.opts.Count(outcome)
	if outcome == audit.OutcomeLicensed {
		p.opts.OnLicensed()
	}
	attrs := []slog.Attr{slog.String("content_id", a.rec.ContentID), slog.String("license", a.rec.License), slog.String("outcome", outcome)}
	if upstream == 0 {
		// Refused by the proxy: the request's one error line says so.
		route.Note(a.r, slog.LevelInfo, "license refused", attrs...)
		return
	}
	logf(a.r, slog.LevelInfo, "licensing", append(attrs,
		slog.Int("status", status), slog.Int("upstream_status", upstream), slog.String("purchase_state", state))...)
}

// settleAnswer settles the call from the answer it got: proxy-made errors
// (no token, Stock unreachable) and Stock's own errors fail; a 2xx is
// judged by purchase_details.state. An unreadable 2xx counts as a license:
// the daily limit must not under-count what may have been spent. It is a
// no-op on nil.
func (a *attempt) settleAnswer(status int, proxyMade bool, body []byte) {
	if a == nil {
		return
	}
	upstream := status
	if proxyMade {
		upstream = 0
	}
	if proxyMade || status/100 != 2 {
		a.settle(audit.OutcomeFailed, status, upstream, "")
		return
	}
	state := purchaseState(body, a.rec.ContentID)
	outcome := audit.OutcomeLicensed
	switch state {
	case "purchased":
		outcome = audit.OutcomeAlreadyLicensed
	case "not_possible", "cancelled", "not_purchased":
		outcome = audit.OutcomeNotPossible
	}
	a.settle(outcome, status, upstream, state)
}

// purchaseState reads contents.<id>.purchase_details.state of a license
// answer ("" when absent).
func purchaseState(body []byte, contentID string) string {
	var ans struct {
		Contents map[string]struct {
			PurchaseDetails struct {
				State string `json:"state"`
			} `json:"purchase_details"`
		} `json:"contents"`
	}
	if json.Unmarshal(body, &ans) != nil {
		return ""
	}
	if c, ok := ans.Contents[contentID]; ok {
		return c.PurchaseDetails.State
	}
	if len(ans.Contents) == 1 {
		for _, c := range ans.Contents {
			return c.PurchaseDetails.State
		}
	}
	return ""
}
