package fakeadobe

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// licence is one purchase of an asset by an organisation.
type licence struct {
	AssetID    int
	Licence    string
	N          int // the {n} of its download URL
	ClientID   string
	Date       time.Time
	References []LicenceReference
}

// LicenceReference is one enterprise licence reference sent in the body of
// POST Content/License ({"cce_agency":[{"id":"2","value":"Project"}]}).
type LicenceReference struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

// Licence is a licence as Licences reports it.
type Licence struct {
	AssetID    int                `json:"content_id"`
	Licence    string             `json:"license"`
	N          int                `json:"n"`
	ClientID   string             `json:"client_id"`
	Date       time.Time          `json:"date"`
	References []LicenceReference `json:"references,omitempty"`
}

// Licences lists the licences an organisation holds, oldest first.
func (s *Server) Licences(org string) []Licence {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[org]
	if o == nil {
		return nil
	}
	out := make([]Licence, 0, len(o.licences))
	for _, l := range o.licences {
		out = append(out, Licence{l.AssetID, l.Licence, l.N, l.ClientID, l.Date, slices.Clone(l.References)})
	}
	return out
}

// licensedBy maps asset ID → the latest licence an organisation holds.
func (s *Server) licensedBy(org string) map[int]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[int]string{}
	if o := s.orgs[org]; o != nil {
		for _, l := range o.licences {
			m[l.AssetID] = l.Licence
		}
	}
	return m
}

// contentParam reads content_id and finds the asset; on failure it has
// answered.
func (s *Server) contentParam(w http.ResponseWriter, r *stockRequest) (*asset, bool) {
	v := r.URL.Query().Get("content_id")
	id, err := strconv.Atoi(v)
	if err != nil || id <= 0 {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, "Required content_id parameter is missing or invalid")
		return nil, false
	}
	a := s.cat.byID[id]
	if a == nil {
		writeStockError(w, http.StatusNotFound, codeInvalidData, fmt.Sprintf("Content #%d could not be found", id))
		return nil, false
	}
	return a, true
}

// licenceParam checks license against the asset's type; required says
// whether it must be present and non-empty.
func licenceParam(w http.ResponseWriter, r *stockRequest, a *asset, required bool) (string, bool) {
	q := r.URL.Query()
	lic := q.Get("license")
	if lic == "" {
		if required {
			writeStockError(w, http.StatusBadRequest, codeInvalidParams, "Required license parameter is missing")
			return "", false
		}
		return "", true
	}
	if !slices.Contains(a.licences(), lic) {
		// The exact wording of Stock's answer (the Stock licensing reference).
		writeStockError(w, http.StatusBadRequest, codeInvalidParams,
			fmt.Sprintf("The license %q does not match type of content #%d", lic, a.ID))
		return "", false
	}
	return lic, true
}

func entitlement(quota int) map[string]any {
	return map[string]any{
		"quota": quota, "license_type_id": 42, "has_credit_model": false,
		"has_agency_model": true, "is_cce": true,
		"full_entitlement_quota": map[string]int{"image_quota": quota},
	}
}

func stockDate(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func (s *Server) downloadURL(r *http.Request, l *licence) string {
	return fmt.Sprintf("%s/Rest/Libraries/Download/%d/%d", s.downloadBaseFor(r), l.AssetID, l.N)
}

// latestLicenceLocked is the org's newest licence of an asset (of one
// licence type when lic is not "").
func latestLicenceLocked(o *orgState, assetID int, lic string) *licence {
	for i := len(o.licences) - 1; i >= 0; i-- {
		l := o.licences[i]
		if l.AssetID == assetID && (lic == "" || l.Licence == lic) {
			return l
		}
	}
	return nil
}

// contentInfo is GET /Rest/Libraries/1/Content/Info.
func (s *Server) contentInfo(w http.ResponseWriter, r *stockRequest) {
	a, ok := s.contentParam(w, r)
	if !ok {
		return
	}
	lic, ok := licenceParam(w, r, a, false)
	if !ok {
		return
	}
	s.mu.Lock()
	o := s.orgs[r.token.Org]
	l := latestLicenceLocked(o, a.ID, lic)
	member := o.memberID
	s.mu.Unlock()
	details := map[string]any{"member_id": member, "state": "not_purchased"}
	size := "Comp"
	if l != nil {
		details = map[string]any{"date": stockDate(l.Date), "license": l.Licence, "state": "purchased"}
		size = "Original"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"contents": map[string]any{strconv.Itoa(a.ID): map[string]any{
			"content_id": a.ID, "purchase_details": details, "size": size,
		}},
		"member": map[string]int{"member_id": member},
	})
}

// contentLicense is GET or POST /Rest/Libraries/1/Content/License: it
// licenses the asset, spending one licence of the organisation's quota,
// unless the organisation already holds that licence (then nothing is
// charged unless license_again=true).
func (s *Server) contentLicense(w http.ResponseWriter, r *stockRequest) {
	a, ok := s.contentParam(w, r)
	if !ok {
		return
	}
	lic, ok := licenceParam(w, r, a, true)
	if !ok {
		return
	}
	again := false
	switch v := r.URL.Query().Get("license_again"); v {
	case "", "false", "0":
	case "true", "1":
		again = true
	default:
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, "Invalid value for license_again: "+strconv.Quote(v))
		return
	}
	var refs []LicenceReference
	if r.Method == http.MethodPost {
		var err error
		if refs, err = licenceReferences(w, r.Request); err != nil {
			writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
			return
		}
	}
	now := s.now()
	s.mu.Lock()
	o := s.orgs[r.token.Org]
	state := "purchased"
	l := latestLicenceLocked(o, a.ID, lic)
	switch {
	case l != nil && !again:
		// Already licensed: download again for free.
	case o.quota <= 0:
		state, l = "not_possible", nil
	default:
		o.quota--
		n := 1
		if prev := latestLicenceLocked(o, a.ID, ""); prev != nil {
			n = prev.N + 1
		}
		l = &licence{AssetID: a.ID, Licence: lic, N: n, ClientID: r.token.ClientID, Date: now, References: refs}
		o.licences = append(o.licences, l)
		state = "just_purchased"
	}
	quota, member := o.quota, o.memberID
	s.mu.Unlock()
	if state == "just_purchased" {
		s.rec.countLicence()
	}

	details := map[string]any{"state": state, "license": lic, "content_type": a.ContentType, "width": a.Width, "height": a.Height}
	size := "Comp"
	if l != nil {
		details["date"] = stockDate(l.Date)
		details["url"] = s.downloadURL(r.Request, l)
		size = "Original"
	}
	out := map[string]any{
		"available_entitlement": entitlement(quota),
		"contents": map[string]any{strconv.Itoa(a.ID): map[string]any{
			"content_id": strconv.Itoa(a.ID), "size": size, "purchase_details": details,
		}},
		"member": map[string]int{"member_id": member},
	}
	if state == "not_possible" {
		out["purchase_options"] = map[string]any{
			"state": "not_possible", "requires_checkout": true,
			"message": "Would you like to see purchase options?",
			"url":     fmt.Sprintf("https://stock.adobe.com/plans?image_id=%d", a.ID),
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// licenceReferences reads the optional JSON body of POST Content/License:
// the documented {"cce_agency":[...]} or the PHP SDK's bare array.
func licenceReferences(w http.ResponseWriter, r *http.Request) ([]LicenceReference, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return nil, invalidParam("The licence references body is too large")
	}
	if strings.TrimSpace(string(body)) == "" {
		return nil, nil
	}
	var wrapped struct {
		CCEAgency []LicenceReference `json:"cce_agency"`
	}
	if err := json.Unmarshal(body, &wrapped); err == nil && wrapped.CCEAgency != nil {
		return wrapped.CCEAgency, validReferences(wrapped.CCEAgency)
	}
	var bare []LicenceReference
	if err := json.Unmarshal(body, &bare); err == nil {
		return bare, validReferences(bare)
	}
	return nil, invalidParam(`Invalid licence references: send {"cce_agency":[{"id":"...","value":"..."}]}`)
}

func validReferences(refs []LicenceReference) error {
	for _, ref := range refs {
		if ref.ID == "" {
			return invalidParam("Invalid licence reference: id is required")
		}
	}
	return nil
}

// memberProfile is GET /Rest/Libraries/1/Member/Profile.
func (s *Server) memberProfile(w http.ResponseWriter, r *stockRequest) {
	if r.URL.Query().Get("content_id") != "" {
		a, ok := s.contentParam(w, r)
		if !ok {
			return
		}
		if _, ok := licenceParam(w, r, a, false); !ok {
			return
		}
	}
	s.mu.Lock()
	o := s.orgs[r.token.Org]
	quota, member := o.quota, o.memberID
	s.mu.Unlock()
	out := map[string]any{"available_entitlement": entitlement(quota)}
	if quota > 0 {
		out["member"] = map[string]int{"stock_id": member}
		out["purchase_options"] = map[string]any{
			"state": "possible", "requires_checkout": false,
			"message": fmt.Sprintf("This will use 1 of your %d licenses.", quota),
		}
	} else {
		out["purchase_options"] = map[string]any{
			"state": "not_possible", "requires_checkout": true,
			"message": "Would you like to see purchase options?",
			"url":     "https://stock.adobe.com/plans",
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// licenseHistory is GET /Rest/Libraries/1/Member/LicenseHistory: the
// caller's own licences, or the whole organisation's with all=true; newest
// first.
func (s *Server) licenseHistory(w http.ResponseWriter, r *stockRequest) {
	q := r.URL.Query()
	limit, err := intParam(q, "limit", 100, 1, 100)
	if err != nil {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
		return
	}
	offset, err := intParam(q, "offset", 0, 0, 0)
	if err != nil {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
		return
	}
	ts, err := enumParam(q, "thumbnail_size", "110", "160", "240", "500", "1000")
	if err != nil {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
		return
	}
	thumb, _ := strconv.Atoi(ts)
	if thumb == 0 {
		thumb = 110
	}
	all := false
	switch v := q.Get("all"); v {
	case "", "false":
	case "true":
		all = true
	default:
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, "Invalid value for all: "+strconv.Quote(v))
		return
	}
	extra, unknown, _ := columnsOf(q, nil)
	for _, c := range extra {
		if !strings.HasPrefix(c, "thumbnail_") || c == "thumbnail_html_tag" {
			unknown = append(unknown, c)
		}
	}
	if len(unknown) > 0 {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, "Invalid value in result_columns: "+strings.Join(unknown, ", "))
		return
	}
	s.mu.Lock()
	var mine []licence
	o := s.orgs[r.token.Org]
	for i := len(o.licences) - 1; i >= 0; i-- {
		if l := o.licences[i]; all || l.ClientID == r.token.ClientID {
			mine = append(mine, *l)
		}
	}
	s.mu.Unlock()
	rd := s.renderer(r, thumb)
	files := []map[string]any{}
	for i := offset; i < len(mine) && i < offset+limit; i++ {
		l := mine[i]
		a := s.cat.byID[l.AssetID]
		f := rd.render(a, append([]string{"id", "title", "creator_name", "creator_id", "media_type_id",
			"vector_type", "content_type", "width", "height", "details_url",
			"thumbnail_url", "thumbnail_width", "thumbnail_height"}, extra...))
		f["license"] = l.Licence
		f["license_date"] = l.Date.UTC().Format("1/2/06, 3:04 PM")
		f["download_url"] = s.downloadURL(r.Request, &l)
		files = append(files, f)
	}
	writeJSON(w, http.StatusOK, map[string]any{"nb_results": len(mine), "files": files})
}

// abandon is GET /Rest/Libraries/1/Member/Abandon: the user declined to
// license; the SDKs expect 204.
func (s *Server) abandon(w http.ResponseWriter, r *stockRequest) {
	if _, ok := s.contentParam(w, r); !ok {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
