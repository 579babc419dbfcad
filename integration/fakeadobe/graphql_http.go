package fakeadobe

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
)

// The HTTP side of AEM's GraphQL API (Adobe's "Persisted GraphQL queries"
// and "GraphQL endpoints" pages for AEM as a Cloud Service):
//
//	GET|POST /content/graphql/global/endpoint.json   (also /content/cq:graphql/<config>/endpoint.json)
//	GET  /graphql/execute.json/<config>/<name>[;var=value...]   a persisted query
//	POST /graphql/execute.json/<config>/<name>       {"variables": {...}}
//	GET  /graphql/list.json[/<config>]               the persisted queries
//	PUT  /graphql/persist.json/<config>/<name>       create (the query, or {"query", "cache-control", ...})
//	POST /graphql/persist.json/<config>/<name>       update
//
// Every answer is JSON, errors included; a persisted query answers 200 even
// when its query fails, AEM's default ("Configuring the query response
// code").

// gqlConfigs are the Sites configurations that have a GraphQL endpoint.
var gqlConfigs = []string{"global", "wknd-shared"}

// maxPersistedQueries bounds the persisted queries the emulator keeps.
const maxPersistedQueries = 1000

type persistedQuery struct {
	config, name string
	query        string
	cache        map[string]any // cache-control and surrogate-control as persisted
}

func (p *persistedQuery) shortPath() string { return "/" + p.config + "/" + p.name }
func (p *persistedQuery) longPath() string {
	return "/conf/" + p.config + "/settings/graphql/persistentQueries/" + p.name
}

type graphQL struct {
	schema    *gqlSchema
	mu        sync.Mutex
	persisted map[string]*persistedQuery // by short path
}

func newGraphQL() *graphQL {
	g := &graphQL{schema: graphQLSchema(), persisted: map[string]*persistedQuery{}}
	for name, q := range map[string]string{
		"adventures-all": `query { adventureList(sort: "title") { items { _path title slug activity price tripLength
  primaryImage { ... on ImageRef { _path _authorUrl mimeType width height } } } } }`,
		"adventure-by-slug": `query($slug: String!) {
  adventureList(filter: {slug: {_expressions: [{value: $slug}]}}) {
    items { _path title slug activity adventureType price tripLength groupSize difficulty
      primaryImage { ... on ImageRef { _path _authorUrl _publishUrl mimeType width height } }
      description { html plaintext } itinerary { html } } } }`,
		"adventures-by-activity": `query($activity: String!) {
  adventureList(filter: {activity: {_expressions: [{value: $activity, _ignoreCase: true}]}}, sort: "price") {
    items { _path title activity price tripLength } } }`,
	} {
		p := &persistedQuery{config: "wknd-shared", name: name, query: q}
		g.persisted[p.shortPath()] = p
	}
	return g
}

// gqlAnswer is a GraphQL answer: errors first, then data, as graphql-java
// writes it.
type gqlAnswer struct {
	Errors []gqlError `json:"errors,omitempty"`
	Data   *gqlObject `json:"data,omitempty"`
}

func (g *graphQL) run(query, opName string, vars map[string]any, base string) gqlAnswer {
	doc, err := parseGraphQL(query)
	if err != nil {
		se := err.(*gqlSyntaxError)
		return gqlAnswer{Errors: []gqlError{newGQLError("InvalidSyntax", se.msg, se.loc)}}
	}
	data, errs := g.schema.execute(doc, opName, vars, base)
	return gqlAnswer{Errors: errs, Data: data}
}

// servletError is the answer of AEM's GraphQL servlets when they cannot run
// a query at all, e.g. {"errors":[{"errorType":"ServletError","message":
// "Internal Servlet Failure","details":"No suitable endpoint found."}]}.
func servletError(w http.ResponseWriter, status int, details string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]string{
		{"errorType": "ServletError", "message": "Internal Servlet Failure", "details": details}}})
}

// handleAEMNotFound answers paths of AEM the emulator does not have, in
// JSON (a client of a .json API reads the body of any answer).
func (s *Server) handleAEMNotFound(w http.ResponseWriter, r *http.Request) {
	if !requireAEMToken(w, r) {
		return
	}
	slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
}

// handleGraphQLEndpoint is a configuration's GraphQL endpoint.
func (s *Server) handleGraphQLEndpoint(w http.ResponseWriter, r *http.Request) {
	if !requireAEMToken(w, r) {
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/content/graphql/"), "/content/cq:graphql/")
	config, ok := strings.CutSuffix(rest, "/endpoint.json")
	if !ok || strings.Contains(config, "/") {
		slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
		return
	}
	if !slices.Contains(gqlConfigs, config) {
		servletError(w, http.StatusNotFound, "No suitable endpoint found.")
		return
	}
	var req struct {
		Query         string         `json:"query"`
		OperationName string         `json:"operationName"`
		Variables     map[string]any `json:"variables"`
	}
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		req.Query, req.OperationName = q.Get("query"), q.Get("operationName")
		if v := q.Get("variables"); v != "" && json.Unmarshal([]byte(v), &req.Variables) != nil {
			servletError(w, http.StatusBadRequest, "The variables parameter is not a JSON object")
			return
		}
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxQueryBytes+4096))
		if err != nil {
			servletError(w, http.StatusRequestEntityTooLarge, "The request is too large")
			return
		}
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/graphql" {
			req.Query = string(body)
		} else if json.Unmarshal(body, &req) != nil {
			servletError(w, http.StatusBadRequest, "The body is not a JSON object with a query")
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		servletError(w, http.StatusMethodNotAllowed, "Use GET or POST")
		return
	}
	if strings.TrimSpace(req.Query) == "" {
		servletError(w, http.StatusBadRequest, "No query given")
		return
	}
	writeJSON(w, http.StatusOK, s.gql.run(req.Query, req.OperationName, req.Variables, baseOf(r)))
}

// handlePersistedQueries serves /graphql/execute.json, list.json and
// persist.json.
func (s *Server) handlePersistedQueries(w http.ResponseWriter, r *http.Request) {
	if !requireAEMToken(w, r) {
		return
	}
	action, suffix, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/graphql/"), "/")
	switch action {
	case "execute.json":
		s.executePersisted(w, r, suffix)
	case "list.json":
		s.listPersisted(w, r, suffix)
	case "persist.json":
		s.persist(w, r, suffix)
	default:
		slingResponse(w, http.StatusNotFound, r.URL.Path, "Not found")
	}
}

// queryPath reads "<config>/<name>" with the parameters that follow it:
// ";name=value" pairs (the client encodes them as %3B and %3D; the path
// arrives decoded).
func queryPath(suffix string) (config, name string, params map[string]string) {
	p, rest, _ := strings.Cut(suffix, ";")
	config, name, _ = strings.Cut(strings.Trim(p, "/"), "/")
	params = map[string]string{}
	for _, kv := range strings.Split(rest, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			params[k] = v
		}
	}
	return config, name, params
}

func (s *Server) executePersisted(w http.ResponseWriter, r *http.Request, suffix string) {
	config, name, params := queryPath(suffix)
	if config == "" {
		servletError(w, http.StatusBadRequest, "Suffix: '/' does not contain a path")
		return
	}
	if !slices.Contains(gqlConfigs, config) {
		servletError(w, http.StatusNotFound, "No suitable endpoint found.")
		return
	}
	s.gql.mu.Lock()
	pq := s.gql.persisted["/"+config+"/"+name]
	s.gql.mu.Unlock()
	if pq == nil {
		servletError(w, http.StatusNotFound, "No persisted query found at /conf/"+config+"/settings/graphql/persistentQueries/"+name)
		return
	}
	vars := map[string]any{}
	switch r.Method {
	case http.MethodGet:
		doc, err := parseGraphQL(pq.query)
		for k, v := range params {
			vars[k] = v
			if err == nil {
				vars[k] = paramValue(doc, k, v)
			}
		}
	case http.MethodPost:
		var body struct {
			Variables map[string]any `json:"variables"`
		}
		raw, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, maxQueryBytes))
		if len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &body) != nil {
			servletError(w, http.StatusBadRequest, `The body is not {"variables": {...}}`)
			return
		}
		vars = body.Variables
	default:
		w.Header().Set("Allow", "GET, POST")
		servletError(w, http.StatusMethodNotAllowed, "Use GET or POST")
		return
	}
	// An author instance's default cache headers for persisted queries.
	w.Header().Set("Cache-Control", "max-age=60")
	w.Header().Set("Surrogate-Control", "max-age=60,stale-while-revalidate=86400,stale-if-error=86400")
	writeJSON(w, http.StatusOK, s.gql.run(pq.query, "", vars, baseOf(r)))
}

// paramValue reads a ;name=value parameter as its variable's type: text
// for String and ID, JSON otherwise (the headless client JSON-encodes what
// is not a string).
func paramValue(doc *gqlDocument, name, raw string) any {
	for _, op := range doc.operations {
		for _, d := range op.vars {
			if d.name != name {
				continue
			}
			if b := d.typ.base(); d.typ.elem == nil && (b == "String" || b == "ID") {
				return raw
			}
			var v any
			if json.Unmarshal([]byte(raw), &v) == nil {
				return v
			}
		}
	}
	return raw
}

func (s *Server) listPersisted(w http.ResponseWriter, r *http.Request, suffix string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		servletError(w, http.StatusMethodNotAllowed, "Use GET")
		return
	}
	want := strings.Trim(suffix, "/")
	// Adobe does not document this answer; its shape is what AEM's query
	// tools read: one entry per configuration with its queries.
	type entry struct {
		Path struct {
			ShortForm string `json:"shortForm"`
			LongForm  string `json:"longForm"`
		} `json:"path"`
		Data map[string]any `json:"data"`
	}
	type config struct {
		ConfigurationName string  `json:"configurationName"`
		Queries           []entry `json:"queries"`
	}
	out := []config{}
	s.gql.mu.Lock()
	for _, c := range gqlConfigs {
		if want != "" && want != c {
			continue
		}
		cfg := config{ConfigurationName: c, Queries: []entry{}}
		for _, p := range s.gql.persisted {
			if p.config != c {
				continue
			}
			var e entry
			e.Path.ShortForm, e.Path.LongForm = p.shortPath(), p.longPath()
			e.Data = map[string]any{"query": p.query}
			for k, v := range p.cache {
				e.Data[k] = v
			}
			cfg.Queries = append(cfg.Queries, e)
		}
		sort.Slice(cfg.Queries, func(i, j int) bool { return cfg.Queries[i].Path.ShortForm < cfg.Queries[j].Path.ShortForm })
		out = append(out, cfg)
	}
	s.gql.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// persist creates (PUT) or updates (POST) a persisted query. The body is
// the query itself, or {"query": ..., "cache-control": {...},
// "surrogate-control": {...}}.
func (s *Server) persist(w http.ResponseWriter, r *http.Request, suffix string) {
	config, name, _ := queryPath(suffix)
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		w.Header().Set("Allow", "PUT, POST")
		servletError(w, http.StatusMethodNotAllowed, "PUT creates a persisted query, POST updates one")
		return
	}
	if config == "" || name == "" || strings.Contains(name, "/") || !validAssetName(name) {
		servletError(w, http.StatusBadRequest, "Persist to /graphql/persist.json/<configuration>/<name>")
		return
	}
	if !slices.Contains(gqlConfigs, config) {
		servletError(w, http.StatusNotFound, "No suitable endpoint found.")
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxQueryBytes+4096))
	if err != nil {
		servletError(w, http.StatusRequestEntityTooLarge, "The query is too large")
		return
	}
	pq := &persistedQuery{config: config, name: name, query: string(raw), cache: map[string]any{}}
	var wrapped map[string]any
	if json.Unmarshal(raw, &wrapped) == nil {
		q, _ := wrapped["query"].(string)
		pq.query = q
		for _, k := range []string{"cache-control", "surrogate-control"} {
			if v, ok := wrapped[k]; ok {
				pq.cache[k] = v
			}
		}
	}
	if _, err := parseGraphQL(pq.query); err != nil {
		se := err.(*gqlSyntaxError)
		writeJSON(w, http.StatusBadRequest, gqlAnswer{Errors: []gqlError{newGQLError("InvalidSyntax", se.msg, se.loc)}})
		return
	}
	s.gql.mu.Lock()
	old := s.gql.persisted[pq.shortPath()]
	status, action := http.StatusCreated, "create"
	switch {
	case r.Method == http.MethodPut && old != nil:
		status = http.StatusConflict
	case r.Method == http.MethodPost && old == nil:
		status = http.StatusNotFound
	case r.Method == http.MethodPut && len(s.gql.persisted) >= maxPersistedQueries:
		status = http.StatusInsufficientStorage
	case r.Method == http.MethodPost:
		status, action = http.StatusOK, "update"
	}
	if status < 300 {
		s.gql.persisted[pq.shortPath()] = pq
	}
	s.gql.mu.Unlock()
	switch status {
	case http.StatusConflict:
		servletError(w, status, "A persisted query exists at "+pq.longPath()+"; POST to update it")
	case http.StatusNotFound:
		servletError(w, status, "No persisted query at "+pq.longPath()+"; PUT to create it")
	case http.StatusInsufficientStorage:
		servletError(w, status, "fakeadobe keeps at most 1000 persisted queries")
	default:
		writeJSON(w, status, map[string]string{
			"action": action, "configurationName": config, "name": name,
			"shortPath": pq.shortPath(), "path": pq.longPath(),
		})
	}
}
