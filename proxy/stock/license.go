package stock

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/route"
)

// licenseBodyTime is how long a license's answer may take to arrive after
// its headers (which TIMEOUT bounds): the license is completed in a
// context of its own, which this bounds.
const licenseBodyTime = 30 * time.Second

// budgetRetry is the Retry-After of a license refused because the shared
// budget could not be asked: Redis is checked again every second.
const budgetRetry = 5 * time.Second

// license serves a licensing call: the guards, the attempt's audit line,
// then the call forwarded with its answer held until it is complete, so
// that its outcome is settled (audited, counted) before the caller sees it
// and its download URLs are rewritten.
//
// Once forwarded, the license is completed whatever the caller does:
// Stock sells it before its answer crosses the network, so a caller that
// hangs up (a client timeout shorter than Stock's answer time) must not
// cancel the request, nor leave its outcome unread and its slot of the
// daily limit given back.
func (p *Policy) license(w http.ResponseWriter, r *http.Request, next http.Handler, allowEditorial bool) {
	a, ok := p.guard(w, r, allowEditorial)
	if !ok {
		return
	}
	if err := a.writeAttempt(); err != nil {
		where := "the audit log (IMSPROXY_AUDIT_LOG)"
		if p.opts.Audit == nil {
			where = "the fleet's audit trail in Redis"
		}
		a.refuse(w, r, http.StatusServiceUnavailable, route.CodeAuditUnavailable,
			"The license was not requested: its line in "+where+" could not be written; retry later, and tell the operator.")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.cfg.Timeout+licenseBodyTime)
	defer cancel()
	// Whether the request left for Stock tells a license that cannot have
	// been made (no token, no connection) from one whose answer was lost.
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { a.sent.Store(true) }})
	r = r.WithContext(ctx)
	h := p.hold(w, r)
	h.attempt = a
	defer h.abandon() // settles a license cut short by a panic
	next.ServeHTTP(h, r)
	h.finish()
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

	// The attempt line's id is chosen now: a reservation whose replica
	// dies is audited with it.
	a.id = audit.NewAttemptID()
	reserving := a.rec
	reserving.Attempt = a.id
	slot, err := p.opts.Budget.Reserve(r.Context(), reserving)
	var spent *SpentError
	switch {
	case errors.As(err, &spent):
		route.RetryAfter(w, spent.RetryAfter)
		a.refuse(w, r, http.StatusTooManyRequests, route.CodeLicenseLimitReached,
			"Route "+rc.Name+" has made its "+strconv.Itoa(spent.Limit)+" licenses for today ("+rc.Var("LICENSE_DAILY_LIMIT")+"); retry after midnight UTC or ask the operator to raise the limit.")
		return nil, false
	case err != nil:
		// The count is shared (fleet mode) and Redis cannot be asked: a
		// count kept here instead would let every replica spend the limit.
		route.RetryAfter(w, budgetRetry)
		a.refuse(w, r, http.StatusServiceUnavailable, route.CodeLicenseLimitUnavailable,
			"The license was not requested: the daily license count could not be checked; retry later.")
		logf(r, slog.LevelWarn, "license budget unavailable", slog.String("error", err.Error()))
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
// the audit lines and counts the outcome once the answer is known.
type attempt struct {
	p       *Policy
	r       *http.Request
	rec     audit.Record
	id      string      // of the attempt line, once the budget is asked
	slot    Slot        // held while the call is forwarded; nil otherwise
	sent    atomic.Bool // the request was written to Stock (set by the transport's goroutine)
	settled bool
}

// writeAttempt writes the attempt line of a license about to be
// forwarded, synced to disk: if the proxy stops before the outcome is
// known, the license still counts at the next start. In fleet mode the
// line also goes to the fleet's audit trail, which refuses the license
// only when it is the one audit kept (no IMSPROXY_AUDIT_LOG): beside a
// local log it is a copy, as its outcome records are.
func (a *attempt) writeAttempt() error {
	opts := a.p.opts
	if opts.Audit == nil && opts.Trail == nil {
		return nil
	}
	a.rec.Attempt = cmp.Or(a.id, audit.NewAttemptID())
	rec := a.rec
	rec.Time, rec.Outcome = opts.Now().UTC(), audit.OutcomeAttempt
	var err error
	if opts.Audit != nil {
		err = opts.Audit.Write(rec)
	}
	if err == nil && opts.Trail != nil {
		if terr := opts.Trail.Write(rec); opts.Audit == nil {
			err = terr
		}
	}
	if err != nil {
		a.rec.Attempt = "" // no attempt line to pair with
	}
	return err
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
	a.rec.Time = p.opts.Now().UTC()
	a.rec.Outcome, a.rec.Status, a.rec.UpstreamStatus, a.rec.PurchaseState = outcome, status, upstream, state
	recorded := false
	if a.slot != nil {
		// The caller may be gone; the count must be settled all the same.
		recorded = a.slot.Settle(context.WithoutCancel(a.r.Context()), audit.Counts(outcome), a.rec)
		a.slot = nil
	}
	if p.opts.Audit != nil {
		_ = p.opts.Audit.Write(a.rec)
	}
	if p.opts.Trail != nil && !recorded {
		_ = p.opts.Trail.Write(a.rec)
	}
	p.opts.Count(outcome)
	if audit.Counts(outcome) {
		p.opts.OnLicensed(a.r.Context())
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

// settleAnswer settles the call from the answer it got. A license that
// never left for Stock (no token, no connection) failed. One that left
// failed only when Stock refused it (4xx); without an answer (a timeout,
// a reset connection, the proxy's own error after sending) or with a 5xx
// or anything but a 2xx, Stock may have licensed, so the outcome is
// unknown and counts toward the limit. A 2xx is judged by
// purchase_details.state; an unreadable one counts as a license: the
// daily limit must not under-count what may have been spent. It is a
// no-op on nil.
func (a *attempt) settleAnswer(status int, proxyMade bool, body []byte) {
	if a == nil {
		return
	}
	upstream := status
	if proxyMade {
		upstream = 0
	}
	switch {
	case !a.sent.Load():
		a.settle(audit.OutcomeFailed, status, upstream, "")
		return
	case proxyMade:
		a.settle(audit.OutcomeUnknown, status, upstream, "")
		return
	case status/100 == 4:
		a.settle(audit.OutcomeFailed, status, upstream, "")
		return
	case status/100 != 2:
		a.settle(audit.OutcomeUnknown, status, upstream, "")
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
