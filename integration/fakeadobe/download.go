package fakeadobe

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// signedURLLifetime is how long a signed file URL (the target of the
// download redirect) can be fetched.
const signedURLLifetime = 10 * time.Minute

// The three documented download errors (Licensing reference, "Download
// errors").
const (
	msgInvalidSize = "This download cannot be processed, invalid size"
	msgExpired     = "This download is expired"
	msgNotFound    = "Cannot find a download for this file and license on this organization"
)

var (
	imageSizes = []string{"5000", "3100", "2400", "1600", "800", "400"}
	videoSizes = []string{"2160", "1080"}
)

// handleDownload serves the download host (stock.adobe.com):
// /Rest/Libraries/Download/<id>/<n>?token=<access token>[&size=] for
// licensed files and /Rest/Libraries/Watermarked/Download/<id>/<n> for
// comps. The token goes in the query only: the docs warn that an
// Authorization header breaks the download, so one is refused here, which
// catches a proxy that leaves its injected header on. Success is a 302 to
// a signed URL the emulator also serves.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStockError(w, http.StatusMethodNotAllowed, codeInvalidMethod, "Method "+r.Method+" is not supported")
		return
	}
	watermarked := strings.HasPrefix(r.URL.Path, "/Rest/Libraries/Watermarked/")
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/Rest/Libraries/Watermarked/Download/"), "/Rest/Libraries/Download/")
	idStr, nStr, _ := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	id, err1 := strconv.Atoi(idStr)
	n, err2 := strconv.Atoi(nStr)
	if err1 != nil || err2 != nil {
		writeStockError(w, http.StatusNotFound, codeInvalidData, msgNotFound)
		return
	}
	if len(r.Header.Values("Authorization")) > 0 {
		writeStockError(w, http.StatusBadRequest, codeInvalidToken,
			"An Authorization header is not accepted on downloads: pass the access token in the token query parameter")
		return
	}
	tok := presented(r)
	switch tok.State {
	case TokenNone:
		if !watermarked {
			writeStockError(w, http.StatusUnauthorized, codeInvalidToken, "The token query parameter is required")
			return
		}
	case TokenExpired:
		writeStockError(w, http.StatusUnauthorized, codeInvalidToken, msgExpired)
		return
	case TokenInvalid, TokenRevoked:
		writeStockError(w, http.StatusUnauthorized, codeInvalidToken, msgNotFound)
		return
	}
	a := s.cat.byID[id]
	if a == nil {
		writeStockError(w, http.StatusNotFound, codeInvalidData, msgNotFound)
		return
	}
	size := r.URL.Query().Get("size")
	if size != "" {
		allowed := imageSizes
		switch a.MediaType {
		case mediaVideo:
			allowed = videoSizes
		case mediaVector, media3D, mediaTemplate:
			allowed = nil
		}
		if !slices.Contains(allowed, size) {
			writeStockError(w, http.StatusBadRequest, codeInvalidParams, msgInvalidSize)
			return
		}
	}
	kind := "licensed"
	if watermarked {
		kind = "comp"
		if n != compN {
			writeStockError(w, http.StatusNotFound, codeInvalidData, msgNotFound)
			return
		}
	} else if !s.holdsLicense(tok.Org, id, n) {
		writeStockError(w, http.StatusNotFound, codeInvalidData, msgNotFound)
		return
	}
	expires := s.now().Add(signedURLLifetime).Unix()
	v := url.Values{}
	v.Set("kind", kind)
	v.Set("n", strconv.Itoa(n))
	v.Set("size", size)
	v.Set("expires", strconv.FormatInt(expires, 10))
	v.Set("sig", s.signFile(id, kind, n, size, expires))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, fmt.Sprintf("%s/files/%d?%s", s.downloadBaseFor(r), id, v.Encode()), http.StatusFound)
}

func (s *Server) holdsLicense(org string, assetID, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[org]
	if o == nil {
		return false
	}
	for _, l := range o.licenses {
		if l.AssetID == assetID && l.N == n {
			return true
		}
	}
	return false
}

func (s *Server) signFile(id int, kind string, n int, size string, expires int64) string {
	mac := hmac.New(sha256.New, s.fileKey)
	fmt.Fprintf(mac, "%d|%s|%d|%s|%d", id, kind, n, size, expires)
	return hex.EncodeToString(mac.Sum(nil))
}

// handleFile serves a signed file URL: /files/<id>?kind=&n=&size=&expires=&sig=
// (stands for the S3/CDN URL Stock redirects to; needs no credentials).
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/files/"))
	n, _ := strconv.Atoi(q.Get("n"))
	expires, _ := strconv.ParseInt(q.Get("expires"), 10, 64)
	a := s.cat.byID[id]
	want := s.signFile(id, q.Get("kind"), n, q.Get("size"), expires)
	if err != nil || a == nil || !hmac.Equal([]byte(want), []byte(q.Get("sig"))) {
		http.Error(w, "AccessDenied: signature does not match", http.StatusForbidden)
		return
	}
	if s.now().Unix() > expires {
		http.Error(w, "AccessDenied: request has expired", http.StatusForbidden)
		return
	}
	size, _ := strconv.Atoi(q.Get("size"))
	comp := q.Get("kind") == "comp"
	body, ctype := fileBytes(a, size, comp)
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	name := fmt.Sprintf("AdobeStock_%d%s", a.ID, extension(ctype))
	if comp {
		name = fmt.Sprintf("AdobeStock_%d_Preview%s", a.ID, extension(ctype))
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// handleThumbnail serves the CDN: /jpg/<a>/<b>/<c>/<d>/<size>_F_<id>_<hash>.jpg
// and /videos/<id>_<h>p.mp4, without credentials, as *.ftcdn.net does.
func (s *Server) handleThumbnail(w http.ResponseWriter, r *http.Request) {
	base := path.Base(r.URL.Path)
	if strings.HasPrefix(r.URL.Path, "/videos/") {
		idStr, _, _ := strings.Cut(base, "_")
		id, _ := strconv.Atoi(idStr)
		if a := s.cat.byID[id]; a != nil && a.MediaType == mediaVideo {
			w.Header().Set("Content-Type", "video/mp4")
			_, _ = w.Write(noise(a.ID, 32<<10))
			return
		}
		http.NotFound(w, r)
		return
	}
	var size, id int
	var hash string
	parts := strings.SplitN(strings.TrimSuffix(base, ".jpg"), "_", 4)
	if len(parts) == 4 && parts[1] == "F" {
		size, _ = strconv.Atoi(parts[0])
		id, _ = strconv.Atoi(parts[2])
		hash = parts[3]
	}
	a := s.cat.byID[id]
	if a == nil || a.Hash != hash || r.URL.Path != a.thumbnailPath(size) {
		http.NotFound(w, r)
		return
	}
	tw, th := a.thumbnailSize(size)
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "public, max-age=31536000")
	_, _ = w.Write(renderImage(a, tw, th, true, false))
}

// fileBytes is the content of a downloaded file: a real image for images
// (at most 1200 px, to keep tests fast), deterministic bytes otherwise.
func fileBytes(a *asset, size int, comp bool) ([]byte, string) {
	switch a.ContentType {
	case "image/jpeg", "image/png":
		long := 1200
		if comp {
			long = 1000
		}
		if size > 0 && size < long {
			long = size
		}
		scale := float64(long) / float64(max(a.Width, a.Height))
		w, h := max(1, int(float64(a.Width)*scale)), max(1, int(float64(a.Height)*scale))
		if comp {
			return renderImage(a, w, h, true, false), "image/jpeg"
		}
		return renderImage(a, w, h, false, a.ContentType == "image/png"), a.ContentType
	}
	return noise(a.ID, min(a.SizeBytes, 256<<10)), a.ContentType
}

// renderImage draws the asset's picture: a gradient between two colours
// derived from its ID; a watermark stripes comps and thumbnails.
func renderImage(a *asset, w, h int, watermark, asPNG bool) []byte {
	rng := rand.New(rand.NewPCG(uint64(a.ID), 7))
	c1 := color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
	c2 := color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			t := (x + y) * 255 / max(1, w+h-2)
			c := color.RGBA{mixByte(c1.R, c2.R, t), mixByte(c1.G, c2.G, t), mixByte(c1.B, c2.B, t), 255}
			if watermark && (x+2*y)%48 < 6 {
				c = color.RGBA{c.R/2 + 127, c.G/2 + 127, c.B/2 + 127, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if asPNG {
		_ = png.Encode(&buf, img)
	} else {
		_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80})
	}
	return buf.Bytes()
}

func mixByte(a, b uint8, t int) uint8 { return uint8((int(a)*(255-t) + int(b)*t) / 255) }

func noise(seed, n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func extension(ctype string) string {
	switch ctype {
	case "image/jpeg":
		return ".jpeg"
	case "image/png":
		return ".png"
	case "video/mp4":
		return ".mp4"
	case "image/svg+xml":
		return ".svg"
	case "application/illustrator":
		return ".zip"
	case "image/vnd.adobe.photoshop.template":
		return ".psdt"
	}
	return ".bin"
}
