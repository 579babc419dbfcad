package proxy

import (
	"log/slog"
	"net/http"
	"strings"
)

// purgeCache is POST /cache/purge?route=<name> on the admin listener: it
// empties that route's search cache (SPEC §5).
func (s *Server) purgeCache(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("route")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.adminError(w, r, http.StatusMethodNotAllowed, "method_not_allowed",
			"Use POST /cache/purge?route=NAME to empty the search cache of route NAME.", name)
		return
	}
	var cached []string
	for _, rt := range s.routes {
		if rt.Name() == name && rt.cache != nil {
			writeJSON(w, http.StatusOK, map[string]any{"route": name, "purged": rt.PurgeCache("admin")})
			return
		}
		if rt.Name() == name {
			s.adminError(w, r, http.StatusNotFound, "no_cache",
				"Route "+name+" has no search cache: only stock routes with CACHE_SIZE above 0 have one.", name)
			return
		}
		if rt.cache != nil {
			cached = append(cached, rt.Name())
		}
	}
	which := "routes with a search cache: " + strings.Join(cached, ", ")
	if name == "" {
		s.adminError(w, r, http.StatusBadRequest, "bad_request", "Name the route: POST /cache/purge?route=NAME ("+which+").", name)
		return
	}
	s.adminError(w, r, http.StatusNotFound, "unknown_route", "There is no route "+name+"; "+which+".", name)
}

// adminError answers an admin request with a proxy-made error and logs its
// one line: the path and the code, never the query.
func (s *Server) adminError(w http.ResponseWriter, r *http.Request, status int, code, message, route string) {
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "admin request refused",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status), slog.String("code", code))
	writeError(w, status, code, message, route)
}
