package config

import (
	"slices"
	"strings"
)

// unknownVars is every IMSPROXY_ variable that configures nothing, sorted
// out before the routes are loaded: a route's auth kind is then inferred
// as if a misspelt variable had its meant name, so that what else that
// kind needs is reported in the same round.
//
// A variable of a route that is not enabled is either a typo of an
// enabled route's variable (IMSPROXY_STOK_CLIENT_ID), reported as such, or
// one of a route left out of IMSPROXY_ROUTES, reported once for the route
// however many of its variables are set.
type unknownVars struct {
	typos     map[string]string   // unknown variable → the known one it is nearest, or ""
	disabled  map[string][]string // route not enabled → its variables that are set
	misnamed  map[string]string   // route whose variables are set → the name listed for it
	routesSet bool                // IMSPROXY_ROUTES named the routes
}

// findUnknown sorts out the variables that configure nothing: a typo
// (IMSPROXY_STOCK_CLIENTID) would otherwise leave a setting silently at
// its default. routesSet tells whether IMSPROXY_ROUTES named the routes.
func (l *loader) findUnknown(names []string, routesSet bool) unknownVars {
	known := map[string]bool{}
	for _, g := range globalNames() {
		known[g] = true
	}
	// Without IMSPROXY_ROUTES, stock and aem are the routes a variable can
	// configure, whether or not one of theirs is set yet: a lone
	// IMSPROXY_STOK_CLIENT_ID is a typo of stock's.
	candidates := names
	if !routesSet {
		candidates = append([]string{"stock", "aem"}, names...)
	}
	for _, n := range candidates {
		for _, s := range routeSuffixes() {
			known[routePrefix(n)+s] = true
		}
	}
	u := unknownVars{typos: map[string]string{}, disabled: map[string][]string{},
		misnamed: l.misnamedRoutes(names, routesSet), routesSet: routesSet}
	for k := range l.env {
		if known[k] {
			continue
		}
		route := routeOf(k)
		if u.misnamed[route] != "" {
			u.disabled[route] = append(u.disabled[route], k)
			continue
		}
		s := u.asMeant(closest(k, known, l.env))
		if route == "" && s == "" {
			s = closestOfAnyRoute(k)
		}
		if route == "" || s != "" {
			u.typos[k] = s
			continue
		}
		u.disabled[route] = append(u.disabled[route], k)
	}
	return u
}

// asMeant returns known variable v under the route name IMSPROXY_ROUTES
// meant, when v's route is a misspelt one (IMSPROXY_STOCK_CLIENT_ID for
// IMSPROXY_STOK_CLIENT_ID with IMSPROXY_ROUTES=stok): the suggestion then
// agrees with the one for the route.
func (u unknownVars) asMeant(v string) string {
	listed := routeOf(v)
	for meant, l := range u.misnamed {
		if l == listed {
			return routePrefix(meant) + strings.TrimPrefix(v, routePrefix(listed))
		}
	}
	return v
}

// misspelling returns the misspelt name v is set under, or "" (of two,
// the first in order, so that the outcome does not depend on map order).
func (u unknownVars) misspelling(v string) string {
	found := ""
	for k, s := range u.typos {
		if s == v && (found == "" || k < found) {
			found = k
		}
	}
	return found
}

// checkUnknown reports the variables u found.
func checkUnknown(ps *Problems, u unknownVars) {
	for k, s := range u.typos {
		msg := "unknown variable"
		if s != "" {
			msg += " (did you mean " + s + "?)"
			// What s would have supplied is missing: not a second problem.
			ps.dropMissingSuppliedBy(s)
		}
		ps.add(k, "%s", msg)
	}
	for route, vars := range u.disabled {
		if listed := u.misnamed[route]; listed != "" {
			// The listed route's own problems (no credentials, no
			// upstream) all come from the typo: the one line says it.
			*ps = slices.DeleteFunc(*ps, func(p Problem) bool { return routeOf(p.Var) == listed })
			ps.add(prefix+"ROUTES", "lists route %s, none of whose variables is set, while route %s, not listed, has %d (%s*): did you mean %s?",
				listed, route, len(vars), routePrefix(route), route)
			continue
		}
		how := "add " + route + " to IMSPROXY_ROUTES"
		if !u.routesSet {
			how = "IMSPROXY_ROUTES is unset, so only stock and aem are enabled: list your routes in it"
		}
		if len(vars) == 1 {
			ps.add(vars[0], "configures route %s, which is not enabled: %s", route, how)
			continue
		}
		ps.add(prefix+"ROUTES", "route %s is not enabled, but %d of its variables are set (%s*): %s, or unset them",
			route, len(vars), routePrefix(route), how)
	}
}

// misnamedRoutes finds the routes IMSPROXY_ROUTES most likely meant to
// name: a route it lists has no variable set, while a route of a name at
// most two edits away, not listed, has some (IMSPROXY_ROUTES=stok beside
// IMSPROXY_STOCK_*). The map goes from the route whose variables are set
// to the name listed. Without it, each of that route's variables would be
// told to take the misspelt name. A listed stock or aem, the names that
// choose a route type, is taken as meant: the near variables are the
// typos (IMSPROXY_AEN_UPSTREAM beside route aem), told so one by one.
func (l *loader) misnamedRoutes(names []string, routesSet bool) map[string]string {
	misnamed := map[string]string{}
	if !routesSet {
		return misnamed
	}
	globals := globalNames()
	set := map[string]int{} // route → how many of its variables are set
	for k := range l.env {
		if r := routeOf(k); r != "" && !slices.Contains(globals, k) {
			set[r]++
		}
	}
	closestTo := map[string]int{} // route → edits from the name listed for it
	for _, listed := range names {
		if set[listed] > 0 {
			continue
		}
		if listed == string(TypeStock) || listed == string(TypeAEM) {
			continue
		}
		best, bestD := "", 3
		for r := range set {
			if slices.Contains(names, r) {
				continue
			}
			if d := editDistance(r, listed); d < bestD || (d == bestD && r < best) {
				best, bestD = r, d
			}
		}
		if d, taken := closestTo[best]; best != "" && (!taken || bestD < d) {
			misnamed[best], closestTo[best] = listed, bestD
		}
	}
	return misnamed
}

// routeOf returns the route name of a well-formed per-route variable, taking
// the longest known suffix (IMSPROXY_X_DOWNLOAD_UPSTREAM is route x's
// DOWNLOAD_UPSTREAM), or "" when name is not one.
func routeOf(name string) string {
	if !KnownVariable(name) {
		return ""
	}
	best := ""
	for _, s := range routeSuffixes() {
		if r, ok := strings.CutSuffix(strings.TrimPrefix(name, prefix), "_"+s); ok && (best == "" || len(r) < len(best)) {
			best = r
		}
	}
	return strings.ToLower(best)
}

// closestOfAnyRoute returns the per-route variable nearest to name of the
// route name names (IMSPROXY_BP_CLIENT_ID for IMSPROXY_BP_CLIENTID, bp not
// enabled), or "" when none is near enough to be a typo of it.
func closestOfAnyRoute(name string) string {
	rest := strings.TrimPrefix(name, prefix)
	best, bestD := "", 3
	for i := 1; i < len(rest); i++ {
		if rest[i] != '_' {
			continue
		}
		route, suffix := rest[:i], rest[i+1:]
		for _, s := range routeSuffixes() {
			d := editDistance(strings.ReplaceAll(suffix, "_", ""), strings.ReplaceAll(s, "_", ""))
			if d < bestD && (d <= 1 || len(s) >= 6) { // a short suffix takes fewer edits
				best, bestD = prefix+route+"_"+s, d
			}
		}
	}
	return best
}

// closest returns the known variable nearest to name (at most two edits,
// underscores ignored), or "" when none is near enough to be a typo of it.
func closest(name string, known map[string]bool, set map[string]string) string {
	squash := func(s string) string { return strings.ReplaceAll(s, "_", "") }
	best, bestD := "", 3
	for k := range known {
		d := editDistance(squash(name), squash(k))
		if d < bestD || (d == bestD && best != "" && preferred(k, best, set)) {
			best, bestD = k, d
		}
	}
	return best
}

// preferred tells whether a is the likelier meant of two names as near:
// one that is not set yet (IMSPROXY_BP3_UPSTREAM beside routes bp1 and
// bp2, where only bp1's is set, meant bp2's), then the first in order, so
// that the answer does not depend on map order.
func preferred(a, b string, set map[string]string) bool {
	_, aSet := set[a]
	_, bSet := set[b]
	if aSet != bSet {
		return !aSet
	}
	return a < b
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
