package cache

import (
	"cmp"
	"encoding/binary"
	"net/http"
	"slices"
	"strings"
)

// What the search cache may hold: GET answers of these Stock paths,
// nothing else ever.
const (
	pathSearchFiles        = "/Rest/Media/1/Search/Files"
	pathSearchCategory     = "/Rest/Media/1/Search/Category"
	pathSearchCategoryTree = "/Rest/Media/1/Search/CategoryTree"
	pathFiles              = "/Rest/Media/1/Files"
)

func cacheablePath(p string) bool {
	switch p {
	case pathSearchFiles, pathSearchCategory, pathSearchCategoryTree, pathFiles:
		return true
	}
	return false
}

// searchKey returns the cache key of a search request, or ok=false when the
// request must bypass the cache: not a plain GET, a body, a conditional or
// range request, a caller that forbids storing, or a path or query the key
// cannot represent faithfully.
func searchKey(route string, r *http.Request) (key string, ok bool) {
	h := r.Header
	if r.Method != http.MethodGet || r.ContentLength != 0 || r.URL.RawPath != "" ||
		hasDirective(h["Cache-Control"], "no-store") ||
		len(h["Range"]) > 0 || len(h["If-None-Match"]) > 0 || len(h["If-Modified-Since"]) > 0 ||
		len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0 || len(h["If-Range"]) > 0 {
		return "", false
	}
	return cacheKey(route, r.URL.Path, r.URL.RawQuery, h["Accept-Language"], h["X-Product"])
}

// cacheKey is the canonical key of a search: route, path, the query with its
// parameters sorted by name (repeated values keep their order: PHP reads
// result_columns[]=a&result_columns[]=b as a list, and the last of two
// plain duplicates wins), Accept-Language and the caller's X-Product.
//
// Names and values are compared decoded, so `search_parameters%5Bwords%5D`
// and `search_parameters[words]` (the PHP SDK escapes brackets, curl does
// not) share an entry, as do `+` and `%20`. A query that does not decode,
// or holds a `;` (which net/http's reverse proxy would strip), is not
// cached: ok is false.
//
// Every part is written with its length first, so the encoding is
// injective: two requests share a key only when all their parts are equal.
func cacheKey(route, path, rawQuery string, lang, product []string) (key string, ok bool) {
	var paramsBuf [16]queryParam // most searches have fewer: no allocation
	params, ok := canonicalQuery(paramsBuf[:0], rawQuery)
	if !ok {
		return "", false
	}
	n := len(route) + len(path) + len(rawQuery) + 4*len(params) + 16
	for _, v := range lang {
		n += len(v) + 2
	}
	for _, v := range product {
		n += len(v) + 2
	}
	var keyBuf [512]byte
	b := keyBuf[:0]
	if n > len(keyBuf) {
		b = make([]byte, 0, n)
	}
	b = appendString(b, route)
	b = appendString(b, path)
	b = binary.AppendUvarint(b, uint64(len(params)))
	for _, p := range params {
		b = appendDecoded(b, p.rawName)
		b = appendDecoded(b, p.rawValue)
	}
	b = appendList(b, lang)
	b = appendList(b, product)
	return string(b), true // the only allocation of a key that fits keyBuf
}

// queryParam is one name=value segment of a query, still escaped: names
// are compared and written decoded without allocating a string for them.
type queryParam struct{ rawName, rawValue string }

// canonicalQuery appends rawQuery's parameters to dst, sorted stably by
// decoded name. Empty segments (`a=1&&b=2`) carry nothing and are skipped;
// ok is false when a segment does not decode (url.QueryUnescape's rules)
// or holds a `;`.
func canonicalQuery(dst []queryParam, rawQuery string) ([]queryParam, bool) {
	if rawQuery == "" {
		return dst, true
	}
	for seg := range strings.SplitSeq(rawQuery, "&") {
		if seg == "" {
			continue
		}
		if strings.IndexByte(seg, ';') >= 0 || !validEscapes(seg) {
			return nil, false
		}
		rawName, rawValue, _ := strings.Cut(seg, "=")
		dst = append(dst, queryParam{rawName, rawValue})
	}
	slices.SortStableFunc(dst, func(a, b queryParam) int { return compareDecoded(a.rawName, b.rawName) })
	return dst, true
}

// validEscapes reports whether every % in s starts a two-digit hex escape,
// the only thing url.QueryUnescape refuses.
func validEscapes(s string) bool {
	for i := strings.IndexByte(s, '%'); i >= 0; {
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		next := strings.IndexByte(s[i+3:], '%')
		if next < 0 {
			break
		}
		i += 3 + next
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// decoder yields the bytes url.QueryUnescape would produce from a string
// validEscapes accepted.
type decoder struct {
	s string
	i int
}

func (d *decoder) next() (byte, bool) {
	if d.i >= len(d.s) {
		return 0, false
	}
	c := d.s[d.i]
	switch c {
	case '%':
		c = unhex(d.s[d.i+1])<<4 | unhex(d.s[d.i+2])
		d.i += 3
	case '+':
		c = ' '
		d.i++
	default:
		d.i++
	}
	return c, true
}

// compareDecoded is strings.Compare of the decoded a and b.
func compareDecoded(a, b string) int {
	da, db := decoder{s: a}, decoder{s: b}
	for {
		ca, okA := da.next()
		cb, okB := db.next()
		switch {
		case !okA && !okB:
			return 0
		case !okA:
			return -1
		case !okB:
			return 1
		case ca != cb:
			return cmp.Compare(ca, cb)
		}
	}
}

// appendDecoded appends the decoded s with its length first, as
// appendString does for a plain string.
func appendDecoded(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)-2*strings.Count(s, "%")))
	for d := (decoder{s: s}); ; {
		c, ok := d.next()
		if !ok {
			return b
		}
		b = append(b, c)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendList(b []byte, vs []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(vs)))
	for _, v := range vs {
		b = appendString(b, v)
	}
	return b
}

// wantsRefresh reports whether the caller asked for an answer fresh from
// the upstream (Cache-Control: no-cache, or HTTP/1.0's Pragma: no-cache).
func wantsRefresh(h http.Header) bool {
	return hasDirective(h["Cache-Control"], "no-cache") || hasDirective(h["Pragma"], "no-cache")
}

// hasDirective reports whether a comma-separated header (Cache-Control,
// Pragma) holds directive, with or without an argument, in any case.
func hasDirective(values []string, directive string) bool {
	for _, v := range values {
		for d := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(d, "=")
			if strings.EqualFold(strings.TrimSpace(name), directive) {
				return true
			}
		}
	}
	return false
}
