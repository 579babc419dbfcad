package proxy

import (
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// Licensing outcomes: the audit log's "outcome" and the outcome label of
// imsproxy_licenses_total. Refusals by the proxy use their error code
// (CodeUnauthorizedCaller, CodeForbidden, CodeBodyTooLarge,
// CodeLicensingDisabled, CodeLicenseLimitReached, CodeEditorialUseOnly) or
// one of these.
const (
	outcomeLicensed        = "licensed"         // Stock licensed the content: credits may have been spent
	outcomeAlreadyLicensed = "already_licensed" // the organisation held that licence already; nothing spent
	outcomeNotPossible     = "not_possible"     // Stock answered but did not license (no quota, cancelled)
	outcomeFailed          = "failed"           // Stock answered an error, or could not be asked
	outcomeBadRequest      = "bad_request"      // content_id or license malformed or repeated
	outcomeEditorialCheck  = "editorial_check_failed"
)

// licenceRequest is what a licensing call asks for.
type licenceRequest struct {
	ContentID string // canonical decimal digits
	License   string // "" when absent
	Again     bool   // license_again=true: license (and pay) again
}

// parseLicenceQuery reads the query of a Content/License call. It is
// strict where Stock and the proxy could read the same query differently:
// one content_id, in canonical digits (the editorial check must look up
// the asset Stock will license); at most one license and license_again;
// no array forms (content_id[]=).
func parseLicenceQuery(rawQuery string) (licenceRequest, error) {
	var lr licenceRequest
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
		if !licenceName(lics[0]) {
			return lr, errors.New("license must be a licence type such as Standard, Extended or Video_HD")
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

// licenceName accepts the shape of Stock's licence types (Standard,
// Video_HD, Standard_M, Internal_Use...): at most 64 letters, digits,
// underscores and hyphens.
func licenceName(s string) bool {
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

// checkLicenceBody refuses a form-encoded body: the documented body is JSON
// licence references, and a form could carry a second content_id that the
// guard would not see.
func checkLicenceBody(r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" || strings.HasPrefix(mt, "multipart/") {
		return errors.New("send licence references as a JSON body ({\"cce_agency\":[...]}), not a form")
	}
	return nil
}

// licenceAttempt is one licensing call on its way through the route: it
// writes the audit line and counts the outcome once the answer is known.
type licenceAttempt struct {
	rt       *Route
	rec      AuditRecord
	answer   *recorder // of the call's answer; nil outside a route's request
	reserved bool      // holds a slot of the daily limit
	settled  bool
}

func (rt *Route) newAttempt(w http.ResponseWriter, r *http.Request, caller *Caller) *licenceAttempt {
	rec := AuditRecord{
		RequestID: r.Header.Get(requestIDHeader),
		Route:     rt.cfg.Name,
		Remote:    remoteIP(r),
		Method:    r.Method,
	}
	if caller != nil {
		rec.Caller = caller.Name
	}
	// Even a malformed request is recorded with whatever parses.
	q, _ := url.ParseQuery(r.URL.RawQuery)
	if id := q.Get("content_id"); canonicalID(id) {
		rec.ContentID = id
	}
	if lic := q.Get("license"); licenceName(lic) {
		rec.License = lic
	}
	return &licenceAttempt{rt: rt, rec: rec, answer: recorderOf(w)}
}

// auditRefusal records a licensing call refused before the licence guard
// (an unknown caller, a route the caller may not use).
func (rt *Route) auditRefusal(w http.ResponseWriter, r *http.Request, caller *Caller, outcome string, status int) {
	if rt.cfg.Type != config.TypeStock || classifyStock(r.URL.Path) != pathLicence {
		return
	}
	rt.newAttempt(w, r, caller).settle(outcome, status, 0, "")
}

// guardLicence applies the licensing guards in order: licensing enabled
// on the route, the caller's licence right, a well-formed request, the
// daily limit, the editorial check. A refused call is answered and
// audited here.
func (rt *Route) guardLicence(w http.ResponseWriter, r *http.Request, caller *Caller, allowEditorial bool) (*licenceAttempt, bool) {
	a := rt.newAttempt(w, r, caller)
	name, env := rt.cfg.Name, "IMSPROXY_"+envName(rt.cfg.Name)+"_"
	lr, bad := parseLicenceQuery(r.URL.RawQuery)
	if bad == nil {
		bad = checkLicenceBody(r)
	}
	switch {
	case !rt.cfg.AllowLicense:
		a.refuse(w, http.StatusForbidden, CodeLicensingDisabled,
			"Licensing spends the organisation's Stock credits and is off on route "+name+"; the operator can enable it with "+env+"ALLOW_LICENSE=true.")
		return nil, false
	case caller != nil && !caller.License:
		a.refuse(w, http.StatusForbidden, CodeForbidden,
			"Caller "+caller.Name+" may not license Stock content; ask the operator to set \"license\": true in its entry in IMSPROXY_CALLERS_FILE.")
		return nil, false
	case bad != nil:
		a.refuse(w, http.StatusBadRequest, outcomeBadRequest, "The licence was not requested: "+bad.Error()+".")
		return nil, false
	}
	a.rec.LicenseAgain = lr.Again

	now := rt.guards.now()
	if !rt.guards.limit.reserve(now) {
		w.Header().Set("Retry-After", retryAfterSeconds(startOfUTCDay(now).Add(24*time.Hour).Sub(now)))
		a.refuse(w, http.StatusTooManyRequests, CodeLicenseLimitReached,
			"Route "+name+" has made its "+itoa(int64(rt.cfg.LicenseDailyLimit))+" licences for today ("+env+"LICENSE_DAILY_LIMIT); retry after midnight UTC or ask the operator to raise the limit.")
		return nil, false
	}
	a.reserved = true

	if allowEditorial {
		a.rec.Editorial = "override"
		return a, true
	}
	editorial, err := rt.isEditorial(r, lr.ContentID)
	switch {
	case err != nil:
		a.rec.Editorial = "unknown"
		rt.editorialCheckFailed(w, r, a, lr.ContentID, err)
		return nil, false
	case editorial:
		a.rec.Editorial = "yes"
		a.refuse(w, http.StatusForbidden, CodeEditorialUseOnly,
			"Content "+lr.ContentID+" is editorial use only (Stock marks it so): it may not be used commercially; to license it anyway, send "+allowEditorialHeader+": true.")
		return nil, false
	}
	a.rec.Editorial = "no"
	return a, true
}

// refuse answers the call with a proxy error and settles it.
func (a *licenceAttempt) refuse(w http.ResponseWriter, status int, code, message string) {
	rt := a.rt
	if code == outcomeBadRequest {
		writeError(w, status, "bad_request", message, rt.cfg.Name)
	} else {
		writeError(w, status, code, message, rt.cfg.Name)
	}
	a.settle(code, status, 0, "")
}

// settle releases the daily-limit slot (counting a licence), writes the
// audit line, counts the metric and logs. It runs once.
func (a *licenceAttempt) settle(outcome string, status, upstream int, state string) {
	if a == nil || a.settled {
		return
	}
	a.settled = true
	rt := a.rt
	now := rt.guards.now()
	if a.reserved {
		rt.guards.limit.settle(now, outcome == outcomeLicensed)
		a.reserved = false
	}
	a.rec.Time = now.UTC()
	a.rec.Outcome, a.rec.Status, a.rec.UpstreamStatus, a.rec.PurchaseState = outcome, status, upstream, state
	_ = rt.guards.audit.Write(a.rec)
	if rt.metrics != nil {
		rt.metrics.Licence(rt.cfg.Name, outcome)
	}
	if outcome == outcomeLicensed {
		// Search answers carry is_licensed, which has just changed (SPEC §5).
		rt.PurgeCache("licence")
	}
	if upstream == 0 && a.answer != nil {
		// Refused by the proxy: the request's one error line says so.
		attrs := []slog.Attr{slog.String("content_id", a.rec.ContentID), slog.String("license", a.rec.License), slog.String("outcome", outcome)}
		if a.rec.Caller != "" { // known only with a callers file
			attrs = append(attrs, slog.String("caller", a.rec.Caller))
		}
		a.answer.note(slog.LevelInfo, "licence refused", attrs...)
		return
	}
	rt.log.Info("licensing", "route", a.rec.Route, "request_id", a.rec.RequestID, "caller", a.rec.Caller,
		"content_id", a.rec.ContentID, "license", a.rec.License, "outcome", outcome,
		"status", status, "upstream_status", upstream, "purchase_state", state)
}

// settleAnswer settles the call from the answer it got: proxy-made errors
// (no token, Stock unreachable) and Stock's own errors fail; a 2xx is
// judged by purchase_details.state. An unreadable 2xx counts as a licence:
// the daily limit must not under-count what may have been spent. It is a
// no-op on nil.
func (a *licenceAttempt) settleAnswer(status int, proxyMade bool, body []byte) {
	if a == nil {
		return
	}
	upstream := status
	if proxyMade {
		upstream = 0
	}
	if proxyMade || status/100 != 2 {
		a.settle(outcomeFailed, status, upstream, "")
		return
	}
	state := purchaseState(body, a.rec.ContentID)
	outcome := outcomeLicensed
	switch state {
	case "purchased":
		outcome = outcomeAlreadyLicensed
	case "not_possible", "cancelled", "not_purchased":
		outcome = outcomeNotPossible
	}
	a.settle(outcome, status, upstream, state)
}

// purchaseState reads contents.<id>.purchase_details.state of a licence
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

// licenceLimit is a route's LICENSE_DAILY_LIMIT: licences per UTC day. A
// call holds a slot from before it is forwarded until its answer, so
// concurrent calls cannot overshoot the limit together.
type licenceLimit struct {
	max int // 0: none

	mu       sync.Mutex
	day      string
	count    int // licences made on day
	inflight int // calls forwarded and not yet answered
}

// newLicenceLimit starts the limit with the count of licences made on day
// (read from the audit log).
func newLicenceLimit(max int, day string, count int) *licenceLimit {
	return &licenceLimit{max: max, day: day, count: count}
}

// reserve takes a slot, or reports that the day's licences are spent.
func (l *licenceLimit) reserve(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(now)
	if l.max > 0 && l.count+l.inflight >= l.max {
		return false
	}
	l.inflight++
	return true
}

// settle gives a slot back, counting a licence when one was made.
func (l *licenceLimit) settle(now time.Time, licensed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(now)
	l.inflight--
	if licensed {
		l.count++
	}
}

// rollLocked starts a new count at midnight UTC.
func (l *licenceLimit) rollLocked(now time.Time) {
	if day := utcDay(now); day != l.day {
		l.day, l.count = day, 0
	}
}

// remoteIP is the caller's IP address, for logs and the audit log.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
