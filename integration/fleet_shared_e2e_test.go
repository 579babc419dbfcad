package integration

// End-to-end tests of fleet mode's shared search cache, shared token and
// connection (TLS, an ACL user): several imsproxy processes, one real
// redis-server, the emulator.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/redistest"
)

func TestE2E_Fleet_SearchCacheSharedAndPurgedAcrossReplicas(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	srv := redistest.Start(t, redistest.Options{})
	ps := startReplicas(t, 3, fleetEnv(a, creds, srv))
	ids := photos(t, a, creds, false, 1)
	a.ResetStats()
	q := "/Rest/Media/1/Search/Files?search_parameters[words]=forest"
	if _, h, _ := httpGet(t, ps[0].URL("stock")+q); h.Get("X-Cache") != "MISS" {
		t.Fatalf("first search: X-Cache %q", h.Get("X-Cache"))
	}
	// The answer goes to Redis in the background, after it was sent.
	rdb := redisClient(t, srv)
	waitFor(t, 5*time.Second, "the answer to be in Redis", func() bool {
		keys, _ := rdb.Keys(context.Background(), "imsproxy:*:search:*").Result()
		return len(keys) == 1
	})
	for _, p := range ps[1:] {
		status, h, _ := httpGet(t, p.URL("stock")+q)
		if status != 200 || h.Get("X-Cache") != "HIT" || h.Get("Age") == "" {
			t.Errorf("another replica: %d X-Cache %q Age %q, want a HIT from the shared level", status, h.Get("X-Cache"), h.Get("Age"))
		}
	}
	if n := a.Stats().Requests["stock.search_files"]; n != 1 {
		t.Errorf("the upstream saw %d searches for three replicas, want 1", n)
	}

	// A license on one replica empties every replica's cache within a
	// second: none of them answers the old is_licensed afterwards.
	licensed := "/Rest/Media/1/Search/Files?search_parameters[media_id]=" + ids[0] + "&result_columns[]=id&result_columns[]=is_licensed"
	isLicensed := func(p *proxyProcess) string {
		_, _, body := httpGet(t, p.URL("stock")+licensed)
		var ans struct {
			Files []struct {
				IsLicensed any `json:"is_licensed"`
			} `json:"files"`
		}
		if json.Unmarshal(body, &ans) != nil || len(ans.Files) != 1 {
			t.Fatalf("search for %s: %s", ids[0], body)
		}
		return strings.TrimSpace(strings.Trim(strconv.Quote(fmtAny(ans.Files[0].IsLicensed)), `"`))
	}
	before := map[*proxyProcess]string{}
	for _, p := range ps {
		before[p] = isLicensed(p)
	}
	if status, _, body := httpGet(t, ps[0].URL("stock")+licensePath(ids[0])); status != 200 {
		t.Fatalf("license: %d %s", status, body)
	}
	purged := time.Now()
	for _, p := range ps[1:] {
		waitFor(t, time.Second, "the purge to reach another replica", func() bool { return isLicensed(p) != before[p] })
	}
	t.Logf("is_licensed changed on every replica within %v of the license", time.Since(purged))

	// The admin purge of one replica, too.
	_, _, _ = httpGet(t, ps[2].URL("stock")+q) // the license emptied the caches
	_, h, _ := httpGet(t, ps[2].URL("stock")+q)
	if h.Get("X-Cache") != "HIT" {
		t.Fatalf("before the admin purge: %q", h.Get("X-Cache"))
	}
	if status, _, body := httpDo(t, http.MethodPost, ps[1].AdminURL()+"/cache/purge?route=stock", nil); status != 200 {
		t.Fatalf("admin purge: %d %s", status, body)
	}
	waitFor(t, time.Second, "the admin purge to reach replica 2", func() bool {
		_, h, _ := httpGet(t, ps[2].URL("stock")+q)
		return h.Get("X-Cache") == "MISS"
	})
}

func TestE2E_Fleet_OneTokenExchangeForThreeReplicasAndOneRefreshAfterARevocation(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	front, base := startFront(t, a)
	srv := redistest.Start(t, redistest.Options{})
	env := fleetEnv(a, creds, srv, "IMSPROXY_STOCK_SHARE_TOKEN", "true",
		"IMSPROXY_IMS_URL", base, "IMSPROXY_STOCK_UPSTREAM", base)
	ps := startReplicas(t, 3, env)
	if n := len(front.issuedTokens()); n != 1 {
		t.Fatalf("%d token exchanges for three replicas, want 1", n)
	}
	// The metrics tell the same: one replica exchanged, the others read
	// its token from Redis.
	const exchanged = `imsproxy_token_exchanges_total{auth="oauth",error="",outcome="success",route="stock"}`
	const shared = `imsproxy_token_exchanges_total{auth="oauth",error="",outcome="shared",route="stock"}`
	var exchanges, reads float64
	// Each replica counts its token just after /readyz shows it.
	waitFor(t, 10*time.Second, "every replica to count its token", func() bool {
		exchanges, reads = 0, 0
		for _, p := range ps {
			exchanges += max(p.metricValue(exchanged), 0)
			reads += max(p.metricValue(shared), 0)
		}
		return exchanges+reads >= 3
	})
	if exchanges != 1 || reads != 2 {
		t.Errorf("the replicas' metrics count %v exchanges and %v reads of the fleet's token, want 1 and 2", exchanges, reads)
	}
	token := front.issuedTokens()[0]
	rdb := redisClient(t, srv)
	keys, _ := rdb.Keys(context.Background(), "*").Result()
	for _, k := range keys {
		v, _ := rdb.Dump(context.Background(), k).Result()
		if strings.Contains(k, token) || strings.Contains(v, token) || strings.Contains(v, token[len(token)-24:]) {
			t.Errorf("Redis key %s holds the token's bytes", k)
		}
	}
	q := "/Rest/Media/1/Search/Files?search_parameters[words]=river"
	for _, p := range ps {
		if status, _, body := httpGet(t, p.URL("stock")+q, "Cache-Control", "no-cache"); status != 200 {
			t.Fatalf("search: %d %s", status, body)
		}
	}
	// Revoked: every replica meets a 401; the fleet refreshes once.
	a.RevokeTokens()
	for _, p := range ps {
		if status, _, body := httpGet(t, p.URL("stock")+q, "Cache-Control", "no-cache"); status != 200 {
			t.Fatalf("search after the revocation: %d %s", status, body)
		}
	}
	if n := len(front.issuedTokens()); n != 2 {
		t.Errorf("%d token exchanges after a revocation seen by three replicas, want 2", n)
	}
}
func fmtAny(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestE2E_Fleet_StaleIfErrorAndAgeFromTheSharedLevel(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{})
	srv := redistest.Start(t, redistest.Options{})
	ps := startReplicas(t, 2, fleetEnv(a, creds, srv, "IMSPROXY_STOCK_CACHE_TTL", "1s", "IMSPROXY_STOCK_CACHE_STALE_IF_ERROR", "1h"))
	q := "/Rest/Media/1/Search/Files?search_parameters[words]=glacier"
	if _, h, _ := httpGet(t, ps[0].URL("stock")+q); h.Get("X-Cache") != "MISS" {
		t.Fatalf("first search: %q", h.Get("X-Cache"))
	}
	rdb := redisClient(t, srv)
	waitFor(t, 5*time.Second, "the answer to be in Redis", func() bool {
		keys, _ := rdb.Keys(context.Background(), "imsproxy:*:search:*").Result()
		return len(keys) == 1
	})
	a.SetStockDown(true)
	waitFor(t, 5*time.Second, "the 1 s TTL to pass (replica 0 answers stale)", func() bool {
		_, h, _ := httpGet(t, ps[0].URL("stock")+q)
		return h.Get("X-Cache") == "STALE"
	})
	// Replica 1 never held the answer itself: it comes from Redis, stale,
	// aged from when Stock sent it.
	status, h, body := httpGet(t, ps[1].URL("stock")+q)
	age, _ := strconv.Atoi(h.Get("Age"))
	if status != 200 || h.Get("X-Cache") != "STALE" || age < 1 {
		t.Errorf("Stock down, replica 1: %d X-Cache %q Age %q %.80s", status, h.Get("X-Cache"), h.Get("Age"), body)
	}
}

func TestE2E_Fleet_TLSWithAPrivateCAAndTheDocumentedACLUser(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	srv := redistest.Start(t, redistest.Options{TLS: true})
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}})
	t.Cleanup(func() { _ = admin.Close() })
	// The user docs/fleet.md tells operators to create.
	acl := strings.Fields("ACL SETUSER imsproxy on >a-long-password ~imsproxy:* &imsproxy:* +@read +@write +@scripting +@pubsub +ping +time")
	args := make([]any, len(acl))
	for i, a := range acl {
		args[i] = a
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatal(err)
	}
	url := "rediss://imsproxy:a-long-password@" + srv.Addr + "/0"
	env := fleetEnv(a, creds, srv, "IMSPROXY_REDIS_URL", url, "IMSPROXY_REDIS_CA_FILE", srv.CAFile,
		"IMSPROXY_STOCK_SHARE_TOKEN", "true", "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "1")

	check := exec.Command(imsproxyBin, "check")
	check.Env = environ(env)
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "redis (fleet mode): reachable, scripts loaded") {
		t.Fatalf("imsproxy check: %v\n%s", err, out)
	}
	checked := a.Stats().Exchanges["oauth_success"] // check makes one of its own
	ps := startReplicas(t, 2, env)
	if n := a.Stats().Exchanges["oauth_success"] - checked; n != 1 {
		t.Errorf("%d token exchanges for two replicas sharing the token, want 1", n)
	}
	ids := photos(t, a, creds, false, 2)
	if status, _, body := httpGet(t, ps[0].URL("stock")+licensePath(ids[0])); status != 200 {
		t.Fatalf("license: %d %s", status, body)
	}
	status, h, body := httpGet(t, ps[1].URL("stock")+licensePath(ids[1]))
	checkProxyError(t, status, h, body, 429, "license_limit_reached", "stock")
	q := "/Rest/Media/1/Search/Files?search_parameters[words]=meadow"
	httpGet(t, ps[0].URL("stock")+q)
	waitFor(t, 5*time.Second, "a hit from the shared level on the other replica", func() bool {
		_, h, _ := httpGet(t, ps[1].URL("stock")+q)
		return h.Get("X-Cache") == "HIT"
	})
	if m := fetchMetrics(t, ps[0]); !strings.Contains(m, "imsproxy_redis_up 1") || !noRedisErrors(m) {
		t.Errorf("Redis errors with the ACL user:\n%s", grepLines(m, "imsproxy_redis"))
	}
	out := runAudit(t, srv, "IMSPROXY_REDIS_URL="+url, "IMSPROXY_REDIS_CA_FILE="+srv.CAFile)
	if !strings.Contains(out, `"outcome":"licensed"`) || !strings.Contains(out, `"outcome":"license_limit_reached"`) {
		t.Errorf("imsproxy audit over TLS as the ACL user:\n%s", out)
	}
}

// noRedisErrors reports whether every imsproxy_redis_errors_total sample
// of a scrape is 0.
func noRedisErrors(metrics string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "imsproxy_redis_errors_total{") && !strings.HasSuffix(l, " 0") {
			return false
		}
	}
	return true
}
