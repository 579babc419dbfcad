package fakeadobe

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The lexer of the GraphQL parser: tokens, ignored characters, numbers and
// strings as the specification defines them.

type gqlToken struct {
	kind string // punct, name, int, float, string, eof
	text string
	loc  gqlLoc
}

type gqlParser struct {
	src       string
	pos       int
	line, col int
	tok       gqlToken
}

// next reads the next token, skipping ignored tokens: white space, line
// terminators, commas, comments and a byte order mark.
func (p *gqlParser) next() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' && p.src[p.pos] != '\r' {
				p.advance(1)
			}
		case c == ' ' || c == '\t' || c == ',' || c == '\n' || c == '\r':
			p.advance(1)
		case strings.HasPrefix(p.src[p.pos:], "\ufeff"):
			p.advance(len("\ufeff"))
		default:
			p.token()
			return
		}
	}
	p.tok = gqlToken{kind: "eof", loc: gqlLoc{p.line, p.col}}
}

// advance moves n bytes, keeping line and column (in characters).
func (p *gqlParser) advance(n int) {
	for end := p.pos + n; p.pos < end; {
		r, size := utf8.DecodeRuneInString(p.src[p.pos:])
		p.pos += size
		switch {
		case r == '\n' || (r == '\r' && (p.pos >= len(p.src) || p.src[p.pos] != '\n')):
			p.line, p.col = p.line+1, 1
		default:
			p.col++
		}
	}
}

func (p *gqlParser) token() {
	loc := gqlLoc{p.line, p.col}
	rest := p.src[p.pos:]
	c := rest[0]
	switch {
	case strings.HasPrefix(rest, "..."):
		p.advance(3)
		p.tok = gqlToken{"punct", "...", loc}
	case strings.IndexByte("!$&()=:@[]{}|", c) >= 0:
		p.advance(1)
		p.tok = gqlToken{"punct", string(c), loc}
	case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
		n := 1
		for n < len(rest) && (rest[n] == '_' || isAlnum(rest[n])) {
			n++
		}
		p.advance(n)
		p.tok = gqlToken{"name", rest[:n], loc}
	case c == '-' || c >= '0' && c <= '9':
		p.number(loc)
	case strings.HasPrefix(rest, `"""`):
		p.blockString(loc)
	case c == '"':
		p.quotedString(loc)
	default:
		_, size := utf8.DecodeRuneInString(rest)
		p.tok = gqlToken{"punct", rest[:size], loc}
		p.fail()
	}
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

func (p *gqlParser) number(loc gqlLoc) {
	rest := p.src[p.pos:]
	n, float := 0, false
	if rest[n] == '-' {
		n++
	}
	digits := func() int {
		k := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n, k = n+1, k+1
		}
		return k
	}
	ok := digits() > 0
	if n < len(rest) && rest[n] == '.' {
		n++
		float, ok = true, ok && digits() > 0
	}
	if n < len(rest) && (rest[n] == 'e' || rest[n] == 'E') {
		n++
		if n < len(rest) && (rest[n] == '+' || rest[n] == '-') {
			n++
		}
		float, ok = true, ok && digits() > 0
	}
	if n < len(rest) && (rest[n] == '_' || rest[n] == '.' || isAlnum(rest[n])) {
		ok = false
	}
	kind := "int"
	if float {
		kind = "float"
	}
	p.tok = gqlToken{kind, rest[:n], loc}
	if !ok {
		p.fail()
	}
	p.advance(n)
}

func (p *gqlParser) quotedString(loc gqlLoc) {
	rest := p.src[p.pos:]
	var b strings.Builder
	for i := 1; i < len(rest); {
		c := rest[i]
		switch {
		case c == '"':
			p.advance(i + 1)
			p.tok = gqlToken{"string", b.String(), loc}
			return
		case c == '\n' || c == '\r':
			i = len(rest)
		case c == '\\' && i+1 < len(rest):
			esc := rest[i+1]
			if r, ok := map[byte]string{'"': `"`, '\\': `\`, '/': "/", 'b': "\b", 'f': "\f", 'n': "\n", 'r': "\r", 't': "\t"}[esc]; ok {
				b.WriteString(r)
				i += 2
				continue
			}
			if esc == 'u' && i+6 <= len(rest) {
				if code, err := strconv.ParseUint(rest[i+2:i+6], 16, 32); err == nil {
					b.WriteRune(rune(code))
					i += 6
					continue
				}
			}
			i = len(rest)
		default:
			b.WriteByte(c)
			i++
		}
	}
	p.tok = gqlToken{"string", rest[:min(len(rest), 20)], loc}
	p.fail()
}

// blockString reads a """block string""", with the common indentation
// removed as the specification says.
func (p *gqlParser) blockString(loc gqlLoc) {
	rest := p.src[p.pos:]
	end := strings.Index(strings.ReplaceAll(rest[3:], `\"""`, "xxxx"), `"""`)
	if end < 0 {
		p.tok = gqlToken{"string", `"""`, loc}
		p.fail()
	}
	raw := strings.ReplaceAll(rest[3:3+end], `\"""`, `"""`)
	lines := strings.Split(strings.ReplaceAll(raw, "\r\n", "\n"), "\n")
	indent := -1
	for _, l := range lines[1:] {
		trimmed := strings.TrimLeft(l, " \t")
		if trimmed != "" && (indent < 0 || len(l)-len(trimmed) < indent) {
			indent = len(l) - len(trimmed)
		}
	}
	for i := 1; i < len(lines) && indent > 0; i++ {
		lines[i] = lines[i][min(indent, len(lines[i])):]
	}
	for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	p.advance(3 + end + 3)
	p.tok = gqlToken{"string", strings.Join(lines, "\n"), loc}
}
