package fakeadobe

import (
	"fmt"
	"slices"
	"strings"
)

// validate checks an operation against the schema before anything runs, as
// graphql-java does, with its error types and messages: "Validation error
// (FieldUndefined@[adventureList/items/foo]) : Field 'foo' in type
// 'AdventureModel' is undefined".
func (sc *gqlSchema) validate(doc *gqlDocument, op *gqlOperation) []gqlError {
	v := &gqlValidator{sc: sc, doc: doc, declared: map[string]*gqlTypeRef{}}
	for _, d := range op.vars {
		if t := sc.types[d.typ.base()]; t == nil || (t.kind != kindScalar && t.kind != kindEnum && t.kind != kindInput) {
			v.fail("UnknownType", nil, d.loc, "Unknown type '%s'", d.typ.base())
		}
		v.declared[d.name] = d.typ
	}
	v.selections(op.selections, sc.types[sc.query], nil, map[string]bool{})
	for _, d := range op.vars {
		if !v.used[d.name] {
			v.fail("UnusedVariable", nil, d.loc, "Unused variable '%s'", d.name)
		}
	}
	return v.errs
}

type gqlValidator struct {
	sc       *gqlSchema
	doc      *gqlDocument
	declared map[string]*gqlTypeRef
	used     map[string]bool
	errs     []gqlError
}

func (v *gqlValidator) fail(kind string, path []string, loc gqlLoc, format string, args ...any) {
	at := kind
	if len(path) > 0 {
		at += "@[" + strings.Join(path, "/") + "]"
	}
	v.errs = append(v.errs, newGQLError("ValidationError",
		fmt.Sprintf("Validation error (%s) : %s", at, fmt.Sprintf(format, args...)), loc))
}

func (v *gqlValidator) selections(sels []*gqlSelection, typ *gqlType, path []string, inFragments map[string]bool) {
	for _, s := range sels {
		v.directives(s.directives, path)
		switch {
		case s.spread != "":
			f := v.doc.fragments[s.spread]
			switch {
			case f == nil:
				v.fail("UndefinedFragment", path, s.loc, "Undefined fragment %s", s.spread)
			case inFragments[s.spread]:
				v.fail("FragmentCycle", path, s.loc, "Fragment cycle detected for fragment '%s'", s.spread)
			case v.fragmentType(f.typeCond, typ, path, s.loc):
				inFragments[s.spread] = true
				v.selections(f.selections, v.sc.types[f.typeCond], path, inFragments)
				delete(inFragments, s.spread)
			}
		case s.inline:
			cond := typ
			if s.typeCond != "" && v.fragmentType(s.typeCond, typ, path, s.loc) {
				cond = v.sc.types[s.typeCond]
			}
			v.selections(s.sub, cond, path, inFragments)
		default:
			v.field(s, typ, append(append([]string{}, path...), s.key()), inFragments)
		}
	}
}

// fragmentType checks that a fragment's type condition names a type that
// can apply where it is spread.
func (v *gqlValidator) fragmentType(cond string, parent *gqlType, path []string, loc gqlLoc) bool {
	t := v.sc.types[cond]
	switch {
	case t == nil:
		v.fail("UnknownType", path, loc, "Unknown type '%s'", cond)
		return false
	case t.kind != kindObject && t.kind != kindUnion:
		v.fail("InlineFragmentTypeConditionInvalid", path, loc, "Fragment type condition is invalid, must be on Object/Interface/Union")
		return false
	case cond != parent.name && !slices.Contains(parent.members, cond):
		v.fail("InvalidFragmentType", path, loc, "Fragment cannot be spread here as objects of type '%s' can never be of type '%s'", parent.name, cond)
		return false
	}
	return true
}

func (v *gqlValidator) field(s *gqlSelection, typ *gqlType, path []string, inFragments map[string]bool) {
	if s.name == "__typename" {
		if len(s.sub) > 0 {
			v.fail("SubselectionNotAllowed", path, s.loc, "Subselection not allowed on leaf type 'String!' of field '__typename'")
		}
		return
	}
	def := typ.fields[s.name]
	if def == nil {
		v.fail("FieldUndefined", path, s.loc, "Field '%s' in type '%s' is undefined", s.name, typ.name)
		return
	}
	given := map[string]bool{}
	for _, a := range s.args {
		at, ok := def.args[a.name]
		if !ok {
			v.fail("UnknownArgument", path, a.loc, "Unknown field argument '%s'", a.name)
			continue
		}
		given[a.name] = true
		v.value(a.value, at, path, a.name)
	}
	for name, at := range def.args {
		if at.nonNull && !given[name] {
			v.fail("MissingFieldArgument", path, s.loc, "Missing field argument '%s'", name)
		}
	}
	rt := v.sc.types[def.typ.base()]
	switch leaf := rt.kind == kindScalar || rt.kind == kindEnum; {
	case leaf && len(s.sub) > 0:
		v.fail("SubselectionNotAllowed", path, s.loc, "Subselection not allowed on leaf type '%s' of field '%s'", def.typ, s.name)
	case !leaf && len(s.sub) == 0:
		v.fail("SubselectionRequired", path, s.loc, "Subselection required for type '%s' of field '%s'", def.typ, s.name)
	case !leaf:
		v.selections(s.sub, rt, path, inFragments)
	}
}

// value checks an argument's literal (variables are checked for being
// declared; their values when the operation runs).
func (v *gqlValidator) value(val *gqlValue, t *gqlTypeRef, path []string, arg string) {
	var vars map[string]any
	for _, name := range variablesIn(val) {
		if v.used == nil {
			v.used = map[string]bool{}
		}
		v.used[name] = true
		if _, ok := v.declared[name]; !ok {
			v.fail("UndefinedVariable", path, val.loc, "Undefined variable '%s'", name)
			return
		}
		if vars == nil {
			vars = map[string]any{}
		}
		vars[name] = placeholder(v.declared[name])
	}
	if _, err := v.sc.coerceLiteral(val, t, vars); err != nil {
		v.fail("WrongType", path, val.loc, "argument '%s' with value '%s' is not a valid '%s' - %v", arg, val, t, err)
	}
}

// placeholder stands for a variable's value while a literal around it is
// checked: a value of its declared type.
func placeholder(t *gqlTypeRef) any {
	if t.elem != nil {
		return []any{}
	}
	switch t.name {
	case "Int":
		return int64(0)
	case "Float":
		return float64(0)
	case "Boolean":
		return false
	case "String", "ID":
		return ""
	}
	return map[string]any{}
}

func variablesIn(val *gqlValue) []string {
	switch val.kind {
	case valVariable:
		return []string{val.raw}
	case valList:
		var out []string
		for _, x := range val.list {
			out = append(out, variablesIn(x)...)
		}
		return out
	case valObject:
		var out []string
		for _, f := range val.fields {
			out = append(out, variablesIn(f.value)...)
		}
		return out
	}
	return nil
}

func (v *gqlValidator) directives(ds []gqlDirective, path []string) {
	for _, d := range ds {
		if d.name != "include" && d.name != "skip" {
			v.fail("UnknownDirective", path, d.loc, "Unknown directive %s", d.name)
			continue
		}
		if len(d.args) != 1 || d.args[0].name != "if" {
			v.fail("MissingDirectiveArgument", path, d.loc, "Missing directive argument 'if'")
			continue
		}
		v.value(d.args[0].value, tref("Boolean!"), path, "if")
	}
}
