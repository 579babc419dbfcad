package fakeadobe

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func (e *env) graphql(h map[string]string, body string) (int, string) {
	e.t.Helper()
	resp, b := e.do("POST", "/content/graphql/global/endpoint.json", h, strings.NewReader(body))
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("Content-Type %q", ct)
	}
	return resp.StatusCode, string(b)
}

func gqlBody(query string, vars map[string]any) string {
	b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return string(b)
}

func TestGraphQL_Queries(t *testing.T) {
	e := newEnv(t, Options{})
	h := map[string]string{"Authorization": "Bearer " + e.token(e.creds), "Content-Type": "application/json"}
	bali := adventuresFolder + "bali-surf-camp/bali-surf-camp"
	tests := []struct {
		name  string
		query string
		vars  map[string]any
		want  []string // substrings of the answer, in order
		not   []string
	}{
		{"list sorted, limited, with a union fragment", `{ adventureList(sort: "price DESC", limit: 2) { items { title price
			primaryImage { __typename ... on ImageRef { _path _authorUrl width } } } } }`, nil,
			[]string{`{"data":{"adventureList":{"items":[{"title":"Bali Surf Camp","price":5000,"primaryImage":{"__typename":"ImageRef","_path":"/content/dam/wknd/en/adventures/beach-surfing.jpg","_authorUrl":"` + e.base + `/content/dam/wknd/en/adventures/beach-surfing.jpg","width":600}}`, `"Ski Touring Mont Blanc"`}, []string{"Cycling"}},
		{"offset", `{ adventureList(offset: 9) { items { _path } } }`, nil, []string{`"items":[{"_path":"` + adventuresFolder + `yosemite-backpacking/yosemite-backpacking"}]`}, nil},
		{"filter with a variable, OR and a number operator", `query ($a: String!, $max: Float) { adventureList(filter: {
			activity: {_logOp: OR, _expressions: [{value: $a, _ignoreCase: true}, {value: "Cycling"}]},
			price: {_expressions: {value: $max, _operator: LOWER}}}) { items { slug } } }`,
			map[string]any{"a": "SKIING", "max": 4000},
			[]string{`"cycling-southern-utah"`, `"downhill-skiing-wyoming"`}, []string{`"ski-touring-mont-blanc"`}},
		{"CONTAINS_NOT and STARTS_WITH on _path", `{ adventureList(filter: {title: {_expressions: [{value: "surf", _operator: CONTAINS_NOT, _ignoreCase: true}]},
			_path: {_expressions: [{value: "` + adventuresFolder + `b", _operator: STARTS_WITH}]}}) { items { slug } } }`, nil,
			[]string{`{"data":{"adventureList":{"items":[{"slug":"beervana-portland"}]}}}`}, nil},
		{"by path, aliases, multi-format text, @skip and @include", `query ($p: String!, $no: Boolean = true) { first: adventureByPath(_path: $p) {
			item { t: title description { html json } slug @skip(if: $no) _variation @include(if: $no) } } }`, map[string]any{"p": bali},
			[]string{`{"data":{"first":{"item":{"t":"Bali Surf Camp","description":{"html":"<p>Surfing in Bali`, `"json":[{"content":[{"nodeType":"text"`, `"_variation":"master"}}}}`}, []string{`"slug"`}},
		{"named fragment", `query Q { adventureByPath(_path: "` + bali + `") { item { ...F } } } fragment F on AdventureModel { slug price }`, nil,
			[]string{`"item":{"slug":"bali-surf-camp","price":5000}`}, nil},
		{"paginated", `{ adventurePaginated(first: 4, sort: "title") { edges { node { slug } } pageInfo { hasNextPage hasPreviousPage } } }`, nil,
			[]string{`{"node":{"slug":"bali-surf-camp"}}`, `"pageInfo":{"hasNextPage":true,"hasPreviousPage":false}`}, nil},
		{"path not found", `{ adventureByPath(_path: "/content/dam/nothing") { item { title } } }`, nil,
			[]string{`{"errors":[{"message":"Exception while fetching data (/adventureByPath) : no content fragment of model adventure at /content/dam/nothing","locations":[{"line":1,"column":3}],"path":["adventureByPath"],"extensions":{"classification":"DataFetchingException"}}],"data":{"adventureByPath":null}}`}, nil},
		{"undefined field", `{ adventureList { items { nope } } }`, nil,
			[]string{`"message":"Validation error (FieldUndefined@[adventureList/items/nope]) : Field 'nope' in type 'AdventureModel' is undefined","locations":[{"line":1,"column":27}]`}, []string{`"data"`}},
		{"unknown argument", `{ adventureList(size: 2) { items { title } } }`, nil, []string{`(UnknownArgument@[adventureList]) : Unknown field argument 'size'`}, nil},
		{"missing argument", `{ adventureByPath { item { title } } }`, nil, []string{`(MissingFieldArgument@[adventureByPath]) : Missing field argument '_path'`}, nil},
		{"subselection required", `{ adventureList }`, nil, []string{`(SubselectionRequired@[adventureList]) : Subselection required for type 'AdventureModelResults!' of field 'adventureList'`}, nil},
		{"subselection on a leaf", `{ adventureList { items { title { x } } } }`, nil, []string{`(SubselectionNotAllowed@[adventureList/items/title])`}, nil},
		{"field on a union without a fragment", `{ adventureList { items { primaryImage { _path } } } }`, nil, []string{`Field '_path' in type 'Reference' is undefined`}, nil},
		{"wrong literal type", `{ adventureList(limit: "2") { items { title } } }`, nil, []string{`(WrongType@[adventureList]) : argument 'limit' with value '\"2\"' is not a valid 'Int' - Expected type 'Int' but was a String`}, nil},
		{"unknown enum value", `{ adventureList(filter: {price: {_expressions: [{value: 1, _operator: EQUALS}]}}) { items { title } } }`, nil, []string{`(WrongType@[adventureList])`}, nil},
		{"undefined variable", `{ adventureList(limit: $n) { items { title } } }`, nil, []string{`(UndefinedVariable@[adventureList]) : Undefined variable 'n'`}, nil},
		{"missing variable", `query ($p: String!) { adventureByPath(_path: $p) { item { title } } }`, nil, []string{`"message":"Variable 'p' has coerced Null value for NonNull type 'String!'"`}, nil},
		{"variable of the wrong type", `query ($n: Int) { adventureList(limit: $n) { items { title } } }`, map[string]any{"n": "two"}, []string{`Variable 'n' has an invalid value`}, nil},
		{"syntax error", `{ adventureList { items { title }`, nil, []string{`{"errors":[{"message":"Invalid Syntax : offending token '<EOF>' at line 1 column 34","locations":[{"line":1,"column":34}],"extensions":{"classification":"InvalidSyntax"}}]}`}, nil},
		{"mutation", `mutation { x }`, nil, []string{`"message":"Schema is not configured for mutations."`}, nil},
		{"two operations without a name", `query A { adventureList { items { title } } } query B { adventureList { items { slug } } }`, nil, []string{`Must provide operation name`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.graphql(h, gqlBody(tt.query, tt.vars))
			if status != http.StatusOK {
				t.Fatalf("%d %s", status, body)
			}
			rest := body
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer %s\nlacks (after the previous match) %s", body, w)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tt.not {
				if strings.Contains(body, n) {
					t.Errorf("answer %s has %s", body, n)
				}
			}
		})
	}
	t.Run("GET with the query in the URL", func(t *testing.T) {
		resp, body := e.get("/content/cq:graphql/wknd-shared/endpoint.json?query="+url.QueryEscape(`{ adventureList(limit: 1) { items { slug } } }`), h)
		if resp.StatusCode != 200 || string(body) != `{"data":{"adventureList":{"items":[{"slug":"bali-surf-camp"}]}}}`+"\n" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	for path, want := range map[string]int{
		"/content/graphql/nowhere/endpoint.json": 404, // no endpoint for that configuration
		"/content/graphql/global/other.json":     404,
	} {
		if status, body := e.do("POST", path, h, strings.NewReader(gqlBody("{ adventureList { items { slug } } }", nil))); status.StatusCode != want ||
			!strings.HasPrefix(string(body), "{") {
			t.Errorf("%s: %d %s, want %d in JSON", path, status.StatusCode, body, want)
		}
	}
	if status, body := e.graphql(h, `{"query": ""}`); status != 400 || !strings.Contains(body, `"errorType":"ServletError"`) {
		t.Errorf("no query: %d %s", status, body)
	}
	if resp, _ := e.do("POST", "/content/graphql/global/endpoint.json", map[string]string{"Content-Type": "application/json"},
		strings.NewReader(gqlBody("{ adventureList { items { slug } } }", nil))); resp.StatusCode != 401 {
		t.Errorf("without a token: %d, want 401", resp.StatusCode)
	}
}

func TestGraphQL_PersistedQueries(t *testing.T) {
	e := newEnv(t, Options{})
	h := map[string]string{"Authorization": "Bearer " + e.token(e.creds), "Content-Type": "application/json"}
	do := func(method, path, body string) (int, http.Header, string) {
		t.Helper()
		resp, b := e.do(method, path, h, strings.NewReader(body))
		if !strings.HasPrefix(string(b), "{") && !strings.HasPrefix(string(b), "[") {
			t.Errorf("%s %s answered %s: not JSON", method, path, b)
		}
		return resp.StatusCode, resp.Header, string(b)
	}
	// The variables as the headless client and the docs encode them.
	status, hdr, body := do("GET", "/graphql/execute.json/wknd-shared/adventures-by-activity%3Bactivity%3Dcamping", "")
	if status != 200 || !strings.Contains(body, `"Riverside Camping Australia"`) || hdr.Get("Cache-Control") != "max-age=60" {
		t.Fatalf("GET with a variable: %d %v %s", status, hdr, body)
	}
	status, _, body = do("POST", "/graphql/execute.json/wknd-shared/adventure-by-slug", `{"variables":{"slug":"yosemite-backpacking"}}`)
	if status != 200 || !strings.Contains(body, `"title":"Yosemite Backpacking"`) {
		t.Fatalf("POST with variables: %d %s", status, body)
	}
	status, _, body = do("GET", "/graphql/execute.json/wknd-shared/adventure-by-slug", "")
	if status != 200 || !strings.Contains(body, `Variable 'slug' has coerced Null value`) {
		t.Fatalf("a failing persisted query answers 200 with its errors: %d %s", status, body)
	}

	query := `query ($n: Int) { adventureList(limit: $n, sort: "slug DESC") { items { slug } } }`
	if status, _, body := do("PUT", "/graphql/persist.json/wknd-shared/last", query); status != 201 ||
		body != `{"action":"create","configurationName":"wknd-shared","name":"last","path":"/conf/wknd-shared/settings/graphql/persistentQueries/last","shortPath":"/wknd-shared/last"}`+"\n" {
		t.Fatalf("persist: %d %s", status, body)
	}
	if status, _, body := do("GET", "/graphql/execute.json/wknd-shared/last;n=1", ""); status != 200 ||
		body != `{"data":{"adventureList":{"items":[{"slug":"yosemite-backpacking"}]}}}`+"\n" {
		t.Fatalf("the persisted query with an Int variable: %d %s", status, body)
	}
	wrapped, _ := json.Marshal(map[string]any{"query": `{ adventureList(limit: 1) { items { slug } } }`, "cache-control": map[string]int{"max-age": 300}})
	if status, _, body := do("POST", "/graphql/persist.json/wknd-shared/last", string(wrapped)); status != 200 || !strings.Contains(body, `"action":"update"`) {
		t.Fatalf("update: %d %s", status, body)
	}
	status, _, body = do("GET", "/graphql/list.json/wknd-shared", "")
	var list []struct {
		ConfigurationName string `json:"configurationName"`
		Queries           []struct {
			Path struct{ ShortForm, LongForm string } `json:"path"`
			Data map[string]any                       `json:"data"`
		} `json:"queries"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || status != 200 || len(list) != 1 || len(list[0].Queries) != 4 {
		t.Fatalf("list: %d %s", status, body)
	}
	if q := list[0].Queries[3]; q.Path.ShortForm != "/wknd-shared/last" || q.Data["cache-control"] == nil {
		t.Errorf("the updated query in the list: %+v", q)
	}

	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"PUT", "/graphql/persist.json/wknd-shared/last", query, 409, `"errorType":"ServletError"`},
		{"POST", "/graphql/persist.json/wknd-shared/new", query, 404, "PUT to create it"},
		{"PUT", "/graphql/persist.json/wknd-shared/broken", "{ adventureList {", 400, `"classification":"InvalidSyntax"`},
		{"PUT", "/graphql/persist.json/nowhere/q", query, 404, "No suitable endpoint found."},
		{"GET", "/graphql/execute.json/wknd-shared/nope", "", 404, "No persisted query found"},
		{"GET", "/graphql/execute.json/nowhere/q", "", 404, "No suitable endpoint found."},
		{"GET", "/graphql/execute.json/", "", 400, "Suffix: '/' does not contain a path"},
		{"DELETE", "/graphql/execute.json/wknd-shared/last", "", 405, "Use GET or POST"},
		{"GET", "/graphql/other.json", "", 404, `"status.code":404`},
		{"GET", "/content/wknd/en.json", "", 404, `"status.code":404`},
	} {
		if status, _, body := do(tc.method, tc.path, tc.body); status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, status, body, tc.status, tc.want)
		}
	}
}

func TestGraphQL_ParserReadsTheWholeLanguage(t *testing.T) {
	doc, err := parseGraphQL("\ufeff# a comment\nquery Q($a: [String!]! = [\"x\"], $b: Int = -12, $c: Float = 1.5e3) @d {\n" +
		"  alias: f(s: \"\\\"q\\\" \\u00e9\", b: \"\"\"\n    block\n      indented\n  \"\"\", o: {k: [1, 2.0, true, null, ENUM]}) { ... on T { x } ...F }\n}\n" +
		"fragment F on T { y }")
	if err != nil {
		t.Fatal(err)
	}
	op := doc.operations[0]
	if op.name != "Q" || len(op.vars) != 3 || op.vars[0].typ.String() != "[String!]!" || op.vars[1].def.raw != "-12" || op.vars[2].def.kind != valFloat {
		t.Fatalf("operation %+v", op)
	}
	f := op.selections[0]
	if f.alias != "alias" || f.name != "f" || f.args[0].value.raw != `"q" é` || f.args[1].value.raw != "block\n  indented" ||
		f.args[2].value.String() != "{k: [1, 2.0, true, null, ENUM]}" || !f.sub[0].inline || f.sub[1].spread != "F" ||
		doc.fragments["F"].typeCond != "T" || f.loc != (gqlLoc{3, 3}) {
		t.Fatalf("field %+v", f)
	}
	for _, bad := range []string{"", "{", "{ a(b: ) }", `{ a(b: "unterminated) }`, "{ a } }", "{ 1a }", "fragment on on T { a }", "{ a(b: 1.) }"} {
		if _, err := parseGraphQL(bad); err == nil {
			t.Errorf("%q parsed", bad)
		} else if !strings.HasPrefix(err.Error(), "Invalid Syntax : ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
