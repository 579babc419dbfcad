package fakeadobe

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ControlPrefix is the reserved path prefix of the control API, which the
// binary (and any test that runs the emulator out of process) drives it
// with. Nothing Adobe serves lives there.
const ControlPrefix = "/_fake/"

// controlEndpoints documents the control API; GET /_fake/ lists it.
var controlEndpoints = []string{
	"GET /_fake/stats                                  counters (Stats)",
	"POST /_fake/stats/reset                           clear counters and the request record",
	"GET /_fake/requests?n=N                           the last N requests (RequestRecord)",
	"GET /_fake/faults                                 faults per service",
	"POST /_fake/faults/{service}                      merge {down,latency,error_every,error_rate,error_status,header,pad_to}; service: ims|stock|download|cdn|aem|all",
	"GET|POST /_fake/token-lifetime                    {\"lifetime\":\"3s\"}",
	"POST /_fake/revoke                                revoke tokens: {} all, {\"client_id\":\"...\"} one client's, {\"token\":\"...\"} one",
	"POST /_fake/tokens/inspect                        {\"token\":\"...\"} → TokenInfo",
	"GET|POST /_fake/clients                           list, or register {client fields, \"certificates\":[PEM...]}",
	"POST /_fake/clients/{id}/certificates             bind a PEM certificate → {\"fingerprint\"}",
	"DELETE /_fake/clients/{id}/certificates/{sha256}  revoke a certificate",
	"GET|POST /_fake/quota/{org}                       {\"quota\":N}",
	"GET /_fake/licenses/{org}                         the organisation's licenses",
}

func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_fake/{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"endpoints": controlEndpoints})
	})
	mux.HandleFunc("GET /_fake/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("POST /_fake/stats/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_fake/requests", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		writeJSON(w, http.StatusOK, s.Requests(n))
	})
	mux.HandleFunc("GET /_fake/faults", func(w http.ResponseWriter, _ *http.Request) {
		out := map[Service]Faults{}
		for _, svc := range Services {
			out[svc] = s.Faults(svc)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /_fake/faults/{service}", s.controlFaults)
	mux.HandleFunc("GET /_fake/token-lifetime", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]Duration{"lifetime": Duration(s.TokenLifetime())})
	})
	mux.HandleFunc("POST /_fake/token-lifetime", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Lifetime Duration `json:"lifetime"`
		}
		if !decodeControl(w, r, &body) {
			return
		}
		s.SetTokenLifetime(time.Duration(body.Lifetime))
		writeJSON(w, http.StatusOK, map[string]Duration{"lifetime": Duration(s.TokenLifetime())})
	})
	mux.HandleFunc("POST /_fake/revoke", s.controlRevoke)
	mux.HandleFunc("POST /_fake/tokens/inspect", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Token string `json:"token"`
		}
		if decodeControl(w, r, &body) {
			writeJSON(w, http.StatusOK, s.LookupToken(body.Token))
		}
	})
	mux.HandleFunc("GET /_fake/clients", func(w http.ResponseWriter, _ *http.Request) {
		out := []clientView{}
		for _, c := range s.Clients() {
			out = append(out, viewOf(c))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /_fake/clients", s.controlRegister)
	mux.HandleFunc("POST /_fake/clients/{id}/certificates", s.controlAddCert)
	mux.HandleFunc("DELETE /_fake/clients/{id}/certificates/{fingerprint}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.RevokeCertificate(r.PathValue("id"), r.PathValue("fingerprint")); err != nil {
			controlError(w, http.StatusNotFound, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_fake/quota/{org}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"quota": s.Quota(r.PathValue("org"))})
	})
	mux.HandleFunc("POST /_fake/quota/{org}", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Quota int `json:"quota"`
		}
		if !decodeControl(w, r, &body) {
			return
		}
		if err := s.SetQuota(r.PathValue("org"), body.Quota); err != nil {
			controlError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"quota": s.Quota(r.PathValue("org"))})
	})
	mux.HandleFunc("GET /_fake/licenses/{org}", func(w http.ResponseWriter, r *http.Request) {
		out := s.Licenses(r.PathValue("org"))
		if out == nil {
			out = []License{}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func controlError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func decodeControl(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err == nil && len(strings.TrimSpace(string(body))) > 0 {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		controlError(w, http.StatusBadRequest, fmt.Errorf("invalid JSON body: %w", err))
		return false
	}
	return true
}

// controlFaults merges the posted fields into the service's faults, so
// {"down":true} leaves latency alone.
func (s *Server) controlFaults(w http.ResponseWriter, r *http.Request) {
	name := Service(r.PathValue("service"))
	targets := []Service{name}
	if name == "all" {
		targets = Services
	} else if !knownService(name) {
		controlError(w, http.StatusNotFound, fmt.Errorf("unknown service %q", name))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		controlError(w, http.StatusBadRequest, err)
		return
	}
	out := map[Service]Faults{}
	for _, svc := range targets {
		f := s.Faults(svc)
		if err := json.Unmarshal(body, &f); err != nil {
			controlError(w, http.StatusBadRequest, fmt.Errorf("invalid faults: %w", err))
			return
		}
		s.SetFaults(svc, f)
		out[svc] = f
	}
	writeJSON(w, http.StatusOK, out)
}

func knownService(svc Service) bool {
	for _, s := range Services {
		if s == svc {
			return true
		}
	}
	return false
}

func (s *Server) controlRevoke(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ClientID string `json:"client_id"`
		Token    string `json:"token"`
	}
	if !decodeControl(w, r, &body) {
		return
	}
	var n int
	switch {
	case body.Token != "":
		if s.RevokeToken(body.Token) {
			n = 1
		}
	case body.ClientID != "":
		n = s.RevokeClientTokens(body.ClientID)
	default:
		n = s.RevokeTokens()
	}
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// clientView is a client as the control API shows and accepts it, with
// certificates as PEM (in) or fingerprints (out).
type clientView struct {
	Client
	Certificates []string `json:"certificates"`
}

func viewOf(c Client) clientView {
	v := clientView{Client: c, Certificates: []string{}}
	for _, cert := range c.Certificates {
		v.Certificates = append(v.Certificates, Fingerprint(cert))
	}
	return v
}

func (s *Server) controlRegister(w http.ResponseWriter, r *http.Request) {
	var v clientView
	if !decodeControl(w, r, &v) {
		return
	}
	c := v.Client
	for _, p := range v.Certificates {
		cert, err := ParseCertificatePEM([]byte(p))
		if err != nil {
			controlError(w, http.StatusBadRequest, err)
			return
		}
		c.Certificates = append(c.Certificates, cert)
	}
	if err := s.RegisterClient(c); err != nil {
		controlError(w, http.StatusBadRequest, err)
		return
	}
	c.Secret = ""
	writeJSON(w, http.StatusCreated, viewOf(c))
}

func (s *Server) controlAddCert(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		controlError(w, http.StatusBadRequest, err)
		return
	}
	var wrapped struct {
		PEM string `json:"pem"`
	}
	if json.Unmarshal(body, &wrapped) == nil && wrapped.PEM != "" {
		body = []byte(wrapped.PEM)
	}
	cert, err := ParseCertificatePEM(body)
	if err != nil {
		controlError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.AddCertificate(r.PathValue("id"), cert); err != nil {
		controlError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"fingerprint": Fingerprint(cert)})
}

// ParseCertificatePEM parses the first CERTIFICATE block of PEM data
// (\r\n line endings allowed, as in AEM credentials files).
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	data = []byte(strings.ReplaceAll(string(data), "\r\n", "\n"))
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("fakeadobe: no CERTIFICATE PEM block found")
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("fakeadobe: parse certificate: %w", err)
			}
			return cert, nil
		}
	}
}
