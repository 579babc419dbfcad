package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Problem is one thing wrong with the configuration: the variable to fix
// and what is wrong with it. Messages never contain the value of a secret.
type Problem struct {
	Var     string // the environment variable, e.g. IMSPROXY_STOCK_CLIENT_ID
	Message string // what is wrong, in words an operator can act on

	// suppliers, for a value that is missing, are the variables any of
	// which would have supplied it. When one of them is set under a
	// misspelt name, the misspelling is the one problem to report.
	suppliers []string
}

// String renders the problem as "VAR: message".
func (p Problem) String() string { return p.Var + ": " + p.Message }

// Problems is every problem Load found, so that an operator can fix the
// whole configuration in one round instead of one restart per mistake.
type Problems []Problem

// Error renders one line per problem, "VAR: message", sorted by variable and
// then message so that the output does not depend on map iteration order.
func (ps Problems) Error() string {
	sorted := append(Problems(nil), ps...)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, p := range sorted {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders the problems the way Error prints them.
func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Var != ps[j].Var {
			return ps[i].Var < ps[j].Var
		}
		return ps[i].Message < ps[j].Message
	})
}

// add records a problem with a formatted message. Callers pass only values
// that are not secret (variable names, paths, field names, dates).
func (ps *Problems) add(v, format string, args ...any) {
	*ps = append(*ps, Problem{Var: v, Message: fmt.Sprintf(format, args...)})
}

// addMissing records that no variable supplied a required value; the first
// of suppliers is the one to set, the others would do as well.
func (ps *Problems) addMissing(suppliers []string, format string, args ...any) {
	*ps = append(*ps, Problem{Var: suppliers[0], Message: fmt.Sprintf(format, args...), suppliers: suppliers})
}

// dropMissingSuppliedBy deletes the problems of values that v would have
// supplied: v is set, under a misspelt name, and that is reported instead.
func (ps *Problems) dropMissingSuppliedBy(v string) {
	*ps = slices.DeleteFunc(*ps, func(p Problem) bool { return slices.Contains(p.suppliers, v) })
}

// has reports whether a problem was recorded for any of the variables.
func (ps Problems) has(vars ...string) bool {
	for _, p := range ps {
		for _, v := range vars {
			if p.Var == v {
				return true
			}
		}
	}
	return false
}

// err returns ps as an error, or a nil error (not a typed nil) when empty.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	sorted := append(Problems(nil), ps...)
	sorted.sort()
	return sorted
}
