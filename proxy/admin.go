package proxy

import (
	"cmp"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/version"
	"github.com/imsproxy/imsproxy/proxy/callers"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// readiness is the /readyz body.
type readiness struct {
	Ready bool `json:"ready"`
	// Stopping is set once shutdown has begun: not ready whatever the
	// tokens, so that traffic goes elsewhere while requests drain.
	Stopping bool                   `json:"stopping,omitempty"`
	Routes   map[string]routeReadyz `json:"routes"`
}

type routeReadyz struct {
	tokens.Status
	Type              string               `json:"type"`
	Listen            string               `json:"listen"`
	ExpiresIn         string               `json:"token_expires_in,omitempty"`
	CertificateExpiry time.Time            `json:"certificate_expiry,omitzero"`
	Reload            *tokens.ReloadStatus `json:"credentials_reload,omitempty"`
	Redis             *redisReadyz         `json:"redis,omitempty"` // fleet mode
}

// redisReadyz is the fleet's Redis as a route sees it. Redis down does
// not make the proxy unready: fleet mode degrades (licenses refused,
// searches from the local cache, each replica's own token).
type redisReadyz struct {
	Up          bool   `json:"up"`
	CacheUp     *bool  `json:"cache_up,omitempty"` // the search cache's own Redis, when it has one
	SharedToken bool   `json:"shared_token"`
	LastError   string `json:"last_error,omitempty"`
}

// adminEndpoint describes one endpoint in the admin listener's index.
type adminEndpoint struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	Description string `json:"description"`
	Auth        string `json:"auth,omitempty"`
}

// adminHandler serves the index (GET /), /healthz, /readyz, /metrics and
// /cache/purge. It lives on its own listener so it never shadows an
// upstream path.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.adminIndex)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("/cache/purge", s.purgeCache)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A path served by GET alone, asked by another method (TRACE
		// among them), is a 405 as on the routes, not a missing path.
		switch r.URL.Path {
		case "/", "/healthz", "/readyz", "/metrics":
			w.Header().Set("Allow", "GET, HEAD")
			s.adminError(w, r, http.StatusMethodNotAllowed, route.CodeMethodNotAllowed, r.URL.Path+" answers GET and HEAD only.", "admin")
			return
		}
		s.adminError(w, r, http.StatusNotFound, route.CodeNotFound, "No admin endpoint answers "+r.Method+" "+r.URL.Path+": GET / lists them.", "admin")
	})
	return s.adminBrowsers(mux)
}

// adminBrowsers refuses what a web page could make a browser send to the
// admin listener (a cross-site POST /cache/purge, a DNS-rebinding name
// reading /readyz): the admin listener has no callers file, so its Host
// must name this machine.
func (s *Server) adminBrowsers(next http.Handler) http.Handler {
	b := callers.Browsers{Origins: s.cfg.AllowedOrigins, Hosts: withListenerName(s.cfg.AllowedHosts, s.cfg.AdminListen),
		CheckHost: true, Addresses: !config.LoopbackAddress(s.cfg.AdminListen)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if no := b.Check(r); no != nil {
			s.adminError(w, r, no.Status, no.Code, no.Message, "admin")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminIndex is GET /: the admin endpoints, for an operator who found the
// port and wonders what it serves.
func (s *Server) adminIndex(w http.ResponseWriter, _ *http.Request) {
	purgeAuth := ""
	if s.adminToken != nil {
		purgeAuth = "Authorization: Bearer <admin token>"
	}
	writeJSON(w, http.StatusOK, struct {
		Service   string          `json:"service"`
		Version   string          `json:"version"`
		Endpoints []adminEndpoint `json:"endpoints"`
	}{
		Service: "imsproxy admin",
		Version: version.String(),
		Endpoints: []adminEndpoint{
			{"GET", "/", "this list", ""},
			{"GET", "/healthz", "200 while the process runs (liveness)", ""},
			{"GET", "/readyz", "200 when every route holds a valid token, else 503 (also from the start of a shutdown); per route: auth kind, token expiry, last error, and in fleet mode Redis", ""},
			{"GET", "/metrics", "Prometheus metrics", ""},
			{"POST", "/cache/purge?route=NAME", "empties the search cache of stock route NAME", purgeAuth},
		},
	})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	stopping := s.stopping.Load()
	body := readiness{Ready: !stopping, Stopping: stopping, Routes: make(map[string]routeReadyz, len(s.routes))}
	for _, rs := range s.routes {
		rr := routeReadyz{
			Type:              string(rs.cfg.Type),
			Listen:            rs.cfg.Listen,
			CertificateExpiry: rs.live.CertificateExpiry(),
			Reload:            rs.live.ReloadStatus(),
		}
		if s.fleet != nil {
			rr.Redis = &redisReadyz{Up: s.fleet.Up(), SharedToken: rs.cfg.ShareToken, LastError: s.fleet.LastError()}
			if up, ok := s.fleet.CacheUp(); ok {
				rr.Redis.CacheUp = &up
			}
		}
		if rs.mgr != nil {
			rr.Status = rs.mgr.Status()
			if rr.Ready && !rr.Expiry.IsZero() {
				rr.ExpiresIn = rr.Expiry.Sub(now).Round(time.Second).String()
			}
		} else {
			rr.Status = tokens.Status{Kind: string(rs.cfg.Auth), Ready: true}
		}
		body.Ready = body.Ready && rr.Ready
		body.Routes[rs.cfg.Name] = rr
	}
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

// purgeCache is POST /cache/purge?route=<name>: it empties that route's
// search cache.
func (s *Server) purgeCache(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("route")
	// An error's route is the one asked about, or the admin listener's.
	errRoute := cmp.Or(name, "admin")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.adminError(w, r, http.StatusMethodNotAllowed, route.CodeMethodNotAllowed,
			"Use POST /cache/purge?route=NAME to empty the search cache of route NAME.", errRoute)
		return
	}
	if s.adminToken != nil && !s.adminToken.allows(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="imsproxy admin"`)
		s.adminError(w, r, http.StatusUnauthorized, route.CodeUnauthorizedCaller,
			"POST /cache/purge needs Authorization: Bearer with the admin token (IMSPROXY_ADMIN_TOKEN_FILE).", errRoute)
		return
	}
	var cached []string
	for _, rs := range s.routes {
		switch {
		case rs.cfg.Name == name && rs.cache != nil:
			writeJSON(w, http.StatusOK, map[string]any{"route": name, "purged": rs.cache.Purge(r.Context(), "admin")})
			return
		case rs.cfg.Name == name:
			s.adminError(w, r, http.StatusNotFound, "no_cache",
				"Route "+name+" has no search cache: only stock routes with CACHE_SIZE above 0 have one.", name)
			return
		case rs.cache != nil:
			cached = append(cached, rs.cfg.Name)
		}
	}
	which := "routes with a search cache: " + strings.Join(cached, ", ")
	if name == "" {
		s.adminError(w, r, http.StatusBadRequest, route.CodeBadRequest, "Name the route: POST /cache/purge?route=NAME ("+which+").", errRoute)
		return
	}
	s.adminError(w, r, http.StatusNotFound, "unknown_route", "There is no route "+name+"; "+which+".", name)
}

// adminError answers an admin request with a proxy-made error and logs its
// one line: the path and the code, never the query.
func (s *Server) adminError(w http.ResponseWriter, r *http.Request, status int, code, message, name string) {
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "admin request refused",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status), slog.String("code", code))
	route.WriteError(w, status, code, message, name)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // read by people and tools, never as HTML
	_ = enc.Encode(v)
}
