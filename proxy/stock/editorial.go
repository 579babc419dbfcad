package stock

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// The editorial check: before a license is forwarded, Stock is asked
// whether the content is editorial use only, which Stock's own clients do
// not warn about. Whatever keeps the check from deciding refuses the
// license: it fails closed.

const (
	editorialTTL       = 5 * time.Minute // an asset's editorial flag practically never changes
	editorialCacheSize = 1024
	maxLookupBody      = 1 << 20
)

// editorialCache remembers recent answers of the check, per route (an
// answer depends on the route's credentials like any search).
type editorialCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]editorialEntry
}

type editorialEntry struct {
	editorial bool
	expires   time.Time
}

func newEditorialCache(now func() time.Time) *editorialCache {
	return &editorialCache{now: now, m: map[string]editorialEntry{}}
}

func (c *editorialCache) get(id string) (editorial, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || !c.now().Before(e.expires) {
		return false, false
	}
	return e.editorial, true
}

func (c *editorialCache) put(id string, editorial bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.m) >= editorialCacheSize {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= editorialCacheSize {
			clear(c.m) // all fresh: start over rather than track recency
		}
	}
	c.m[id] = editorialEntry{editorial: editorial, expires: now.Add(editorialTTL)}
}

// editorialError says why the check could not decide.
type editorialError struct {
	kind   editorialFailure
	status int   // Stock's status for failStatus
	err    error // the token or transport error
}

type editorialFailure int

const (
	failToken     editorialFailure = iota // no token to ask with (err is a *tokens.UnavailableError)
	failTransport                         // Stock could not be reached or did not answer in time
	failStatus                            // Stock answered an error
	failUnlisted                          // the search does not list the content
	failNoFlag                            // the answer has no readable is_editorial
)

func (e *editorialError) Error() string {
	switch e.kind {
	case failToken:
		return "no token: " + e.err.Error()
	case failTransport:
		return route.RedactURL(e.err).Error()
	case failStatus:
		return "Search/Files answered HTTP " + strconv.Itoa(e.status)
	case failUnlisted:
		return "Search/Files does not list the content"
	}
	return "Search/Files gave no is_editorial for the content"
}

func (e *editorialError) Unwrap() error { return e.err }

// isEditorial asks Stock (or the cache) whether content id is editorial
// use only, with the route's credentials:
// Search/Files?search_parameters[media_id]=<id>&result_columns[]=is_editorial.
func (p *Policy) isEditorial(r *http.Request, id string) (bool, error) {
	if editorial, ok := p.editorial.get(id); ok {
		return editorial, nil
	}
	u := p.cfg.Upstream.JoinPath("/Rest/Media/1/Search/Files")
	// premium=all: Stock's search otherwise may leave premium content out;
	// id as well as is_editorial, to find the right row.
	u.RawQuery = "search_parameters%5Bmedia_id%5D=" + id +
		"&search_parameters%5Bfilters%5D%5Bpremium%5D=all&result_columns%5B%5D=id&result_columns%5B%5D=is_editorial"
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return false, &editorialError{kind: failTransport, err: err}
	}
	h := req.Header
	h.Set(route.RequestIDHeader, route.ID(r))
	if product := r.Header.Get("X-Product"); product != "" {
		h.Set("X-Product", product)
	} else if p.cfg.Product != "" {
		h.Set("X-Product", p.cfg.Product)
	}
	resp, err := p.lookup.Do(req)
	var unavailable *tokens.UnavailableError
	switch {
	case errors.As(err, &unavailable):
		return false, &editorialError{kind: failToken, err: err}
	case err != nil:
		return false, &editorialError{kind: failTransport, err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLookupBody))
	if err != nil {
		return false, &editorialError{kind: failTransport, err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return false, &editorialError{kind: failStatus, status: resp.StatusCode}
	}
	editorial, err := editorialFlag(body, id)
	if err != nil {
		return false, err
	}
	p.editorial.put(id, editorial)
	return editorial, nil
}

// editorialFlag finds content id in a Search/Files answer and reads its
// is_editorial, accepting a boolean, "true"/"false", 1/0 or "" (false).
func editorialFlag(body []byte, id string) (bool, error) {
	var ans struct {
		Files []map[string]json.RawMessage `json:"files"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return false, &editorialError{kind: failNoFlag}
	}
	for _, f := range ans.Files {
		if strings.Trim(string(f["id"]), `"`) != id {
			continue
		}
		switch strings.Trim(string(f["is_editorial"]), `"`) {
		case "true", "1":
			return true, nil
		case "false", "0", "":
			if len(f["is_editorial"]) > 0 {
				return false, nil
			}
		}
		return false, &editorialError{kind: failNoFlag}
	}
	return false, &editorialError{kind: failUnlisted}
}

// editorialCheckFailed refuses a license the check could not decide
// about, saying why and what to do.
func (p *Policy) editorialCheckFailed(w http.ResponseWriter, r *http.Request, a *attempt, id string, err error) {
	rc := p.cfg
	var ee *editorialError
	if !errors.As(err, &ee) {
		ee = &editorialError{kind: failTransport, err: err}
	}
	// The content id joins the line with the license attempt (settle).
	route.Note(r, slog.LevelWarn, "editorial check failed; license refused", slog.String("error", ee.Error()))
	status := http.StatusBadGateway
	switch {
	case r.Context().Err() != nil:
		status = route.StatusClientClosed
		w.WriteHeader(status)
	case ee.kind == failToken:
		route.UpstreamError(w, r, ee.err)
		status = http.StatusServiceUnavailable
	case ee.kind == failTransport && route.IsTimeout(ee.err):
		status = http.StatusGatewayTimeout
		route.Error(w, r, status, route.CodeUpstreamTimeout,
			"Stock did not answer the check of whether content "+id+" is editorial use only within "+rc.Timeout.String()+" ("+rc.Var("TIMEOUT")+"), so the license was not requested; retry later.")
	case ee.kind == failTransport:
		route.Error(w, r, status, route.CodeUpstreamUnreachable,
			"The proxy could not reach Stock to check whether content "+id+" is editorial use only, so the license was not requested; retry later.")
	case ee.kind == failStatus:
		route.Error(w, r, status, route.CodeUpstreamUnreachable,
			"The proxy could not check whether content "+id+" is editorial use only (Stock's search answered HTTP "+strconv.Itoa(ee.status)+"), so the license was not requested; retry later.")
	case ee.kind == failUnlisted:
		status = http.StatusForbidden
		route.Error(w, r, status, route.CodeEditorialUseOnly,
			"Stock's search does not list content "+id+", so the proxy cannot confirm that it is not editorial use only and did not request the license; check the id, or send "+allowEditorialHeader+": true to license it anyway.")
	default:
		status = http.StatusForbidden
		route.Error(w, r, status, route.CodeEditorialUseOnly,
			"Stock's search did not say whether content "+id+" is editorial use only, so the license was not requested; send "+allowEditorialHeader+": true to license it anyway.")
	}
	a.settle(audit.OutcomeEditorialCheck, status, 0, "")
}
