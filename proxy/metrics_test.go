package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/internal/version"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/cache"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

func TestMetrics_CertificateExpiryOnlyForRoutesWithACertificate(t *testing.T) {
	m := metrics.New()
	notAfter := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	m.WatchCertificate("aem", func() time.Time { return notAfter })
	m.WatchCertificate("stock", func() time.Time { return time.Time{} })

	got := testutil.Samples(t, m.Handler(), "imsproxy_certificate_expiry_timestamp_seconds")
	if len(got) != 1 || got["aem"] != float64(notAfter.Unix()) {
		t.Fatalf("certificate samples = %v, want only aem = %d", got, notAfter.Unix())
	}
}

// A cached route's hit, miss and eviction counters exist at 0 before the
// first search, so that a rate over them is defined from the start.
func TestMetrics_CacheCountersStartAtZero(t *testing.T) {
	m := metrics.New()
	rc := testroute.Stock(t, "http://127.0.0.1:1")
	rc.Cache = config.Cache{Size: 10, TTL: time.Minute, MaxBytes: 1 << 20}
	cache.New(rc, time.Now, nil, m)
	for _, name := range []string{"imsproxy_cache_hits_total", "imsproxy_cache_misses_total", "imsproxy_cache_evictions_total"} {
		got := testutil.Samples(t, m.Handler(), name)
		if v, ok := got[rc.Name]; len(got) != 1 || !ok || v != 0 {
			t.Errorf("%s = %v, want only %s = 0", name, got, rc.Name)
		}
	}
}

// TestMetrics_LabelsStayBounded sends requests whose every caller-chosen part
// is new — path, query, caller key, method — through two routes (a stock
// route with its search cache, a generic one), with the upstream answering
// 200, 301, 404 and 503: no label may carry any of it, every label value
// comes from a fixed set, and twice the requests make no new series.
func TestMetrics_LabelsStayBounded(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, _ := strconv.Atoi(r.Header.Get("X-Test-Status"))
		if status == http.StatusMovedPermanently {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"nb_results":0,"files":[]}`)
	}))
	t.Cleanup(up.Close)
	m := metrics.New()
	src := &countingSource{}
	var routes []*testRoute
	for _, typ := range []config.RouteType{config.TypeStock, config.TypeGeneric} {
		rc := testroute.Stock(t, up.URL)
		rc.Name, rc.Type = string(typ), typ
		if typ == config.TypeStock {
			rc.Cache = config.Cache{Size: 1000, TTL: time.Hour, MaxBytes: 1 << 20}
		}
		mgr := tokens.NewManager(rc.Name, src, tokens.Options{Kind: string(rc.Auth), OnExchange: m.ObserveExchange})
		routes = append(routes, NewRoute(rc, mgr, RouteOptions{Metrics: m}))
	}

	// Everything a caller chose, to be looked for in the labels.
	var secrets []string
	random := func(prefix string) string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s := prefix + hex.EncodeToString(b[:])
		secrets = append(secrets, s)
		return s
	}
	methods := []string{"GET", "POST", "PROPFIND", "FOO", "get", "DELETE", "CONNECT", "random"}
	statuses := []int{200, 301, 404, 503}
	send := func(n int) {
		for i := range n {
			rt := routes[i%len(routes)]
			method := methods[i%len(methods)]
			if method == "random" {
				method = random("X")
			}
			target := "/" + random("seg-") + "/" + random("seg-") + "?q=" + random("val-")
			reps := 1
			switch i % 5 {
			case 0: // a search, sent twice: a miss, then a hit
				target = "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=" + random("word-")
				method, reps = "GET", 2
			case 1: // a license: licensing is off, so refused
				target = "/Rest/Libraries/1/Content/License?content_id=" + random("") + "&license=Standard"
			}
			for range reps {
				req := httptest.NewRequest(method, target, nil)
				req.Host = "127.0.0.1:8080" // a loopback listener answers local names only
				req.Header.Set("X-Api-Key", random("key-"))
				req.Header.Set("Authorization", "Bearer "+random("bearer-"))
				req.Header.Set("X-Test-Status", strconv.Itoa(statuses[i/len(routes)%len(statuses)]))
				rt.ServeHTTP(httptest.NewRecorder(), req)
			}
		}
	}

	const n = 300
	send(n)
	before := countSeries(t, m)
	send(n)
	if after := countSeries(t, m); after != before {
		t.Errorf("%d series after %d requests, %d after %d: labels follow what callers send", before, n, after, 2*n)
	}

	// The exchange of a token whose IMS error says more than it should.
	const imsSecret = "p8e-SeCrEt-In-Description"
	m.ObserveExchange(tokens.Exchange{Route: "stock", Kind: "oauth",
		Err: &tokens.IMSError{StatusCode: 400, Code: "invalid_client", Description: "client_secret " + imsSecret + " is wrong"}})
	m.ObserveExchange(tokens.Exchange{Route: "stock", Kind: "oauth",
		Err: &tokens.IMSError{StatusCode: 400, Code: "weird_" + imsSecret, Description: imsSecret}})
	secrets = append(secrets, imsSecret, "token-1", "token-2")

	build := version.Get()
	bounded := map[string][]string{
		// imsproxy_build_info: one value each, the binary's.
		"version": {build.Version}, "revision": {build.Revision}, "goversion": {build.GoVersion},

		"route":   {"stock", "generic"},
		"method":  {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "COPY", "MOVE", "OTHER"},
		"code":    {"1xx", "2xx", "3xx", "4xx", "5xx", "other"},
		"cache":   {"hit", "miss", "bypass", "stale", "none"},
		"auth":    {"oauth", "jwt", "token", "none"},
		"outcome": {"success", "failure", audit.OutcomeLicensed, audit.OutcomeAlreadyLicensed, audit.OutcomeNotPossible, audit.OutcomeFailed, audit.OutcomeBadRequest, audit.OutcomeEditorialCheck, route.CodeUnauthorizedCaller, route.CodeForbidden, route.CodeBodyTooLarge, route.CodeLicensingDisabled, route.CodeLicenseLimitReached, route.CodeEditorialUseOnly, audit.OutcomeUnknown, route.CodeMethodNotAllowed, route.CodeCrossSiteRequest, route.CodeHostNotAllowed, route.CodeAuditUnavailable},
		"error":   append(imsErrorCodes, ""),
	}
	families := testutil.Families(t, m.Handler())
	seen := map[string]map[string]bool{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "imsproxy_") {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if !slices.Contains(bounded[l.GetName()], l.GetValue()) {
					t.Errorf("%s: label %s=%q is not from its fixed set", f.GetName(), l.GetName(), l.GetValue())
				}
				if seen[l.GetName()] == nil {
					seen[l.GetName()] = map[string]bool{}
				}
				seen[l.GetName()][l.GetValue()] = true
			}
		}
	}
	// The test saw what it meant to: odd methods, every status class,
	// both cache results, a refused license, a failed exchange's code.
	for name, values := range map[string][]string{
		"method": {"OTHER", "GET", "POST"}, "code": {"2xx", "3xx", "4xx", "5xx"}, "cache": {"miss", "hit"},
		"outcome": {route.CodeLicensingDisabled, "success", "failure"}, "error": {"invalid_client", "http_4xx"},
	} {
		for _, v := range values {
			if !seen[name][v] {
				t.Errorf("no series with %s=%q: the requests did not exercise it (seen %v)", name, v, seen[name])
			}
		}
	}

	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	exposition := w.Body.String()
	for _, s := range secrets {
		if strings.Contains(exposition, s) {
			t.Fatalf("/metrics contains %q, which a caller or IMS sent", s)
		}
	}
}

// countSeries counts the imsproxy_* series (a histogram is one).
func countSeries(t *testing.T, m *metrics.Metrics) int {
	t.Helper()
	n := 0
	families := testutil.Families(t, m.Handler())
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "imsproxy_") {
			n += len(f.GetMetric())
		}
	}
	return n
}

// imsErrorCodes are the values tokens.ErrorCode returns: IMS's known codes,
// then imsproxy's for failures IMS did not name.
var imsErrorCodes = []string{"invalid_client", "invalid_token", "invalid_signature", "invalid_jti", "invalid_scope",
	"bad_request", "invalid_request", "invalid_grant", "unauthorized_client", "unsupported_grant_type", "internal_error",
	"server_error", "temporarily_unavailable", "ims_unreachable", "invalid_response", "http_3xx", "http_4xx", "http_429",
	"http_5xx", "token_expired", "other"}
