package fakeadobe

import (
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"html"
	"sort"
	"strings"
)

// The content-fragment model of the emulated AEM: "adventure", from
// Adobe's WKND reference site that the AEM headless tutorials query, with
// the GraphQL schema AEM generates for a model (Adobe's "AEM GraphQL API for
// use with Content Fragments" page): the type AdventureModel, the queries
// adventureByPath, adventureList (filter, sort, offset, limit) and
// adventurePaginated (first, after), the helper fields _path, _id,
// _variation and _variations, multi-line text as MultiFormatString and the
// content reference primaryImage as the Reference union.

type adventure struct {
	slug, title, activity, adventureType, difficulty, tripLength string
	price, groupSize                                             float64
	image                                                        string // DAM path of the primary image
	description, itinerary                                       string
}

const adventuresFolder = "/content/dam/wknd-shared/en/adventures/"

// publishOrigin stands for the AEM publish service in _publishUrl.
const publishOrigin = "https://publish-p00000-e000000.adobeaemcloud.com"

var adventures = []adventure{
	{"bali-surf-camp", "Bali Surf Camp", "Surfing", "Overnight Trip", "Beginner", "6 Days", 5000, 6,
		"/content/dam/wknd/en/adventures/beach-surfing.jpg",
		"Surfing in Bali is on the bucket list of every surfer, whatever their level.",
		"Day 1: arrival in Denpasar. Days 2 to 5: two sessions a day. Day 6: departure."},
	{"beervana-portland", "Beervana in Portland", "Social", "Day Trip", "Beginner", "1 Day", 300, 15,
		"/content/dam/we-retail/en/activities/running.png",
		"Portland is home to more breweries than any other city in the world.",
		"Six breweries, a food cart lunch and a tasting guide."},
	{"climbing-new-zealand", "Climbing New Zealand", "Rock Climbing", "Overnight Trip", "Intermediate", "5 Days", 900, 8,
		"/content/dam/wknd/en/adventures/climbing-new-zealand.jpg",
		"Climb the volcanic crags of the North Island with a certified guide.",
		"Day 1: gear check. Days 2 to 4: multi-pitch routes. Day 5: summit."},
	{"cycling-southern-utah", "Cycling Southern Utah", "Cycling", "Overnight Trip", "Advanced", "4 Days", 3500, 8,
		"/content/dam/we-retail/en/activities/hiking.jpg",
		"Ride the canyon roads of Zion and Bryce on a fully supported tour.",
		"A hundred kilometres a day, with a support van and camp dinners."},
	{"downhill-skiing-wyoming", "Downhill Skiing Wyoming", "Skiing", "Overnight Trip", "Intermediate", "2 Days", 500, 10,
		"/content/dam/wknd/en/adventures/ski-touring.jpg",
		"Steep runs and deep powder at one of the best resorts of the Rockies.",
		"Two full days on the slopes with lift passes included."},
	{"gastronomic-marais-tour", "Gastronomic Marais Tour", "Social", "Day Trip", "Beginner", "1 Day", 150, 10,
		"/content/dam/we-retail/en/products/jacket.jpg",
		"A walking tour of the Marais and its bakeries, cheese shops and bistros.",
		"Four hours, twelve tastings, one cafe creme."},
	{"riverside-camping-australia", "Riverside Camping Australia", "Camping", "Overnight Trip", "Beginner", "3 Days", 1100, 12,
		"/content/dam/we-retail/en/activities/hiking.jpg",
		"Camp by the Murray river and paddle its quiet backwaters.",
		"Two nights under the stars, canoes and a campfire cook."},
	{"ski-touring-mont-blanc", "Ski Touring Mont Blanc", "Skiing", "Overnight Trip", "Advanced", "6 Days", 4700, 6,
		"/content/dam/wknd/en/adventures/ski-touring.jpg",
		"The Haute Route from Chamonix to Zermatt on skins and skis.",
		"Hut to hut across glaciers with a mountain guide."},
	{"surf-camp-costa-rica", "Surf Camp in Costa Rica", "Surfing", "Overnight Trip", "Intermediate", "5 Days", 2700, 8,
		"/content/dam/wknd/en/magazine/arctic-surfing.jpg",
		"Warm water and consistent breaks on the Pacific coast of Guanacaste.",
		"Morning surf, afternoon yoga, evening video review."},
	{"yosemite-backpacking", "Yosemite Backpacking", "Camping", "Overnight Trip", "Advanced", "4 Days", 1500, 8,
		"/content/dam/we-retail/en/activities/hiking.jpg",
		"Backpack the high country of Yosemite, far from the valley crowds.",
		"Four days of trail, three camps by alpine lakes."},
}

func (a *adventure) path() string { return adventuresFolder + a.slug + "/" + a.slug }

// value is the fragment as the executor reads it; base is the AEM origin
// the request came to (the _authorUrl of references).
func (a *adventure) value(base string) map[string]any {
	h := fnv.New128a()
	h.Write([]byte(a.path()))
	sum := fmt.Sprintf("%x", h.Sum(nil))
	return map[string]any{
		"_path":         a.path(),
		"_id":           sum[:8] + "-" + sum[8:12] + "-" + sum[12:16] + "-" + sum[16:20] + "-" + sum[20:32],
		"_variation":    "master",
		"_variations":   []any{},
		"title":         a.title,
		"slug":          a.slug,
		"activity":      a.activity,
		"adventureType": a.adventureType,
		"difficulty":    a.difficulty,
		"tripLength":    a.tripLength,
		"price":         a.price,
		"groupSize":     a.groupSize,
		"description":   multiFormat(a.description),
		"itinerary":     multiFormat(a.itinerary),
		"primaryImage": map[string]any{
			"__typename": "ImageRef", "_path": a.image, "_authorUrl": base + a.image,
			"_publishUrl": publishOrigin + a.image, "mimeType": mimeOf(a.image), "width": 600, "height": 400,
		},
	}
}

func multiFormat(text string) map[string]any {
	return map[string]any{
		"plaintext": text,
		"html":      "<p>" + html.EscapeString(text) + "</p>\n",
		"markdown":  text,
		"json": []any{map[string]any{"nodeType": "paragraph",
			"content": []any{map[string]any{"nodeType": "text", "value": text}}}},
	}
}

func graphQLSchema() *gqlSchema {
	sc := &gqlSchema{types: map[string]*gqlType{}, query: "Query"}
	add := func(t *gqlType) { sc.types[t.name] = t }
	for _, s := range []string{"String", "ID", "Int", "Float", "Boolean", "Json"} {
		add(&gqlType{name: s, kind: kindScalar})
	}
	add(&gqlType{name: "LogOp", kind: kindEnum, values: []string{"AND", "OR"}})
	add(&gqlType{name: "StringOperator", kind: kindEnum, values: []string{"EQUALS", "EQUALS_NOT", "CONTAINS", "CONTAINS_NOT", "STARTS_WITH"}})
	add(&gqlType{name: "FloatOperator", kind: kindEnum, values: []string{"EQUAL", "UNEQUAL", "GREATER", "GREATER_EQUAL", "LOWER", "LOWER_EQUAL"}})
	add(&gqlType{name: "IDOperator", kind: kindEnum, values: []string{"EQUALS", "EQUALS_NOT", "STARTS_WITH"}})
	input := func(name string, fields ...string) {
		t := &gqlType{name: name, kind: kindInput, inputs: map[string]*gqlTypeRef{}}
		for i := 0; i+1 < len(fields); i += 2 {
			t.inputs[fields[i]] = tref(fields[i+1])
		}
		add(t)
	}
	for _, k := range []string{"String", "Float", "ID"} {
		extra := []string{"_ignoreCase", "Boolean"}
		if k == "Float" {
			extra = []string{"_sensitiveness", "Float"}
		}
		input(k+"FilterExpression", append([]string{"value", k, "_operator", k + "Operator"}, extra...)...)
		input(k+"Filter", "_logOp", "LogOp", "_expressions", "["+k+"FilterExpression]!")
	}
	input("AdventureModelFilter", "_logOp", "LogOp", "_path", "IDFilter", "title", "StringFilter", "slug", "StringFilter",
		"activity", "StringFilter", "adventureType", "StringFilter", "difficulty", "StringFilter",
		"tripLength", "StringFilter", "price", "FloatFilter", "groupSize", "FloatFilter")

	object := func(name string, fields ...string) *gqlType {
		t := &gqlType{name: name, kind: kindObject, fields: map[string]*gqlFieldDef{}}
		for i := 0; i+1 < len(fields); i += 2 {
			t.fields[fields[i]] = &gqlFieldDef{typ: tref(fields[i+1])}
		}
		add(t)
		return t
	}
	object("MultiFormatString", "plaintext", "String", "html", "String", "markdown", "String", "json", "Json")
	object("ImageRef", "_path", "String", "_authorUrl", "String", "_publishUrl", "String", "mimeType", "String", "width", "Int", "height", "Int")
	object("DocumentRef", "_path", "String", "_authorUrl", "String", "_publishUrl", "String", "format", "String", "size", "Int")
	add(&gqlType{name: "Reference", kind: kindUnion, members: []string{"ImageRef", "DocumentRef"},
		typeOf: func(v any) string { return v.(map[string]any)["__typename"].(string) }})
	object("AdventureModel", "_path", "ID", "_id", "ID", "_variation", "String", "_variations", "[String]!",
		"title", "String", "slug", "String", "activity", "String", "adventureType", "String", "difficulty", "String",
		"tripLength", "String", "price", "Float", "groupSize", "Float", "description", "MultiFormatString",
		"itinerary", "MultiFormatString", "primaryImage", "Reference")
	object("AdventureModelResult", "item", "AdventureModel!")
	object("AdventureModelResults", "items", "[AdventureModel]!")
	object("AdventureModelEdge", "cursor", "String!", "node", "AdventureModel!")
	object("PageInfo", "startCursor", "String", "endCursor", "String", "hasNextPage", "Boolean!", "hasPreviousPage", "Boolean!")
	object("AdventureModelConnection", "edges", "[AdventureModelEdge]!", "pageInfo", "PageInfo!")

	common := map[string]*gqlTypeRef{"variation": tref("String"), "_locale": tref("String")}
	args := func(extra ...string) map[string]*gqlTypeRef {
		m := map[string]*gqlTypeRef{}
		for k, v := range common {
			m[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = tref(extra[i+1])
		}
		return m
	}
	q := object("Query")
	q.fields["adventureByPath"] = &gqlFieldDef{typ: tref("AdventureModelResult!"), args: args("_path", "String!"), resolve: adventureByPath}
	q.fields["adventureList"] = &gqlFieldDef{typ: tref("AdventureModelResults!"),
		args: args("filter", "AdventureModelFilter", "sort", "String", "offset", "Int", "limit", "Int"), resolve: adventureList}
	q.fields["adventurePaginated"] = &gqlFieldDef{typ: tref("AdventureModelConnection!"),
		args: args("filter", "AdventureModelFilter", "sort", "String", "first", "Int", "after", "String"), resolve: adventurePaginated}
	return sc
}

func adventureByPath(e *gqlExec, _ any, args map[string]any) (any, error) {
	p, _ := args["_path"].(string)
	for i := range adventures {
		if adventures[i].path() == p {
			return map[string]any{"item": adventures[i].value(e.base)}, nil
		}
	}
	return nil, fmt.Errorf("no content fragment of model adventure at %s", p)
}

// adventuresFor filters and sorts the fragments (by _path unless sort
// says otherwise, so pages are stable).
func adventuresFor(e *gqlExec, args map[string]any) ([]map[string]any, error) {
	var out []map[string]any
	filter, _ := args["filter"].(map[string]any)
	for i := range adventures {
		v := adventures[i].value(e.base)
		ok, err := matches(filter, v)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, v)
		}
	}
	sortSpec, _ := args["sort"].(string)
	keys, err := sortKeys(sortSpec)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		for _, k := range keys {
			if c := compareValues(out[i][k.field], out[j][k.field]); c != 0 {
				return (c < 0) != k.desc
			}
		}
		return false
	})
	return out, nil
}

type sortKey struct {
	field string
	desc  bool
}

func sortKeys(spec string) ([]sortKey, error) {
	var keys []sortKey
	for _, part := range strings.Split(spec, ",") {
		words := strings.Fields(part)
		if len(words) == 0 {
			continue
		}
		k := sortKey{field: words[0]}
		switch {
		case len(words) == 2 && strings.EqualFold(words[1], "DESC"):
			k.desc = true
		case len(words) == 2 && strings.EqualFold(words[1], "ASC"), len(words) == 1:
		default:
			return nil, fmt.Errorf("invalid sort criterion %q", part)
		}
		if !sortable[k.field] {
			return nil, fmt.Errorf("cannot sort by %q", k.field)
		}
		keys = append(keys, k)
	}
	return append(keys, sortKey{field: "_path"}), nil
}

var sortable = map[string]bool{"_path": true, "title": true, "slug": true, "activity": true, "adventureType": true,
	"difficulty": true, "tripLength": true, "price": true, "groupSize": true}

func compareValues(a, b any) int {
	if fa, ok := a.(float64); ok {
		fb, _ := b.(float64)
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func adventureList(e *gqlExec, _ any, args map[string]any) (any, error) {
	all, err := adventuresFor(e, args)
	if err != nil {
		return nil, err
	}
	offset, _ := args["offset"].(int64)
	limit, hasLimit := args["limit"].(int64)
	if offset < 0 || (hasLimit && limit < 0) {
		return nil, fmt.Errorf("offset and limit must not be negative")
	}
	items := []any{}
	for i := int(offset); i < len(all) && (!hasLimit || len(items) < int(limit)); i++ {
		items = append(items, all[i])
	}
	return map[string]any{"items": items}, nil
}

func adventurePaginated(e *gqlExec, _ any, args map[string]any) (any, error) {
	all, err := adventuresFor(e, args)
	if err != nil {
		return nil, err
	}
	first := int64(50) // AEM's default; at most 100
	if f, ok := args["first"].(int64); ok {
		first = f
	}
	if first < 1 || first > 100 {
		return nil, fmt.Errorf("first must be between 1 and 100")
	}
	start := 0
	if after, ok := args["after"].(string); ok && after != "" {
		raw, err := base64.StdEncoding.DecodeString(after)
		if err != nil {
			return nil, fmt.Errorf("invalid cursor %q", after)
		}
		start = -1
		for i, v := range all {
			if v["_path"] == string(raw) {
				start = i + 1
			}
		}
		if start < 0 {
			return nil, fmt.Errorf("invalid cursor %q", after)
		}
	}
	edges := []any{}
	var startCursor, endCursor any
	for i := start; i < len(all) && len(edges) < int(first); i++ {
		c := base64.StdEncoding.EncodeToString([]byte(all[i]["_path"].(string)))
		if startCursor == nil {
			startCursor = c
		}
		endCursor = c
		edges = append(edges, map[string]any{"cursor": c, "node": all[i]})
	}
	return map[string]any{"edges": edges, "pageInfo": map[string]any{
		"startCursor": startCursor, "endCursor": endCursor,
		"hasNextPage": start+len(edges) < len(all), "hasPreviousPage": start > 0,
	}}, nil
}

// matches applies an AdventureModelFilter: per field a set of expressions
// joined by the field's _logOp, the fields joined by the filter's _logOp
// (both AND unless said otherwise).
func matches(filter map[string]any, v map[string]any) (bool, error) {
	result, or := true, filter["_logOp"] == "OR"
	if or {
		result = false
	}
	seen := false
	for field, f := range filter {
		if field == "_logOp" || f == nil {
			continue
		}
		seen = true
		ff := f.(map[string]any)
		exprs, _ := ff["_expressions"].([]any)
		fieldOr := ff["_logOp"] == "OR"
		ok := !fieldOr
		for _, x := range exprs {
			m, err := expression(x.(map[string]any), v[field])
			if err != nil {
				return false, err
			}
			if fieldOr {
				ok = ok || m
			} else {
				ok = ok && m
			}
		}
		if or {
			result = result || ok
		} else {
			result = result && ok
		}
	}
	return result || !seen, nil
}

func expression(x map[string]any, field any) (bool, error) {
	op, _ := x["_operator"].(string)
	if f, isNum := field.(float64); isNum {
		want, _ := x["value"].(float64)
		if op == "" {
			op = "EQUAL"
		}
		switch op {
		case "EQUAL":
			return f == want, nil
		case "UNEQUAL":
			return f != want, nil
		case "GREATER":
			return f > want, nil
		case "GREATER_EQUAL":
			return f >= want, nil
		case "LOWER":
			return f < want, nil
		case "LOWER_EQUAL":
			return f <= want, nil
		}
		return false, fmt.Errorf("operator %s does not apply to numbers", op)
	}
	s, want := fmt.Sprint(field), fmt.Sprint(x["value"])
	if ic, _ := x["_ignoreCase"].(bool); ic {
		s, want = strings.ToLower(s), strings.ToLower(want)
	}
	switch op {
	case "", "EQUALS":
		return s == want, nil
	case "EQUALS_NOT":
		return s != want, nil
	case "CONTAINS":
		return strings.Contains(s, want), nil
	case "CONTAINS_NOT":
		return !strings.Contains(s, want), nil
	case "STARTS_WITH":
		return strings.HasPrefix(s, want), nil
	}
	return false, fmt.Errorf("operator %s does not apply to text", op)
}
