package proxy

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/imsproxy/imsproxy/tokens"
)

// readiness is the /readyz body.
type readiness struct {
	Ready  bool                   `json:"ready"`
	Routes map[string]routeReadyz `json:"routes"`
}

type routeReadyz struct {
	tokens.Status
	Type              string        `json:"type"`
	Listen            string        `json:"listen"`
	ExpiresIn         string        `json:"token_expires_in,omitempty"`
	CertificateExpiry time.Time     `json:"certificate_expiry,omitzero"`
	Reload            *reloadStatus `json:"credentials_reload,omitempty"`
}

// adminHandler serves /healthz, /readyz, /metrics and /cache/purge. It lives on its own
// listener so it never shadows an upstream path.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("/cache/purge", s.purgeCache)
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	body := readiness{Ready: true, Routes: make(map[string]routeReadyz, len(s.routes))}
	for _, rc := range s.cfg.Routes {
		live := s.creds.route(rc.Name)
		rr := routeReadyz{
			Type:              string(rc.Type),
			Listen:            rc.Listen,
			CertificateExpiry: live.certificateExpiry(),
			Reload:            live.reloadStatus(),
		}
		if mgr := s.managers[rc.Name]; mgr != nil {
			rr.Status = mgr.Status()
			if rr.Ready && !rr.Expiry.IsZero() {
				rr.ExpiresIn = rr.Expiry.Sub(now).Round(time.Second).String()
			}
		} else {
			rr.Status = tokens.Status{Kind: string(rc.Auth), Ready: true}
		}
		body.Ready = body.Ready && rr.Ready
		body.Routes[rc.Name] = rr
	}
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
