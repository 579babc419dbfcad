package fakeadobe

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Direct binary upload, the only way to upload a binary to AEM as a Cloud
// Service (Adobe's "Assets as a Cloud Service APIs" page, "Asset upload";
// the Assets HTTP API's binary uploads are deprecated there):
//
//  1. POST <folder>.initiateUpload.json, form fileName and fileSize (repeated
//     for several files): 201 with files[] (fileName, mimeType, uploadToken,
//     uploadURIs, minPartSize, maxPartSize), completeURI and folderPath.
//  2. PUT each part to its upload URI, in order: blob storage on another
//     origin, authorised by the signature in the URI and by nothing else
//     (the client sends no Authorization there; the emulator refuses one, so
//     a proxy that leaks its bearer to blob storage is caught). 201 each.
//  3. POST completeURI, form fileName, mimeType, uploadToken (createVersion,
//     replace...): 200, and the asset exists.
//
// Blob storage answers in the XML error shape of Azure Blob Storage, the
// storage behind AEM as a Cloud Service.

// Part-size bounds answered when Options leave them zero: 10 MiB and
// 100 MiB, the bounds AEM as a Cloud Service answers.
const (
	DefaultUploadMinPartSize = 10 << 20
	DefaultUploadMaxPartSize = 100 << 20
)

const (
	// uploadLifetime bounds how long an initiated upload waits for its
	// parts and completion.
	uploadLifetime = time.Hour
	// maxUploadFileSize and maxPendingUploads bound what the emulator
	// holds in memory: it stores every byte uploaded.
	maxUploadFileSize = 256 << 20
	maxPendingBytes   = 1 << 30
	maxPendingUploads = 1000
)

// pendingUpload is an initiated upload: its parts arrive at blob storage.
type pendingUpload struct {
	id, token  string
	folder     string // DAM path of the folder ("" = /content/dam)
	fileName   string
	mimeType   string
	size       int64
	partCount  int
	parts      map[int][]byte
	partsBytes int64
	expires    time.Time
}

// uploads is the state of direct binary upload: pending uploads by upload
// ID (blob side) and by upload token (AEM side).
type uploads struct {
	min, max int64

	mu      sync.Mutex
	byID    map[string]*pendingUpload
	byToken map[string]*pendingUpload
	bytes   int64 // part bytes held by pending uploads
}

func newUploads(minPart, maxPart int64) *uploads {
	if minPart <= 0 {
		minPart = DefaultUploadMinPartSize
	}
	if maxPart <= 0 {
		maxPart = DefaultUploadMaxPartSize
	}
	return &uploads{min: minPart, max: max(maxPart, minPart),
		byID: map[string]*pendingUpload{}, byToken: map[string]*pendingUpload{}}
}

// pruneLocked forgets uploads past their lifetime.
func (u *uploads) pruneLocked(now time.Time) {
	for id, p := range u.byID {
		if now.After(p.expires) {
			u.dropLocked(p)
			delete(u.byID, id)
		}
	}
}

func (u *uploads) dropLocked(p *pendingUpload) {
	delete(u.byID, p.id)
	delete(u.byToken, p.token)
	u.bytes -= p.partsBytes
}

// uploadFolder is the DAM folder of a .initiateUpload.json or
// .completeUpload.json request path, and which of the two it is.
func uploadFolder(p string) (folder, selector string, ok bool) {
	for _, sel := range []string{".initiateUpload.json", ".completeUpload.json"} {
		if rest, found := strings.CutSuffix(p, sel); found {
			if rest == "/content/dam" {
				return "", sel, true
			}
			if f, under := strings.CutPrefix(rest, "/content/dam/"); under && f != "" {
				return f, sel, true
			}
		}
	}
	return "", "", false
}

// handleUpload serves POST <folder>.initiateUpload.json and
// <folder>.completeUpload.json.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request, folder, selector string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		slingResponse(w, http.StatusMethodNotAllowed, r.URL.Path, "Use POST")
		return
	}
	form := readBodyForm(w, r)
	s.dam.mu.Lock()
	n := s.dam.nodes[folder]
	s.dam.mu.Unlock()
	if n == nil || !n.folder {
		slingResponse(w, http.StatusNotFound, r.URL.Path, "The folder does not exist")
		return
	}
	if selector == ".initiateUpload.json" {
		s.initiateUpload(w, r, folder, form)
		return
	}
	s.completeUpload(w, r, folder, form)
}

type initiateAnswer struct {
	CompleteURI string         `json:"completeURI"`
	FolderPath  string         `json:"folderPath"`
	Files       []initiateFile `json:"files"`
}

type initiateFile struct {
	FileName    string   `json:"fileName"`
	MimeType    string   `json:"mimeType"`
	UploadToken string   `json:"uploadToken"`
	UploadURIs  []string `json:"uploadURIs"`
	MinPartSize int64    `json:"minPartSize"`
	MaxPartSize int64    `json:"maxPartSize"`
}

func (s *Server) initiateUpload(w http.ResponseWriter, r *http.Request, folder string, form url.Values) {
	names, sizes := form["fileName"], form["fileSize"]
	if len(names) == 0 || len(names) != len(sizes) {
		slingResponse(w, http.StatusBadRequest, r.URL.Path, "Send fileName and fileSize for every file")
		return
	}
	blob := s.BlobBaseURL()
	if blob == "" {
		slingResponse(w, http.StatusInternalServerError, r.URL.Path,
			"fakeadobe: blob storage has no address (Server.StartBlob, or Options.BlobBaseURL)")
		return
	}
	folderPath := path.Join("/content/dam", folder)
	answer := initiateAnswer{CompleteURI: folderPath + ".completeUpload.json", FolderPath: folderPath}
	now := s.now()
	u := s.uploads
	u.mu.Lock()
	defer u.mu.Unlock()
	u.pruneLocked(now)
	if len(u.byID)+len(names) > maxPendingUploads {
		slingResponse(w, http.StatusServiceUnavailable, r.URL.Path, "fakeadobe: too many uploads in progress")
		return
	}
	var created []*pendingUpload
	for i, name := range names {
		size, err := strconv.ParseInt(sizes[i], 10, 64)
		if !validAssetName(name) || err != nil || size < 0 {
			slingResponse(w, http.StatusBadRequest, r.URL.Path, fmt.Sprintf("Invalid fileName %q or fileSize %q", name, sizes[i]))
			return
		}
		if size > maxUploadFileSize {
			slingResponse(w, http.StatusRequestEntityTooLarge, r.URL.Path,
				fmt.Sprintf("fakeadobe keeps uploads in memory: at most %d bytes a file", maxUploadFileSize))
			return
		}
		p := &pendingUpload{
			id: randomHex(16), token: randomHex(24), folder: folder, fileName: name, mimeType: mimeOf(name),
			size: size, partCount: int(max((size+u.min-1)/u.min, 1)), parts: map[int][]byte{}, expires: now.Add(uploadLifetime),
		}
		created = append(created, p)
		f := initiateFile{FileName: name, MimeType: p.mimeType, UploadToken: p.token, MinPartSize: u.min, MaxPartSize: u.max}
		for part := 1; part <= p.partCount; part++ {
			f.UploadURIs = append(f.UploadURIs, s.blobURI(blob, p, part))
		}
		answer.Files = append(answer.Files, f)
	}
	for _, p := range created {
		u.byID[p.id], u.byToken[p.token] = p, p
	}
	writeJSON(w, http.StatusCreated, answer)
}

// validAssetName accepts a single path segment.
func validAssetName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\")
}

// blobURI is the signed URI of one part: blob storage checks the signature
// and the expiry (se), as an Azure shared-access signature does.
func (s *Server) blobURI(base string, p *pendingUpload, part int) string {
	exp := p.expires.Unix()
	v := url.Values{}
	v.Set("sp", "cw")
	v.Set("se", strconv.FormatInt(exp, 10))
	v.Set("sig", s.signBlob(p.id, part, exp))
	return fmt.Sprintf("%s/blob/%s/%d?%s", base, p.id, part, v.Encode())
}

func (s *Server) signBlob(id string, part int, exp int64) string {
	mac := hmac.New(sha256.New, s.fileKey)
	fmt.Fprintf(mac, "blob|%s|%d|%d", id, part, exp)
	return hex.EncodeToString(mac.Sum(nil))
}

// handleBlob is blob storage: PUT /blob/<upload id>/<part>?sp=&se=&sig=.
func (s *Server) handleBlob(w http.ResponseWriter, r *http.Request) {
	id, partStr, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/blob/"), "/")
	part, err := strconv.Atoi(partStr)
	q := r.URL.Query()
	exp, _ := strconv.ParseInt(q.Get("se"), 10, 64)
	switch {
	case r.Method != http.MethodPut:
		w.Header().Set("Allow", http.MethodPut)
		blobError(w, http.StatusMethodNotAllowed, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")
		return
	case len(r.Header.Values("Authorization")) > 0:
		blobError(w, http.StatusForbidden, "AuthenticationFailed",
			"Server failed to authenticate the request: an Authorization header is not accepted with a signed upload URI.")
		return
	case err != nil || !hmac.Equal([]byte(s.signBlob(id, part, exp)), []byte(q.Get("sig"))):
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Signature did not match.")
		return
	case s.now().Unix() > exp:
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Signed expiry time has passed.")
		return
	}
	u := s.uploads
	body := http.MaxBytesReader(w, r.Body, u.max)
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(body); err != nil {
		blobError(w, http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", "The request body is too large.")
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	p := u.byID[id]
	switch {
	case p == nil:
		blobError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	case part < 1 || part > p.partCount:
		blobError(w, http.StatusBadRequest, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid.")
		return
	case u.bytes-int64(len(p.parts[part]))+int64(buf.Len()) > maxPendingBytes:
		blobError(w, http.StatusServiceUnavailable, "ServerBusy", "fakeadobe holds too many upload bytes; complete or abandon uploads.")
		return
	}
	old := int64(len(p.parts[part]))
	p.parts[part] = buf.Bytes()
	p.partsBytes += int64(buf.Len()) - old
	u.bytes += int64(buf.Len()) - old
	w.WriteHeader(http.StatusCreated)
}

// blobError is Azure Blob Storage's error answer.
func blobError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "\ufeff<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
}

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request, folder string, form url.Values) {
	names, tokens, mimes := form["fileName"], form["uploadToken"], form["mimeType"]
	if len(names) == 0 || len(names) != len(tokens) || len(names) != len(mimes) {
		slingResponse(w, http.StatusBadRequest, r.URL.Path, "Send fileName, mimeType and uploadToken for every file")
		return
	}
	u := s.uploads
	u.mu.Lock()
	u.pruneLocked(s.now())
	var done []*pendingUpload
	var problem string
	for i, tok := range tokens {
		p := u.byToken[tok]
		switch {
		case p == nil:
			problem = fmt.Sprintf("Unknown or expired uploadToken for %q", names[i])
		case p.folder != folder || p.fileName != names[i]:
			problem = fmt.Sprintf("The uploadToken of %q was issued for %s/%s", names[i], path.Join("/content/dam", p.folder), p.fileName)
		default:
			problem = p.partsProblem(u.min, u.max)
		}
		if problem != "" {
			break
		}
		done = append(done, p)
	}
	if problem != "" {
		u.mu.Unlock()
		slingResponse(w, http.StatusBadRequest, r.URL.Path, problem)
		return
	}
	s.dam.mu.Lock()
	defer s.dam.mu.Unlock()
	for _, p := range done {
		// A folder is no asset: a file of its name would orphan what it
		// holds, and AEM keeps one node of a name. The tokens stay valid.
		if n := s.dam.nodes[path.Join(folder, p.fileName)]; n != nil && n.folder {
			u.mu.Unlock()
			slingResponse(w, http.StatusConflict, r.URL.Path, p.fileName+" is a folder")
			return
		}
	}
	for _, p := range done {
		u.dropLocked(p)
	}
	u.mu.Unlock()
	for i, p := range done {
		data := make([]byte, 0, p.size)
		for part := 1; part <= p.partCount; part++ {
			data = append(data, p.parts[part]...)
		}
		key := path.Join(folder, p.fileName)
		if form.Get("replace") == "true" {
			delete(s.dam.nodes, key)
		}
		// Without replace or createVersion an existing asset gets the new
		// binary in its current version (the emulator keeps no versions).
		n := s.dam.nodes[key]
		if n == nil {
			n = &damNode{created: s.now().UTC()}
			s.dam.nodes[key] = n
		}
		n.data, n.mime = data, mimes[i]
	}
	slingResponse(w, http.StatusOK, r.URL.Path, "Upload complete")
}

// partsProblem says what is wrong with the parts received, "" when they
// make the file: every URI used, each part but the last at least minPart,
// none over maxPart, the sizes adding up to the announced fileSize.
func (p *pendingUpload) partsProblem(minPart, maxPart int64) string {
	var total int64
	for part := 1; part <= p.partCount; part++ {
		b, ok := p.parts[part]
		n := int64(len(b))
		switch {
		case !ok:
			return fmt.Sprintf("%s: part %d of %d was not uploaded (every upload URI must be used)", p.fileName, part, p.partCount)
		case n > maxPart || (part < p.partCount && n < minPart):
			return fmt.Sprintf("%s: part %d has %d bytes (parts are %d to %d bytes, the last may be smaller)", p.fileName, part, n, minPart, maxPart)
		}
		total += n
	}
	if total != p.size {
		return fmt.Sprintf("%s: %d bytes uploaded, fileSize was %d", p.fileName, total, p.size)
	}
	return ""
}

// StartBlob gives blob storage (where direct binary upload puts the bytes)
// its own loopback listener and makes upload URIs point at it. Start calls
// it unless an address was given; it returns the base URL.
func (s *Server) StartBlob(addr string) (string, error) {
	u, err := s.start(addr, s.BlobHandler(), true)
	if err != nil {
		return "", err
	}
	s.SetBlobBaseURL(u)
	return u, nil
}

// BlobHandler serves only blob storage's paths (/blob/...) and 404s the
// rest: blob storage is another origin than AEM, which does not serve them.
func (s *Server) BlobHandler() http.Handler {
	blob := http.HandlerFunc(s.handleBlob)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if serviceOf(r.URL.Path) != ServiceBlob {
			blobError(w, http.StatusNotFound, "ResourceNotFound", "The specified resource does not exist.")
			return
		}
		s.serve(w, r, blob)
	})
}

// SetBlobBaseURL sets the base of upload URIs (a BlobHandler's address).
func (s *Server) SetBlobBaseURL(u string) {
	s.mu.Lock()
	s.blobBase = strings.TrimSuffix(u, "/")
	s.mu.Unlock()
}

// BlobBaseURL is the base of upload URIs ("" before StartBlob, Start or
// SetBlobBaseURL gave blob storage an address).
func (s *Server) BlobBaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blobBase
}
