package fakeadobe

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// damNode is a folder or an asset of the emulated AEM repository, keyed by
// its path under /content/dam ("" is the root).
type damNode struct {
	folder   bool
	title    string
	mime     string
	id       int // seeds the asset's bytes
	created  time.Time
	metadata map[string]any
}

// dam is a small, mutable AEM Assets repository.
type dam struct {
	mu    sync.Mutex
	nodes map[string]*damNode
	seq   int
}

func newDAM() *dam {
	d := &dam{nodes: map[string]*damNode{"": {folder: true, title: "Assets"}}}
	created := time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC)
	for _, p := range []string{
		"wknd/en/adventures/beach-surfing.jpg", "wknd/en/adventures/climbing-new-zealand.jpg",
		"wknd/en/adventures/ski-touring.jpg", "wknd/en/magazine/arctic-surfing.jpg",
		"wknd/en/magazine/guide-la-skateparks.pdf", "we-retail/en/activities/hiking.jpg",
		"we-retail/en/activities/running.png", "we-retail/en/products/jacket.jpg",
		"projects/brochure-2026.pdf", "projects/logo.png",
	} {
		dir := ""
		for _, part := range strings.Split(path.Dir(p), "/") {
			dir = path.Join(dir, part)
			if d.nodes[dir] == nil {
				d.nodes[dir] = &damNode{folder: true, title: titleOf(part), created: created}
			}
		}
		d.seq++
		d.nodes[p] = &damNode{title: titleOf(strings.TrimSuffix(path.Base(p), path.Ext(p))),
			mime: mimeOf(p), id: d.seq, created: created.Add(time.Duration(d.seq) * time.Hour)}
	}
	return d
}

func titleOf(name string) string {
	fields := strings.Fields(strings.ReplaceAll(name, "-", " "))
	for i, f := range fields {
		fields[i] = capitalize(f)
	}
	return strings.Join(fields, " ")
}

func mimeOf(p string) string {
	switch path.Ext(p) {
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".png":
		return "image/png"
	case ".pdf":
		return "application/pdf"
	}
	return "application/octet-stream"
}

// childrenLocked lists the direct children of dir, sorted by name.
func (d *dam) childrenLocked(dir string) []string {
	var out []string
	for p := range d.nodes {
		if p != "" && parentOf(p) == dir {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// requireAEMToken answers 401 unless the request carries a valid token
// (the Assets HTTP API takes a bearer and no x-api-key, as Adobe's AEM
// tutorials call it).
func requireAEMToken(w http.ResponseWriter, r *http.Request) bool {
	if presented(r).State == TokenValid {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="AEM"`)
	http.Error(w, "Unauthorized", http.StatusUnauthorized)
	return false
}

// slingResponse is the JSON status body AEM answers errors and changes with.
func slingResponse(w http.ResponseWriter, status int, p, title string) {
	writeJSON(w, status, map[string]any{
		"class": []string{"core/response"},
		"properties": map[string]any{
			"path": p, "status.code": status, "status.message": http.StatusText(status), "title": title,
		},
	})
}

// handleAEMAPI serves the Assets HTTP API: GET of /api/assets.json and
// /api/assets/<path>.json as Siren JSON, POST (create folder), PUT
// (metadata), DELETE, and the custom COPY and MOVE methods.
func (s *Server) handleAEMAPI(w http.ResponseWriter, r *http.Request) {
	if !requireAEMToken(w, r) {
		return
	}
	p := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/assets"), "/")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.aemGet(w, r, p)
	case http.MethodPost:
		s.aemCreateFolder(w, r, p)
	case http.MethodPut:
		s.aemUpdate(w, r, p)
	case http.MethodDelete:
		s.dam.mu.Lock()
		n := s.dam.nodes[p]
		if n != nil && p != "" {
			for k := range s.dam.nodes {
				if k == p || strings.HasPrefix(k, p+"/") {
					delete(s.dam.nodes, k)
				}
			}
		}
		s.dam.mu.Unlock()
		if n == nil || p == "" {
			slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
			return
		}
		slingResponse(w, http.StatusOK, r.URL.Path, "Deleted")
	case "COPY", "MOVE":
		s.aemCopyMove(w, r, p)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, DELETE, COPY, MOVE")
		slingResponse(w, http.StatusMethodNotAllowed, r.URL.Path, "Method not allowed")
	}
}

func (s *Server) aemGet(w http.ResponseWriter, r *http.Request, p string) {
	p, ok := strings.CutSuffix(p, ".json")
	if !ok {
		slingResponse(w, http.StatusNotFound, r.URL.Path, "Use the .json selector")
		return
	}
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 20
	}
	base := baseOf(r)
	s.dam.mu.Lock()
	defer s.dam.mu.Unlock()
	n := s.dam.nodes[p]
	if n == nil {
		slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
		return
	}
	e := s.dam.entityLocked(base, p, n)
	e["links"] = append(e["links"].([]map[string]any), link("parent", apiHref(base, path.Dir(p))))
	if n.folder {
		kids := s.dam.childrenLocked(p)
		props := e["properties"].(map[string]any)
		props["srn:paging"] = map[string]int{"total": len(kids), "offset": offset, "limit": limit}
		var ents []map[string]any
		for i := max(offset, 0); i < len(kids) && i < offset+limit; i++ {
			child := s.dam.entityLocked(base, kids[i], s.dam.nodes[kids[i]])
			child["rel"] = []string{"child"}
			ents = append(ents, child)
		}
		e["entities"] = ents
	}
	writeJSON(w, http.StatusOK, e)
}

func apiHref(base, p string) string {
	if p == "" || p == "." {
		return base + "/api/assets.json"
	}
	return base + "/api/assets/" + p + ".json"
}

func link(rel, href string) map[string]any {
	return map[string]any{"rel": []string{rel}, "href": href}
}

// entityLocked is a node as a Siren entity.
func (d *dam) entityLocked(base, p string, n *damNode) map[string]any {
	props := map[string]any{"name": path.Base("/" + p)}
	links := []map[string]any{link("self", apiHref(base, p))}
	if n.folder {
		if p == "" {
			props["name"] = "assets"
		}
		props["dc:title"] = n.title
		return map[string]any{"class": []string{"assets/folder"}, "properties": props, "links": links}
	}
	meta := map[string]any{"dc:title": n.title, "dc:format": n.mime, "jcr:created": n.created.Format(time.RFC3339)}
	for k, v := range n.metadata {
		meta[k] = v
	}
	props["metadata"] = meta
	links = append(links,
		link("content", base+"/content/dam/"+p),
		link("thumbnail", base+"/content/dam/"+p+"/_jcr_content/renditions/cq5dam.thumbnail.319.319.png"))
	return map[string]any{"class": []string{"assets/asset"}, "properties": props, "links": links}
}

func (s *Server) aemCreateFolder(w http.ResponseWriter, r *http.Request, p string) {
	var body struct {
		Class      string         `json:"class"`
		Properties map[string]any `json:"properties"`
	}
	raw, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := json.Unmarshal(raw, &body); err != nil || body.Class != "assetFolder" {
		slingResponse(w, http.StatusBadRequest, r.URL.Path, `Send {"class":"assetFolder","properties":{"title":"..."}}`)
		return
	}
	p = strings.TrimSuffix(p, "/")
	title, _ := body.Properties["title"].(string)
	s.dam.mu.Lock()
	defer s.dam.mu.Unlock()
	parent := s.dam.nodes[parentOf(p)]
	switch {
	case p == "" || parent == nil || !parent.folder:
		slingResponse(w, http.StatusPreconditionFailed, r.URL.Path, "The parent folder does not exist")
	case s.dam.nodes[p] != nil:
		slingResponse(w, http.StatusConflict, r.URL.Path, "The folder already exists")
	default:
		s.dam.nodes[p] = &damNode{folder: true, title: title, created: s.now().UTC()}
		w.Header().Set("Location", apiHref(baseOf(r), p))
		slingResponse(w, http.StatusCreated, r.URL.Path, "Created")
	}
}

func parentOf(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

func (s *Server) aemUpdate(w http.ResponseWriter, r *http.Request, p string) {
	var body struct {
		Class      string         `json:"class"`
		Properties map[string]any `json:"properties"`
	}
	raw, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := json.Unmarshal(raw, &body); err != nil || body.Class != "asset" {
		slingResponse(w, http.StatusBadRequest, r.URL.Path, `Send {"class":"asset","properties":{...}}`)
		return
	}
	s.dam.mu.Lock()
	defer s.dam.mu.Unlock()
	n := s.dam.nodes[p]
	if n == nil || n.folder {
		slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
		return
	}
	if n.metadata == nil {
		n.metadata = map[string]any{}
	}
	for k, v := range body.Properties {
		if k == "dc:title" {
			n.title, _ = v.(string)
			continue
		}
		n.metadata[k] = v
	}
	slingResponse(w, http.StatusOK, r.URL.Path, "Updated")
}

// aemCopyMove implements COPY and MOVE: X-Destination (a URL or path under
// /api/assets), X-Depth (infinity or 0), X-Overwrite (T or F). A missing
// header or an existing destination without X-Overwrite: T is 412.
func (s *Server) aemCopyMove(w http.ResponseWriter, r *http.Request, src string) {
	dest := r.Header.Get("X-Destination")
	if u, err := url.Parse(dest); err == nil {
		dest = u.Path
	}
	dest, ok := strings.CutPrefix(dest, "/api/assets/")
	depth := r.Header.Get("X-Depth")
	if !ok || dest == "" || (depth != "" && depth != "infinity" && depth != "0") {
		slingResponse(w, http.StatusPreconditionFailed, r.URL.Path, "X-Destination (under /api/assets/) and a valid X-Depth are required")
		return
	}
	dest = strings.TrimSuffix(dest, ".json")
	s.dam.mu.Lock()
	defer s.dam.mu.Unlock()
	n := s.dam.nodes[src]
	if n == nil || src == "" {
		slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
		return
	}
	parent := s.dam.nodes[parentOf(dest)]
	if parent == nil || !parent.folder || dest == src || strings.HasPrefix(dest, src+"/") {
		slingResponse(w, http.StatusPreconditionFailed, r.URL.Path, "Invalid destination")
		return
	}
	if s.dam.nodes[dest] != nil && r.Header.Get("X-Overwrite") != "T" {
		slingResponse(w, http.StatusPreconditionFailed, r.URL.Path, "The destination exists; send X-Overwrite: T")
		return
	}
	moved := map[string]*damNode{}
	for k, v := range s.dam.nodes {
		if k == src || (depth != "0" && strings.HasPrefix(k, src+"/")) {
			cp := *v
			moved[dest+strings.TrimPrefix(k, src)] = &cp
			if r.Method == "MOVE" {
				delete(s.dam.nodes, k)
			}
		}
	}
	for k, v := range moved {
		s.dam.nodes[k] = v
	}
	w.Header().Set("Location", apiHref(baseOf(r), dest))
	slingResponse(w, http.StatusCreated, r.URL.Path, "Created")
}

// handleAEMBinary serves /content/dam/<asset> and its thumbnail rendition.
func (s *Server) handleAEMBinary(w http.ResponseWriter, r *http.Request) {
	if !requireAEMToken(w, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/content/dam/")
	p, rendition, isRendition := strings.Cut(p, "/_jcr_content/renditions/")
	s.dam.mu.Lock()
	n := s.dam.nodes[p]
	var node damNode
	if n != nil {
		node = *n
	}
	s.dam.mu.Unlock()
	if n == nil || node.folder || isRendition && rendition != "cq5dam.thumbnail.319.319.png" {
		http.NotFound(w, r)
		return
	}
	a := &asset{ID: node.id, Width: 1200, Height: 800}
	var body []byte
	ctype := node.mime
	switch {
	case isRendition:
		body, ctype = renderImage(a, 319, 213, false, true), "image/png"
	case node.mime == "image/jpeg" || node.mime == "image/png":
		body = renderImage(a, 600, 400, false, node.mime == "image/png")
	default:
		body = append([]byte("%PDF-1.4\n"), noise(node.id, 8<<10)...)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
