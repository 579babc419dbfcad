package fakeadobe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RequestRecord is what the emulator remembers of one request: which
// credentials-bearing headers arrived and which token was used, never the
// token or a secret itself. Tests use it to assert what a proxy sent
// upstream ("no request ever carried an expired token", "the caller's key
// never reached Adobe").
type RequestRecord struct {
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Service  Service   `json:"service"`
	Endpoint string    `json:"endpoint"` // e.g. "stock.search_files"
	Method   string    `json:"method"`
	Path     string    `json:"path"` // without the query, which may hold a token
	Status   int       `json:"status"`
	Injected bool      `json:"injected,omitempty"` // answered by fault injection

	HasAuthorization      bool `json:"has_authorization"`
	HasProxyAuthorization bool `json:"has_proxy_authorization,omitempty"`
	HasAPIKey             bool `json:"has_api_key"`
	HasProduct            bool `json:"has_product"`
	HasRequestID          bool `json:"has_request_id"`
	// APIKey is the x-api-key value: a client ID, not a secret.
	APIKey    string `json:"api_key,omitempty"`
	Product   string `json:"product,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// TokenIn is where the access token came: "header", "query" or "".
	TokenIn string    `json:"token_in,omitempty"`
	Token   TokenInfo `json:"token"`
	// CredentialSHA256 is CredentialHash of the presented bearer credential
	// (Authorization, or the token query parameter of a download), so a test
	// can check that a caller's own key never arrived.
	CredentialSHA256 string `json:"credential_sha256,omitempty"`
}

// CredentialHash is how RequestRecord.CredentialSHA256 names a credential.
func CredentialHash(credential string) string {
	sum := sha256.Sum256([]byte(credential))
	return hex.EncodeToString(sum[:])
}

// Stats are counters since the start or the last ResetStats.
type Stats struct {
	// Requests counts requests by endpoint ("ims.exchange_jwt",
	// "stock.search_files", "download.licensed", "aem.api", ...).
	Requests map[string]int `json:"requests"`
	// Statuses counts answers by endpoint and status ("stock.files 200").
	Statuses map[string]int `json:"statuses"`
	// Exchanges counts token requests by outcome: "success" or the IMS
	// error code for /ims/exchange/jwt; "oauth_success" or "oauth_<code>"
	// for /ims/token/v3 and /ims/token/v2. Answers made by fault
	// injection count in Injected instead.
	Exchanges map[string]int `json:"exchanges"`
	// TokensPresented counts requests by the state of the token they carried.
	TokensPresented map[TokenState]int `json:"tokens_presented"`
	// Injected counts answers made by fault injection.
	Injected int `json:"injected"`
	// Licenses counts Stock licenses that spent quota.
	Licenses int `json:"licenses"`
}

type recorder struct {
	mu    sync.Mutex
	size  int
	ring  []RequestRecord
	next  int
	seq   int64
	stats Stats
}

func newRecorder(size int) *recorder {
	r := &recorder{size: size}
	r.resetLocked()
	return r
}

func (r *recorder) resetLocked() {
	r.ring = make([]RequestRecord, 0, min(r.size, 64))
	r.next = 0
	r.stats = Stats{
		Requests: map[string]int{}, Statuses: map[string]int{},
		Exchanges: map[string]int{}, TokensPresented: map[TokenState]int{},
	}
}

func (r *recorder) add(e RequestRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	e.Seq = r.seq
	r.stats.Requests[e.Endpoint]++
	r.stats.Statuses[e.Endpoint+" "+strconv.Itoa(e.Status)]++
	r.stats.TokensPresented[e.Token.State]++
	if e.Injected {
		r.stats.Injected++
	}
	if len(r.ring) < r.size {
		r.ring = append(r.ring, e)
		return
	}
	r.ring[r.next] = e
	r.next = (r.next + 1) % r.size
}

func (r *recorder) countExchange(outcome string) {
	r.mu.Lock()
	r.stats.Exchanges[outcome]++
	r.mu.Unlock()
}

func (r *recorder) countLicense() {
	r.mu.Lock()
	r.stats.Licenses++
	r.mu.Unlock()
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.rec.mu.Lock()
	defer s.rec.mu.Unlock()
	st := s.rec.stats
	st.Requests = maps.Clone(st.Requests)
	st.Statuses = maps.Clone(st.Statuses)
	st.Exchanges = maps.Clone(st.Exchanges)
	st.TokensPresented = maps.Clone(st.TokensPresented)
	return st
}

// Requests returns the last n recorded requests, oldest first (all that are
// kept when n <= 0). Control API calls are not recorded.
func (s *Server) Requests(n int) []RequestRecord {
	r := s.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	all := make([]RequestRecord, 0, len(r.ring))
	all = append(all, r.ring[r.next:]...)
	all = append(all, r.ring[:r.next]...)
	if n > 0 && n < len(all) {
		all = all[len(all)-n:]
	}
	return all
}

// ResetStats clears the counters and the request record.
func (s *Server) ResetStats() {
	s.rec.mu.Lock()
	s.rec.resetLocked()
	s.rec.mu.Unlock()
}

type tokenCtxKey struct{}

// observe builds the record of a request and inspects the token it carries;
// the handlers find that inspection in the request context.
func (s *Server) observe(r *http.Request, svc Service) (*RequestRecord, *http.Request) {
	h := r.Header
	e := &RequestRecord{
		Time: s.now(), Service: svc, Endpoint: endpointOf(svc, r.URL.Path),
		Method: r.Method, Path: r.URL.Path,
		HasAuthorization:      len(h.Values("Authorization")) > 0,
		HasProxyAuthorization: len(h.Values("Proxy-Authorization")) > 0,
		HasAPIKey:             len(h.Values("X-Api-Key")) > 0,
		HasProduct:            len(h.Values("X-Product")) > 0,
		HasRequestID:          len(h.Values("X-Request-Id")) > 0,
		APIKey:                h.Get("X-Api-Key"),
		Product:               h.Get("X-Product"),
		RequestID:             h.Get("X-Request-Id"),
	}
	var cred string
	if tok, present := bearer(h.Values("Authorization")); present {
		e.TokenIn, cred = "header", tok
		if tok == "" {
			cred = h.Get("Authorization")
		}
		e.Token = s.LookupToken(tok)
		if tok == "" {
			e.Token = TokenInfo{State: TokenInvalid}
		}
	} else if svc == ServiceDownload && r.URL.Query().Has("token") {
		cred = r.URL.Query().Get("token")
		e.TokenIn = "query"
		e.Token = s.LookupToken(cred)
		if cred == "" {
			e.Token = TokenInfo{State: TokenInvalid}
		}
	} else {
		e.Token = TokenInfo{State: TokenNone}
	}
	if cred != "" {
		e.CredentialSHA256 = CredentialHash(cred)
	}
	return e, r.WithContext(context.WithValue(r.Context(), tokenCtxKey{}, e.Token))
}

// presented is the inspection observe made of the request's token.
func presented(r *http.Request) TokenInfo {
	if ti, ok := r.Context().Value(tokenCtxKey{}).(TokenInfo); ok {
		return ti
	}
	return TokenInfo{State: TokenNone}
}

func endpointOf(svc Service, path string) string {
	p := strings.TrimSuffix(path, "/")
	switch svc {
	case ServiceIMS:
		switch p {
		case "/ims/exchange/jwt":
			return "ims.exchange_jwt"
		case "/ims/token/v3":
			return "ims.token_v3"
		case "/ims/token/v2":
			return "ims.token_v2"
		}
		return "ims.unknown"
	case ServiceStock:
		if name, ok := stockEndpoints[p]; ok {
			return "stock." + name
		}
		return "stock.unknown"
	case ServiceDownload:
		switch {
		case strings.HasPrefix(p, "/Rest/Libraries/Watermarked/"):
			return "download.watermarked"
		case strings.HasPrefix(p, "/files/"):
			return "download.file"
		}
		return "download.licensed"
	case ServiceCDN:
		return "cdn.thumbnail"
	case ServiceAEM:
		switch {
		case strings.HasSuffix(p, ".initiateUpload.json"), strings.HasSuffix(p, ".completeUpload.json"):
			return "aem.upload"
		case strings.HasPrefix(p, "/content/dam/"):
			return "aem.binary"
		case strings.HasPrefix(p, "/content/graphql/"), strings.HasPrefix(p, "/graphql/"):
			return "aem.graphql"
		case strings.HasPrefix(p, "/api/assets"):
			return "aem.api"
		}
		return "aem.other"
	case ServiceBlob:
		return "blob.put"
	}
	return "other"
}
