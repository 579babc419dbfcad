package aemlinks

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A JSON answer is rewritten in place of its string values, never decoded
// and encoded again: every byte outside the rewritten origins — key order,
// white space, the spelling of numbers and of the rest of each URL — stays
// as the upstream wrote it.

// jsonURLs finds, in a valid JSON text, the string values (not the object
// keys) whose decoded value starts with the origin, whatever escapes spell
// it ("https:\/\/author…" as PHP writes it, "\u0068ttps://…").
type jsonURLs struct {
	o *origin
	// Scratch for the decoded start of one string: its bytes and, for
	// each, the offset in the raw string just after it (-1 inside a
	// character that an escape spells in several bytes).
	dec  []byte
	ends []int
}

func newJSONURLs(o *origin) *jsonURLs {
	return &jsonURLs{o: o, dec: make([]byte, 0, o.window+utf8.UTFMax), ends: make([]int, 0, o.window+utf8.UTFMax)}
}

// next finds the first URL of the origin in body at or after offset from:
// the raw offsets of the origin's spelling [start, end), whether that
// spelling escapes its slashes, and where to continue. start is -1 when
// there is none.
func (s *jsonURLs) next(body []byte, from int) (start, end int, escaped bool, resume int) {
	for i := from; ; {
		q := bytes.IndexByte(body[i:], '"')
		if q < 0 {
			return -1, 0, false, len(body)
		}
		open := i + q + 1
		shut := stringEnd(body, open)
		i = shut + 1
		if isKey(body, i) {
			continue
		}
		if n := s.match(body[open:shut]); n > 0 {
			return open, open + n, bytes.Contains(body[open:open+n], []byte(`\/`)), i
		}
	}
}

// match returns the raw length of the origin at the start of the raw
// string content raw, or -1.
func (s *jsonURLs) match(raw []byte) int {
	if len(raw) == 0 || raw[0] != '\\' && raw[0]|0x20 != s.o.scheme[0] {
		return -1 // the common case: not even the scheme's first letter
	}
	complete := s.decode(raw)
	n := match(s.o, s.dec, complete)
	if n <= 0 {
		return -1
	}
	return s.ends[n-1] // -1 if the match ended inside a character: none
}

// decode decodes the start of raw, up to the origin's window, into s.dec
// and s.ends, and reports whether that was the whole string.
func (s *jsonURLs) decode(raw []byte) bool {
	dec, ends := s.dec[:0], s.ends[:0]
	i := 0
	for i < len(raw) && len(dec) < s.o.window {
		c := raw[i]
		if c != '\\' {
			dec, ends = append(dec, c), append(ends, i+1)
			i++
			continue
		}
		var r rune
		switch e := raw[i+1]; e {
		case 'u':
			r = rune(hex4(raw[i+2 : i+6]))
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = rune(hex4(raw[i+2 : i+6]))
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r, i = d, i+6
				} else {
					r = utf8.RuneError // a lone surrogate, as encoding/json decodes it
				}
			}
		default:
			r = rune(unescape(e))
			i += 2
		}
		n := len(dec)
		dec = utf8.AppendRune(dec, r)
		for range len(dec) - n - 1 {
			ends = append(ends, -1)
		}
		ends = append(ends, i)
	}
	s.dec, s.ends = dec, ends
	return i == len(raw)
}

// unescape is the byte a two-character escape stands for.
func unescape(e byte) byte {
	switch e {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return e // '"', '\\', '/'
}

func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default: // 'A' to 'F' in valid JSON
			c -= 'A' - 10
		}
		v = v<<4 | uint16(c)
	}
	return v
}

// stringEnd is the offset of the quote closing the string whose content
// starts at open, in valid JSON.
func stringEnd(body []byte, open int) int {
	for i := open; ; {
		q := i + bytes.IndexByte(body[i:], '"')
		k := q
		for k > open && body[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 {
			return q
		}
		i = q + 1
	}
}

// isKey reports whether the string that closed just before offset i is an
// object key: in valid JSON, exactly when a colon follows.
func isKey(body []byte, i int) bool {
	for ; i < len(body); i++ {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
		case ':':
			return true
		default:
			return false
		}
	}
	return false
}

// jsonRewrite rewrites the URLs of one origin in JSON texts to one base.
type jsonRewrite struct {
	urls    *jsonURLs
	base    string // the route's own origin, e.g. http://127.0.0.1:8081
	escaped string // base with its slashes escaped, for URLs written so
}

func newJSONRewrite(o *origin, base string) *jsonRewrite {
	return &jsonRewrite{urls: newJSONURLs(o), base: base, escaped: strings.ReplaceAll(base, "/", `\/`)}
}

func (j *jsonRewrite) replacement(escaped bool) string {
	if escaped {
		return j.escaped
	}
	return j.base
}

// size returns the length body has once rewritten and how many URLs are
// rewritten in it; 0 URLs for a body that is not valid JSON.
func (j *jsonRewrite) size(body []byte) (size, urls int) {
	if !json.Valid(body) {
		return len(body), 0
	}
	size = len(body)
	for i := 0; ; urls++ {
		start, end, escaped, resume := j.urls.next(body, i)
		if start < 0 {
			return size, urls
		}
		size += len(j.replacement(escaped)) - (end - start)
		i = resume
	}
}

// appendTo appends body, rewritten, to dst. body must be valid JSON (size
// said so).
func (j *jsonRewrite) appendTo(dst, body []byte) []byte {
	last := 0
	for i := 0; ; {
		start, end, escaped, resume := j.urls.next(body, i)
		if start < 0 {
			return append(dst, body[last:]...)
		}
		dst = append(dst, body[last:start]...)
		dst = append(dst, j.replacement(escaped)...)
		last, i = end, resume
	}
}
