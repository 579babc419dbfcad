package fakeadobe

import (
	"crypto/rand"
	"encoding/base64"
	"hash/fnv"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// stockEndpoints names the Stock API paths (host stock.adobe.io).
var stockEndpoints = map[string]string{
	"/Rest/Media/1/Search/Files":              "search_files",
	"/Rest/Media/1/Search/CategoryTree":       "category_tree",
	"/Rest/Media/1/Search/Category":           "category",
	"/Rest/Media/1/Files":                     "files",
	"/Rest/Libraries/1/Content/Info":          "content_info",
	"/Rest/Libraries/1/Content/License":       "content_license",
	"/Rest/Libraries/1/Member/Profile":        "member_profile",
	"/Rest/Libraries/1/Member/LicenseHistory": "license_history",
	"/Rest/Libraries/1/Member/Abandon":        "abandon",
}

// stockRequest is a request that passed the gateway.
type stockRequest struct {
	*http.Request
	apiKey string
	token  TokenInfo // State is TokenValid or TokenNone
	locale string
}

type stockEndpoint struct {
	methods []string
	// auth: the bearer token is required, not merely optional (the Stock
	// API reference: Search/Files, CategoryTree, Category and Files take it
	// optionally; licensing needs it).
	auth   bool
	handle func(*Server, http.ResponseWriter, *stockRequest)
}

var stockHandlers = map[string]stockEndpoint{
	"search_files":    {[]string{"GET", "POST"}, false, (*Server).searchFiles},
	"category_tree":   {[]string{"GET"}, false, (*Server).categoryTree},
	"category":        {[]string{"GET"}, false, (*Server).categoryOne},
	"files":           {[]string{"GET"}, false, (*Server).files},
	"content_info":    {[]string{"GET"}, true, (*Server).contentInfo},
	"content_license": {[]string{"GET", "POST"}, true, (*Server).contentLicense},
	"member_profile":  {[]string{"GET"}, true, (*Server).memberProfile},
	"license_history": {[]string{"GET"}, true, (*Server).licenseHistory},
	"abandon":         {[]string{"GET"}, true, (*Server).abandon},
}

// handleStock is the gateway in front of every Stock API path: x-api-key
// (403000 missing, 403003 unknown), then the token (401013 invalid,
// expired, revoked or issued to another client; 403010 missing where
// required), then the application's own checks (X-Product).
func (s *Server) handleStock(w http.ResponseWriter, r *http.Request) {
	reqID := r.Header.Get("X-Request-Id")
	if reqID == "" {
		reqID = newRequestID()
	}
	w.Header().Set("X-Request-Id", reqID)

	apiKey := r.Header.Get("X-Api-Key")
	if apiKey == "" {
		writeGateway(w, errAPIKeyMissing)
		return
	}
	s.mu.Lock()
	_, known := s.clients[apiKey]
	s.mu.Unlock()
	if !known {
		writeGateway(w, errAPIKeyInvalid)
		return
	}
	tok := presented(r)
	if tok.State != TokenNone && (tok.State != TokenValid || tok.ClientID != apiKey) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeGateway(w, errTokenInvalid)
		return
	}
	name, ok := stockEndpoints[strings.TrimSuffix(r.URL.Path, "/")]
	if !ok {
		writeStockError(w, http.StatusNotFound, codeInvalidMethod, "Invalid method: "+r.URL.Path)
		return
	}
	ep := stockHandlers[name]
	if ep.auth && tok.State == TokenNone {
		writeGateway(w, errTokenMissing)
		return
	}
	if !slices.Contains(ep.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(ep.methods, ", "))
		writeStockError(w, http.StatusMethodNotAllowed, codeInvalidMethod, "Method "+r.Method+" is not supported")
		return
	}
	if strings.TrimSpace(r.Header.Get("X-Product")) == "" {
		// The Files reference's wording and code; the other endpoints
		// require the header just the same.
		writeStockError(w, http.StatusBadRequest, "600", "The required X-Product header is missing or invalid")
		return
	}
	locale := r.URL.Query().Get("locale")
	if !validLocale(locale) {
		code := codeInvalidParams
		if name == "files" {
			code = "602"
		}
		writeStockError(w, http.StatusBadRequest, code, "Invalid locale supplied")
		return
	}
	if locale == "" {
		locale = "en_US"
	}
	ep.handle(s, w, &stockRequest{Request: r, apiKey: apiKey, token: tok, locale: locale})
}

func newRequestID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return strings.NewReplacer("-", "A", "_", "B").Replace(base64.RawURLEncoding.EncodeToString(b))
}

// renderer builds the renderer for a Stock request: is_licensed is known
// only with a valid token.
func (s *Server) renderer(r *stockRequest, thumbSize int) *renderer {
	rd := &renderer{
		cdn: s.cdnBase(r.Request), download: s.downloadBaseFor(r.Request),
		apiKey: r.apiKey, locale: r.locale, thumbSize: thumbSize,
	}
	if r.token.State == TokenValid {
		rd.licensed = s.licensedBy(r.token.Org)
	}
	return rd
}

// searchFiles is GET /Rest/Media/1/Search/Files, and POST with a
// similar_image upload.
func (s *Server) searchFiles(w http.ResponseWriter, r *stockRequest) {
	q := r.URL.Query()
	var seed uint64
	if r.Method == http.MethodPost {
		var err error
		if seed, err = similarImage(w, r.Request, q); err != nil {
			writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
			return
		}
	}
	sq, err := parseSearch(q)
	if err != nil {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
		return
	}
	sq.similarSeed = seed
	cols, unknown, explicit := columnsOf(q, defaultColumns)
	if len(unknown) > 0 {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, "Invalid value in result_columns: "+strings.Join(unknown, ", "))
		return
	}
	rd := s.renderer(r, sq.thumbSize)
	if !explicit && rd.licensed != nil {
		// A token fills in is_licensed (Stock's search-response documentation).
		cols = append(append([]string{}, cols...), "is_licensed")
	}
	page, total := s.cat.search(sq)
	files := make([]map[string]any, 0, len(page))
	for _, a := range page {
		files = append(files, rd.render(a, cols))
	}
	out := map[string]any{"files": files}
	if slices.Contains(cols, "nb_results") {
		out["nb_results"] = total
	}
	writeJSON(w, http.StatusOK, out)
}

// similarImage reads the multipart similar_image upload of a POST search;
// its hash seeds the order of the answer.
func similarImage(w http.ResponseWriter, r *http.Request, q url.Values) (uint64, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 10<<20)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		return 0, invalidParam("POST is only supported with a multipart/form-data similar_image upload")
	}
	if err := r.ParseMultipartForm(10 << 20); err != nil {
		return 0, invalidParam("Invalid multipart body")
	}
	for k, vs := range r.MultipartForm.Value {
		if _, ok := q[k]; !ok {
			q[k] = vs
		}
	}
	if v, _ := param(q, "similar_image"); v != "1" {
		return 0, invalidParam("search_parameters[similar_image]=1 is required with an image upload")
	}
	f, _, err := r.FormFile("similar_image")
	if err != nil {
		return 0, invalidParam("The similar_image file is missing")
	}
	defer f.Close()
	h := fnv.New64a()
	if _, err := io.Copy(h, f); err != nil {
		return 0, invalidParam("Invalid similar_image file")
	}
	return h.Sum64() | 1, nil
}

// files is GET /Rest/Media/1/Files?ids=... (Files reference: codes 600-606,
// unknown IDs are left out rather than failing the request).
func (s *Server) files(w http.ResponseWriter, r *stockRequest) {
	q := r.URL.Query()
	for k := range q {
		if k != "ids" && k != "locale" && !strings.HasPrefix(k, "result_columns[") {
			writeStockError(w, http.StatusBadRequest, "604", "Unrecognized query parameter received.")
			return
		}
	}
	raw := q.Get("ids")
	var ids []int
	for _, f := range strings.Split(raw, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || id <= 0 {
			writeStockError(w, http.StatusNotFound, "605", `Required "ids" parameter is missing or invalid`)
			return
		}
		ids = append(ids, id)
	}
	if len(ids) > 110 {
		writeStockError(w, http.StatusBadRequest, "606", `More than 110 IDs supplied for "ids" parameter`)
		return
	}
	cols, unknown, _ := columnsOf(q, []string{"id"})
	if len(unknown) > 0 {
		writeStockError(w, http.StatusBadRequest, "603", "Invalid value in result_columns supplied")
		return
	}
	if slices.Contains(cols, "is_licensed") && r.token.State != TokenValid {
		writeStockError(w, http.StatusBadRequest, "601", "Authorization required when requesting is_licensed field")
		return
	}
	rd := s.renderer(r, 500)
	files := []map[string]any{}
	for _, id := range ids {
		if a := s.cat.byID[id]; a != nil {
			files = append(files, rd.render(a, cols))
		}
	}
	out := map[string]any{"files": files}
	if slices.Contains(cols, "nb_results") {
		out["nb_results"] = len(files)
	}
	writeJSON(w, http.StatusOK, out)
}

type categoryJSON struct {
	ID   int    `json:"id"`
	Link string `json:"link"`
	Name string `json:"name"`
}

func categoryID(q url.Values) (int, bool, error) {
	v := q.Get("category_id")
	if v == "" {
		return 0, false, nil
	}
	id, err := strconv.Atoi(v)
	if err != nil || id <= 0 {
		return 0, true, invalidParam("Invalid value for category_id: %q (an integer)", v)
	}
	return id, true, nil
}

// categoryTree is GET /Rest/Media/1/Search/CategoryTree: the children of
// category_id, or the top level.
func (s *Server) categoryTree(w http.ResponseWriter, r *stockRequest) {
	id, given, err := categoryID(r.URL.Query())
	if err != nil {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
		return
	}
	if given && categoryByID[id] == nil {
		writeStockError(w, http.StatusNotFound, codeInvalidData, "Category "+strconv.Itoa(id)+" does not exist")
		return
	}
	out := []categoryJSON{}
	for _, c := range children(id) {
		out = append(out, categoryJSON{c.ID, c.link(), c.localName(r.locale)})
	}
	writeJSON(w, http.StatusOK, out)
}

// categoryOne is GET /Rest/Media/1/Search/Category?category_id=.
func (s *Server) categoryOne(w http.ResponseWriter, r *stockRequest) {
	id, given, err := categoryID(r.URL.Query())
	if err == nil && !given {
		err = invalidParam("Required category_id parameter is missing")
	}
	if err != nil {
		writeStockError(w, http.StatusBadRequest, codeInvalidParams, err.Error())
		return
	}
	c := categoryByID[id]
	if c == nil {
		writeStockError(w, http.StatusNotFound, codeInvalidData, "Category "+strconv.Itoa(id)+" does not exist")
		return
	}
	writeJSON(w, http.StatusOK, categoryJSON{c.ID, c.link(), c.localName(r.locale)})
}
