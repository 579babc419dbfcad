package fakeadobe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The schema and executor of the emulated AEM GraphQL API. AEM runs
// graphql-java, so errors take its JSON shape and its messages:
// {"message", "locations", "path", "extensions": {"classification"}}.

type gqlKind int

const (
	kindScalar gqlKind = iota
	kindEnum
	kindObject
	kindUnion
	kindInput
)

type gqlType struct {
	name    string
	kind    gqlKind
	fields  map[string]*gqlFieldDef // object
	inputs  map[string]*gqlTypeRef  // input object
	values  []string                // enum
	members []string                // union
	typeOf  func(v any) string      // union: the member type of a value
}

type gqlFieldDef struct {
	typ     *gqlTypeRef
	args    map[string]*gqlTypeRef
	resolve func(e *gqlExec, parent any, args map[string]any) (any, error) // nil: parent[name]
}

type gqlSchema struct {
	types map[string]*gqlType
	query string // the root type
}

// tref reads a type as written in a schema ("[AdventureModel]!").
func tref(s string) *gqlTypeRef {
	p := &gqlParser{src: s, line: 1, col: 1}
	p.next()
	return p.typeRef()
}

type gqlErrLoc struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

type gqlError struct {
	Message    string         `json:"message"`
	Locations  []gqlErrLoc    `json:"locations,omitempty"`
	Path       []any          `json:"path,omitempty"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

// gqlReason is why a value does not fit its type, worded as graphql-java
// words it (capitalised: it ends a message that clients show).
type gqlReason string

func (r gqlReason) Error() string { return string(r) }

func gqlErrorf(format string, args ...any) error { return gqlReason(fmt.Sprintf(format, args...)) }

func newGQLError(class, msg string, loc gqlLoc) gqlError {
	e := gqlError{Message: msg, Extensions: map[string]any{"classification": class}}
	if loc.line > 0 {
		e.Locations = []gqlErrLoc{{loc.line, loc.column}}
	}
	return e
}

// gqlObject is a JSON object that keeps the order of the query's fields,
// as a GraphQL answer must.
type gqlObject struct {
	keys []string
	vals []any
}

func (o *gqlObject) set(k string, v any) { o.keys, o.vals = append(o.keys, k), append(o.vals, v) }

// MarshalJSON implements json.Marshaler; like writeJSON it leaves <, >
// and & unescaped, as AEM writes HTML in JSON strings.
func (o *gqlObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := enc.Encode(k); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
		b.WriteByte(':')
		if err := enc.Encode(o.vals[i]); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// gqlExec is one execution of an operation.
type gqlExec struct {
	schema *gqlSchema
	doc    *gqlDocument
	vars   map[string]any // coerced
	base   string         // the AEM origin the request came to
	errors []gqlError
}

// execute validates and runs the operation named opName (or the only one)
// with raw variables (JSON values). data is nil when nothing ran.
func (sc *gqlSchema) execute(doc *gqlDocument, opName string, rawVars map[string]any, base string) (data *gqlObject, errs []gqlError) {
	op, err := pickOperation(doc, opName)
	if err != nil {
		return nil, []gqlError{*err}
	}
	if op.kind != "query" {
		return nil, []gqlError{newGQLError("OperationNotSupported", "Schema is not configured for "+op.kind+"s.", op.loc)}
	}
	if errs := sc.validate(doc, op); len(errs) > 0 {
		return nil, errs
	}
	vars, verr := sc.coerceVariables(op, rawVars)
	if verr != nil {
		return nil, []gqlError{*verr}
	}
	e := &gqlExec{schema: sc, doc: doc, vars: vars, base: base}
	data = e.selectionSet(op.selections, sc.types[sc.query], nil, nil)
	return data, e.errors
}

func pickOperation(doc *gqlDocument, name string) (*gqlOperation, *gqlError) {
	if name == "" && len(doc.operations) == 1 {
		return doc.operations[0], nil
	}
	for _, op := range doc.operations {
		if name != "" && op.name == name {
			return op, nil
		}
	}
	msg := "Unknown operation named '" + name + "'."
	if name == "" {
		msg = "Must provide operation name if query contains multiple operations."
	}
	e := newGQLError("ValidationError", msg, gqlLoc{})
	return nil, &e
}

func (sc *gqlSchema) coerceVariables(op *gqlOperation, raw map[string]any) (map[string]any, *gqlError) {
	vars := map[string]any{}
	for _, d := range op.vars {
		v, given := raw[d.name]
		var err error
		switch {
		case !given && d.def != nil:
			v, err = sc.coerceLiteral(d.def, d.typ, nil)
		case !given && !d.typ.nonNull:
			continue
		case v == nil && d.typ.nonNull:
			e := newGQLError("ValidationError", fmt.Sprintf("Variable '%s' has coerced Null value for NonNull type '%s'", d.name, d.typ), d.loc)
			return nil, &e
		default:
			v, err = sc.coerceJSON(v, d.typ)
		}
		if err != nil {
			e := newGQLError("ValidationError", fmt.Sprintf("Variable '%s' has an invalid value: %v", d.name, err), d.loc)
			return nil, &e
		}
		vars[d.name] = v
	}
	return vars, nil
}

// coerceJSON turns a JSON value (a variable's) into the Go value of t.
func (sc *gqlSchema) coerceJSON(v any, t *gqlTypeRef) (any, error) {
	if v == nil {
		if t.nonNull {
			return nil, gqlErrorf("Variable has coerced Null value for NonNull type '%s'", t)
		}
		return nil, nil
	}
	if t.elem != nil {
		list, ok := v.([]any)
		if !ok {
			list = []any{v} // a single value is a list of one
		}
		out := make([]any, len(list))
		for i, x := range list {
			c, err := sc.coerceJSON(x, t.elem)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
	typ := sc.types[t.name]
	switch {
	case typ == nil:
		return nil, gqlErrorf("Unknown type '%s'", t.name)
	case typ.kind == kindInput:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, gqlErrorf("Expected type '%s' but was '%T'", t.name, v)
		}
		out := map[string]any{}
		for k, x := range m {
			ft, known := typ.inputs[k]
			if !known {
				return nil, gqlErrorf("Field '%s' is not defined in type '%s'", k, t.name)
			}
			c, err := sc.coerceJSON(x, ft)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, sc.requiredInputs(typ, out)
	case typ.kind == kindEnum:
		s, ok := v.(string)
		if !ok || !slices.Contains(typ.values, s) {
			return nil, gqlErrorf("Invalid input for enum '%s'. No value found for name '%v'", t.name, v)
		}
		return s, nil
	}
	return coerceScalar(t.name, v)
}

func (sc *gqlSchema) requiredInputs(typ *gqlType, got map[string]any) error {
	for k, ft := range typ.inputs {
		if _, ok := got[k]; !ok && ft.nonNull {
			return gqlErrorf("Field '%s' of type '%s' is missing", k, typ.name)
		}
	}
	return nil
}

// coerceScalar accepts a JSON (or literal-converted) value for a scalar.
func coerceScalar(name string, v any) (any, error) {
	bad := gqlErrorf("Expected type '%s' but was '%v'", name, v)
	switch name {
	case "String":
		if s, ok := v.(string); ok {
			return s, nil
		}
	case "ID":
		switch x := v.(type) {
		case string:
			return x, nil
		case float64:
			if x == float64(int64(x)) {
				return fmt.Sprint(int64(x)), nil
			}
		}
	case "Int":
		if f, ok := v.(float64); ok && f == float64(int32(f)) {
			return int64(f), nil
		}
	case "Float":
		if f, ok := v.(float64); ok {
			return f, nil
		}
	case "Boolean":
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case "Json":
		return v, nil
	}
	return nil, bad
}

// coerceLiteral turns a literal of the query into the Go value of t;
// variables come from vars (already coerced), or make an error when vars
// is nil (a constant context).
func (sc *gqlSchema) coerceLiteral(v *gqlValue, t *gqlTypeRef, vars map[string]any) (any, error) {
	if v.kind == valVariable {
		x, ok := vars[v.raw]
		if !ok && t.nonNull {
			return nil, gqlErrorf("variable '%s' has no value", v.raw)
		}
		return x, nil
	}
	var j any
	switch v.kind {
	case valNull:
		j = nil
	case valInt, valFloat:
		var f float64
		fmt.Sscan(v.raw, &f)
		j = f
		if v.kind == valFloat && (t.base() == "Int" || t.base() == "ID") {
			return nil, gqlErrorf("Expected type '%s' but was a Float", t.base())
		}
	case valString:
		if b := t.base(); b != "String" && b != "ID" && b != "Json" {
			return nil, gqlErrorf("Expected type '%s' but was a String", b)
		}
		j = v.raw
	case valBoolean:
		j = v.raw == "true"
	case valEnum:
		if typ := sc.types[t.base()]; typ == nil || typ.kind != kindEnum {
			return nil, gqlErrorf("Expected type '%s' but was an enum value", t.base())
		}
		j = v.raw
	case valList:
		if t.elem == nil {
			return nil, gqlErrorf("Expected type '%s' but was a list", t)
		}
		out := make([]any, 0, len(v.list))
		for _, x := range v.list {
			c, err := sc.coerceLiteral(x, t.elem, vars)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	case valObject:
		typ := sc.types[t.base()]
		if typ == nil || typ.kind != kindInput {
			return nil, gqlErrorf("Expected type '%s' but was an object", t.base())
		}
		if t.elem != nil {
			c, err := sc.coerceLiteral(v, t.elem, vars)
			return []any{c}, err
		}
		out := map[string]any{}
		for _, f := range v.fields {
			ft, ok := typ.inputs[f.name]
			if !ok {
				return nil, gqlErrorf("contains a field not in '%s': '%s'", typ.name, f.name)
			}
			c, err := sc.coerceLiteral(f.value, ft, vars)
			if err != nil {
				return nil, err
			}
			if c != nil || f.value.kind == valNull {
				out[f.name] = c
			}
		}
		return out, sc.requiredInputs(typ, out)
	}
	return sc.coerceJSON(j, t)
}

// collect gathers the fields a selection set selects on type typ, by
// response key in query order, through fragments and @skip/@include.
func (e *gqlExec) collect(sels []*gqlSelection, typ string, keys *[]string, groups map[string][]*gqlSelection, seen map[string]bool) {
	for _, s := range sels {
		if !e.included(s.directives) {
			continue
		}
		switch {
		case s.spread != "":
			f := e.doc.fragments[s.spread]
			if seen[s.spread] || f == nil || f.typeCond != typ {
				continue
			}
			seen[s.spread] = true
			e.collect(f.selections, typ, keys, groups, seen)
		case s.inline:
			if s.typeCond == "" || s.typeCond == typ {
				e.collect(s.sub, typ, keys, groups, seen)
			}
		default:
			k := s.key()
			if _, ok := groups[k]; !ok {
				*keys = append(*keys, k)
			}
			groups[k] = append(groups[k], s)
		}
	}
}

func (e *gqlExec) included(ds []gqlDirective) bool {
	for _, d := range ds {
		if len(d.args) != 1 {
			continue
		}
		v, _ := e.schema.coerceLiteral(d.args[0].value, tref("Boolean!"), e.vars)
		b, _ := v.(bool)
		if (d.name == "skip" && b) || (d.name == "include" && !b) {
			return false
		}
	}
	return true
}

func (e *gqlExec) selectionSet(sels []*gqlSelection, typ *gqlType, value any, path []any) *gqlObject {
	var keys []string
	groups := map[string][]*gqlSelection{}
	e.collect(sels, typ.name, &keys, groups, map[string]bool{})
	out := &gqlObject{}
	for _, k := range keys {
		fields := groups[k]
		f := fields[0]
		fpath := append(append([]any{}, path...), k)
		if f.name == "__typename" {
			out.set(k, typ.name)
			continue
		}
		def := typ.fields[f.name]
		args := map[string]any{}
		for _, a := range f.args {
			v, _ := e.schema.coerceLiteral(a.value, def.args[a.name], e.vars)
			args[a.name] = v
		}
		var v any
		var err error
		if def.resolve != nil {
			v, err = def.resolve(e, value, args)
		} else if m, ok := value.(map[string]any); ok {
			v = m[f.name]
		}
		if err != nil {
			ge := newGQLError("DataFetchingException", fmt.Sprintf("Exception while fetching data (/%s) : %v", joinPath(fpath), err), f.loc)
			ge.Path = fpath
			e.errors = append(e.errors, ge)
			out.set(k, nil)
			continue
		}
		var sub []*gqlSelection
		for _, g := range fields {
			sub = append(sub, g.sub...)
		}
		out.set(k, e.complete(def.typ, v, sub, fpath))
	}
	return out
}

func joinPath(path []any) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, "/")
}

// complete shapes a resolved value by its type.
func (e *gqlExec) complete(t *gqlTypeRef, v any, sub []*gqlSelection, path []any) any {
	if v == nil {
		return nil
	}
	if t.elem != nil {
		list, _ := v.([]any)
		out := make([]any, len(list))
		for i, x := range list {
			out[i] = e.complete(t.elem, x, sub, append(append([]any{}, path...), i))
		}
		return out
	}
	typ := e.schema.types[t.name]
	switch typ.kind {
	case kindObject:
		return e.selectionSet(sub, typ, v, path)
	case kindUnion:
		return e.selectionSet(sub, e.schema.types[typ.typeOf(v)], v, path)
	}
	return v
}
