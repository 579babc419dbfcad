package fakeadobe

import (
	"fmt"
	"strconv"
	"strings"
)

// A parser for the executable part of GraphQL (October 2021 specification):
// operations with variables, fields with aliases, arguments and directives,
// fragments and inline fragments, every literal. Enough for what clients of
// AEM's content-fragment API send; type-system definitions are refused.

type gqlLoc struct{ line, column int }

type gqlDocument struct {
	operations []*gqlOperation
	fragments  map[string]*gqlFragment
}

type gqlOperation struct {
	kind       string // query, mutation or subscription
	name       string
	vars       []gqlVarDef
	selections []*gqlSelection
	loc        gqlLoc
}

type gqlVarDef struct {
	name string
	typ  *gqlTypeRef
	def  *gqlValue
	loc  gqlLoc
}

// gqlTypeRef is a type as written: a name, or a list of a type; either may
// be non-null.
type gqlTypeRef struct {
	name    string
	elem    *gqlTypeRef
	nonNull bool
}

func (t *gqlTypeRef) String() string {
	s := t.name
	if t.elem != nil {
		s = "[" + t.elem.String() + "]"
	}
	if t.nonNull {
		s += "!"
	}
	return s
}

// base is the named type under any list and non-null wrapping.
func (t *gqlTypeRef) base() string {
	for t.elem != nil {
		t = t.elem
	}
	return t.name
}

// gqlSelection is a field, a fragment spread (spread != "") or an inline
// fragment (inline).
type gqlSelection struct {
	alias, name string
	args        []gqlArg
	directives  []gqlDirective
	sub         []*gqlSelection
	spread      string
	inline      bool
	typeCond    string
	loc         gqlLoc
}

func (s *gqlSelection) key() string {
	if s.alias != "" {
		return s.alias
	}
	return s.name
}

type gqlArg struct {
	name  string
	value *gqlValue
	loc   gqlLoc
}

type gqlDirective struct {
	name string
	args []gqlArg
	loc  gqlLoc
}

type gqlFragment struct {
	name, typeCond string
	selections     []*gqlSelection
	loc            gqlLoc
}

// Kinds of literal values.
const (
	valVariable = iota
	valInt
	valFloat
	valString
	valBoolean
	valNull
	valEnum
	valList
	valObject
)

type gqlValue struct {
	kind   int
	raw    string // the variable's name, the number, string, enum or boolean
	list   []*gqlValue
	fields []gqlObjectField
	loc    gqlLoc
}

type gqlObjectField struct {
	name  string
	value *gqlValue
}

// String renders a literal as graphql-java names it in messages.
func (v *gqlValue) String() string {
	switch v.kind {
	case valVariable:
		return "$" + v.raw
	case valString:
		return strconv.Quote(v.raw)
	case valList:
		parts := make([]string, len(v.list))
		for i, e := range v.list {
			parts[i] = e.String()
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case valObject:
		parts := make([]string, len(v.fields))
		for i, f := range v.fields {
			parts[i] = f.name + ": " + f.value.String()
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return v.raw
}

// gqlSyntaxError is graphql-java's InvalidSyntax.
type gqlSyntaxError struct {
	msg string
	loc gqlLoc
}

func (e *gqlSyntaxError) Error() string { return e.msg }

// maxQueryBytes bounds a query document (AEM has no documented limit; this
// only keeps the emulator's memory bounded).
const maxQueryBytes = 64 << 10

func parseGraphQL(src string) (doc *gqlDocument, err error) {
	if len(src) > maxQueryBytes {
		return nil, &gqlSyntaxError{msg: "Invalid Syntax : the query is longer than " + strconv.Itoa(maxQueryBytes) + " bytes", loc: gqlLoc{1, 1}}
	}
	p := &gqlParser{src: src, line: 1, col: 1}
	defer func() {
		if r := recover(); r != nil {
			se, ok := r.(*gqlSyntaxError)
			if !ok {
				panic(r)
			}
			doc, err = nil, se
		}
	}()
	p.next()
	doc = &gqlDocument{fragments: map[string]*gqlFragment{}}
	if p.tok.kind == "eof" {
		p.fail()
	}
	for p.tok.kind != "eof" {
		switch {
		case p.is("punct", "{"):
			doc.operations = append(doc.operations, &gqlOperation{kind: "query", loc: p.tok.loc, selections: p.selectionSet()})
		case p.is("name", "query"), p.is("name", "mutation"), p.is("name", "subscription"):
			doc.operations = append(doc.operations, p.operation())
		case p.is("name", "fragment"):
			f := p.fragment()
			doc.fragments[f.name] = f
		default:
			p.fail()
		}
	}
	return doc, nil
}

func (p *gqlParser) fail() {
	text := p.tok.text
	if p.tok.kind == "eof" {
		text = "<EOF>"
	}
	panic(&gqlSyntaxError{
		msg: fmt.Sprintf("Invalid Syntax : offending token '%s' at line %d column %d", text, p.tok.loc.line, p.tok.loc.column),
		loc: p.tok.loc,
	})
}

func (p *gqlParser) is(kind, text string) bool { return p.tok.kind == kind && p.tok.text == text }

func (p *gqlParser) expect(kind, text string) gqlToken {
	t := p.tok
	if t.kind != kind || (text != "" && t.text != text) {
		p.fail()
	}
	p.next()
	return t
}

func (p *gqlParser) name() string { return p.expect("name", "").text }

func (p *gqlParser) operation() *gqlOperation {
	op := &gqlOperation{kind: p.tok.text, loc: p.tok.loc}
	p.next()
	if p.tok.kind == "name" {
		op.name = p.name()
	}
	if p.is("punct", "(") {
		p.next()
		for !p.is("punct", ")") {
			v := gqlVarDef{loc: p.tok.loc}
			p.expect("punct", "$")
			v.name = p.name()
			p.expect("punct", ":")
			v.typ = p.typeRef()
			if p.is("punct", "=") {
				p.next()
				v.def = p.value(true)
			}
			op.vars = append(op.vars, v)
		}
		p.next()
	}
	p.directives() // on the operation: accepted and ignored
	op.selections = p.selectionSet()
	return op
}

func (p *gqlParser) typeRef() *gqlTypeRef {
	t := &gqlTypeRef{}
	if p.is("punct", "[") {
		p.next()
		t.elem = p.typeRef()
		p.expect("punct", "]")
	} else {
		t.name = p.name()
	}
	if p.is("punct", "!") {
		p.next()
		t.nonNull = true
	}
	return t
}

func (p *gqlParser) fragment() *gqlFragment {
	f := &gqlFragment{loc: p.tok.loc}
	p.next()
	if p.is("name", "on") {
		p.fail()
	}
	f.name = p.name()
	p.expect("name", "on")
	f.typeCond = p.name()
	p.directives()
	f.selections = p.selectionSet()
	return f
}

func (p *gqlParser) selectionSet() []*gqlSelection {
	p.expect("punct", "{")
	var out []*gqlSelection
	for !p.is("punct", "}") {
		out = append(out, p.selection())
	}
	p.next()
	return out
}

func (p *gqlParser) selection() *gqlSelection {
	s := &gqlSelection{loc: p.tok.loc}
	if p.is("punct", "...") {
		p.next()
		switch {
		case p.tok.kind == "name" && p.tok.text != "on":
			s.spread = p.name()
			s.directives = p.directives()
		default:
			s.inline = true
			if p.is("name", "on") {
				p.next()
				s.typeCond = p.name()
			}
			s.directives = p.directives()
			s.sub = p.selectionSet()
		}
		return s
	}
	s.name = p.name()
	if p.is("punct", ":") {
		p.next()
		s.alias, s.name = s.name, p.name()
	}
	s.args = p.arguments(false)
	s.directives = p.directives()
	if p.is("punct", "{") {
		s.sub = p.selectionSet()
	}
	return s
}

func (p *gqlParser) arguments(constant bool) []gqlArg {
	if !p.is("punct", "(") {
		return nil
	}
	p.next()
	var args []gqlArg
	for !p.is("punct", ")") {
		a := gqlArg{loc: p.tok.loc, name: p.name()}
		p.expect("punct", ":")
		a.value = p.value(constant)
		args = append(args, a)
	}
	p.next()
	return args
}

func (p *gqlParser) directives() []gqlDirective {
	var ds []gqlDirective
	for p.is("punct", "@") {
		d := gqlDirective{loc: p.tok.loc}
		p.next()
		d.name = p.name()
		d.args = p.arguments(false)
		ds = append(ds, d)
	}
	return ds
}

func (p *gqlParser) value(constant bool) *gqlValue {
	v := &gqlValue{loc: p.tok.loc, raw: p.tok.text}
	switch t := p.tok; {
	case t.kind == "punct" && t.text == "$" && !constant:
		p.next()
		v.kind, v.raw = valVariable, p.name()
		return v
	case t.kind == "int":
		v.kind = valInt
	case t.kind == "float":
		v.kind = valFloat
	case t.kind == "string":
		v.kind = valString
	case t.kind == "name" && (t.text == "true" || t.text == "false"):
		v.kind = valBoolean
	case t.kind == "name" && t.text == "null":
		v.kind = valNull
	case t.kind == "name":
		v.kind = valEnum
	case t.kind == "punct" && t.text == "[":
		p.next()
		v.kind = valList
		for !p.is("punct", "]") {
			v.list = append(v.list, p.value(constant))
		}
	case t.kind == "punct" && t.text == "{":
		p.next()
		v.kind = valObject
		for !p.is("punct", "}") {
			name := p.name()
			p.expect("punct", ":")
			v.fields = append(v.fields, gqlObjectField{name, p.value(constant)})
		}
	default:
		p.fail()
	}
	p.next()
	return v
}
