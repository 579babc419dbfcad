package integration

// End-to-end tests of fleet mode's license budget and audit trail, and of
// Redis failing: several imsproxy processes share one real redis-server in
// front of the emulator.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
	"github.com/imsproxy/imsproxy/internal/redistest"
)

// fleetEnv is a stock route against a that may license, in fleet mode on
// srv, with more variables set (pairs of name and value; they win).
func fleetEnv(a *adobe, creds *fakeadobe.Credentials, srv *redistest.Server, more ...string) map[string]string {
	env := a.stockOAuthEnv(creds)
	env["IMSPROXY_REDIS_URL"] = srv.URL
	env["IMSPROXY_STOCK_ALLOW_LICENSE"] = "true"
	for i := 0; i+1 < len(more); i += 2 {
		env[more[i]] = more[i+1]
	}
	return env
}

// startReplicas starts n proxies with env and waits until each is ready.
func startReplicas(t *testing.T, n int, env map[string]string) []*proxyProcess {
	t.Helper()
	ps := make([]*proxyProcess, n)
	for i := range ps {
		ps[i] = startProxy(t, env)
	}
	for _, p := range ps {
		p.waitReady()
	}
	return ps
}

func redisClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opts, _ := redis.ParseURL(srv.URL)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func TestE2E_Fleet_ExactLicenseBudgetUnderAConcurrentStorm(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	srv := redistest.Start(t, redistest.Options{})
	const limit, storm = 5, 36
	ps := startReplicas(t, 3, fleetEnv(a, creds, srv, "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", strconv.Itoa(limit)))
	ids := photos(t, a, creds, false, storm)

	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			status, _, _ := httpGet(t, ps[i%len(ps)].URL("stock")+licensePath(id))
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[200] != limit || statuses[429] != storm-limit {
		t.Errorf("answers %v: want exactly %d licenses and %d refusals across three replicas", statuses, limit, storm-limit)
	}
	if n := a.Stats().Licenses; n != limit {
		t.Errorf("Stock made %d licenses, want %d", n, limit)
	}
	m := fetchMetrics(t, ps[1])
	for _, want := range []string{`imsproxy_license_daily_limit{route="stock"} 5`, `imsproxy_license_daily_remaining{route="stock"} 0`, "imsproxy_redis_up 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Every attempt is in the fleet's audit stream.
	out := runAudit(t, srv)
	if got := strings.Count(out, `"outcome":"licensed"`); got != limit {
		t.Errorf("the audit stream holds %d licenses, want %d:\n%s", got, limit, out)
	}
	if got := strings.Count(out, `"outcome":"license_limit_reached"`); got != storm-limit {
		t.Errorf("the audit stream holds %d refusals, want %d", got, storm-limit)
	}
}

// runAudit runs imsproxy audit against srv and returns what it printed.
func runAudit(t *testing.T, srv *redistest.Server, env ...string) string {
	t.Helper()
	cmd := exec.Command(imsproxyBin, "audit", "-since", "1h")
	cmd.Env = append([]string{"IMSPROXY_REDIS_URL=" + srv.URL}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("imsproxy audit: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !json.Valid([]byte(line)) {
			t.Errorf("imsproxy audit printed a line that is not JSON: %s", line)
		}
	}
	return string(out)
}

func TestE2E_Fleet_AReplicaKilledMidLicenseCountsWhenItsLeaseEnds(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	srv := redistest.Start(t, redistest.Options{})
	// TIMEOUT 1s: the lease is 2 × 1 s + 30 s.
	env := fleetEnv(a, creds, srv, "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "2", "IMSPROXY_STOCK_TIMEOUT", "1s")
	ps := startReplicas(t, 2, env)
	ids := photos(t, a, creds, false, 4)
	rdb := redisClient(t, srv)
	held := func() int64 {
		keys, _ := rdb.Keys(context.Background(), "imsproxy:{stock:"+creds.ClientID+"}:license:*:held").Result()
		if len(keys) == 0 {
			return 0
		}
		n, _ := rdb.ZCard(context.Background(), keys[0]).Result()
		return n
	}

	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{Latency: fakeadobe.Duration(800 * time.Millisecond)})
	go func() { // the caller gives up when its proxy dies
		req, _ := http.NewRequest(http.MethodGet, ps[0].URL("stock")+licensePath(ids[0]), nil)
		req.Header.Set("X-Imsproxy-Allow-Editorial", "true")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "the license to reserve its slot", func() bool { return held() == 1 })
	_ = ps[0].cmd.Process.Kill() // kill -9, mid-license
	<-ps[0].exited
	a.SetFaults(fakeadobe.ServiceStock, fakeadobe.Faults{})

	// The dead replica's reservation holds its slot: one license is left.
	if status, _, body := httpGet(t, ps[1].URL("stock")+licensePath(ids[1])); status != 200 {
		t.Fatalf("license through the live replica: %d %s", status, body)
	}
	status, h, body := httpGet(t, ps[1].URL("stock")+licensePath(ids[2]))
	checkProxyError(t, status, h, body, 429, "license_limit_reached", "stock")
	// When the lease ends, the reservation counts as a license: the day
	// stays spent, and the audit trail says what happened.
	waitFor(t, 45*time.Second, "the lease to end and be counted", func() bool {
		status, _, _ := httpGet(t, ps[1].URL("stock")+licensePath(ids[3]))
		if status != 429 {
			t.Fatalf("a license went through after the lease ended: %d", status)
		}
		return held() == 0
	})
	out := runAudit(t, srv)
	if !strings.Contains(out, `"outcome":"unknown"`) || !strings.Contains(out, `"reason":"lease_expired"`) {
		t.Errorf("no record of the expired lease in the audit stream:\n%s", out)
	}
}

func TestE2E_Fleet_CountSurvivesARestartOfEveryReplicaAndOfRedis(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	srv := redistest.Start(t, redistest.Options{AOF: true})
	env := fleetEnv(a, creds, srv, "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "3")
	ps := startReplicas(t, 2, env)
	ids := photos(t, a, creds, false, 4)
	for i, id := range ids[:3] {
		if status, _, body := httpGet(t, ps[i%2].URL("stock")+licensePath(id)); status != 200 {
			t.Fatalf("license %s: %d %s", id, status, body)
		}
	}
	for _, p := range ps {
		if code := p.stop(); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}
	srv.Stop()
	srv.Restart()
	ps = startReplicas(t, 2, env)
	for _, p := range ps {
		status, h, body := httpGet(t, p.URL("stock")+licensePath(ids[3]))
		checkProxyError(t, status, h, body, 429, "license_limit_reached", "stock")
	}
	if n := a.Stats().Licenses; n != 3 {
		t.Errorf("Stock made %d licenses, want 3", n)
	}
}

func TestE2E_Fleet_RedisStoppedRefusesLicensesAndServesSearches(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	srv := redistest.Start(t, redistest.Options{})
	ps := startReplicas(t, 2, fleetEnv(a, creds, srv, "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "10"))
	ids := photos(t, a, creds, false, 1)
	cached := "/Rest/Media/1/Search/Files?search_parameters[words]=harbour"
	if status, _, _ := httpGet(t, ps[0].URL("stock")+cached); status != 200 {
		t.Fatalf("search: %d", status)
	}
	srv.Stop()

	status, h, body := httpGet(t, ps[0].URL("stock")+licensePath(ids[0]))
	checkProxyError(t, status, h, body, 503, "license_limit_unavailable", "stock")
	if h.Get("Retry-After") == "" {
		t.Errorf("no Retry-After on %d %s", status, body)
	}
	for i, p := range ps {
		for _, q := range []string{cached, "/Rest/Media/1/Search/Files?search_parameters[words]=lighthouse"} {
			status, h, body := httpGet(t, p.URL("stock")+q)
			if status != 200 {
				t.Errorf("replica %d, %s with Redis down: %d %s", i, q, status, body)
			}
			if i == 0 && q == cached && h.Get("X-Cache") != "HIT" {
				t.Errorf("the local cache did not answer: X-Cache %q", h.Get("X-Cache"))
			}
		}
	}
	if n := a.Stats().Licenses; n != 0 {
		t.Errorf("Stock made %d licenses while the budget could not be asked", n)
	}
	status, ready := ps[0].readyz()
	route, _ := ready["routes"].(map[string]any)["stock"].(map[string]any)
	if r, _ := route["redis"].(map[string]any); status != 200 || r == nil || r["up"] != false {
		t.Errorf("/readyz with Redis down: %d %v", status, ready)
	}
	if m := fetchMetrics(t, ps[0]); !strings.Contains(m, "imsproxy_redis_up 0") || !strings.Contains(m, `imsproxy_redis_errors_total{op="reserve"} 1`) {
		t.Errorf("metrics with Redis down:\n%s", grepLines(m, "imsproxy_redis"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestE2E_Fleet_TheCachesOwnRedisStoppedLeavesLicensesAlone(t *testing.T) {
	a := startAdobe(t, fakeadobe.Options{})
	creds := a.newCredentials(t, fakeadobe.CredentialOptions{Quota: 1000})
	state := redistest.Start(t, redistest.Options{})
	cache := redistest.Start(t, redistest.Options{})
	ps := startReplicas(t, 2, fleetEnv(a, creds, state, "IMSPROXY_REDIS_CACHE_URL", cache.URL, "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "1"))
	q := "/Rest/Media/1/Search/Files?search_parameters[words]=dune"
	httpGet(t, ps[0].URL("stock")+q)
	waitFor(t, 5*time.Second, "a hit from the cache's Redis on the other replica", func() bool {
		_, h, _ := httpGet(t, ps[1].URL("stock")+q)
		return h.Get("X-Cache") == "HIT"
	})
	cache.Stop()
	if status, _, body := httpGet(t, ps[1].URL("stock")+"/Rest/Media/1/Search/Files?search_parameters[words]=canyon"); status != 200 {
		t.Errorf("search with the cache's Redis down: %d %s", status, body)
	}
	ids := photos(t, a, creds, false, 2)
	if status, _, body := httpGet(t, ps[1].URL("stock")+licensePath(ids[0])); status != 200 {
		t.Fatalf("license with the cache's Redis down: %d %s", status, body)
	}
	status, h, body := httpGet(t, ps[0].URL("stock")+licensePath(ids[1]))
	checkProxyError(t, status, h, body, 429, "license_limit_reached", "stock") // the shared count still holds
	m := fetchMetrics(t, ps[1])
	if !strings.Contains(m, "imsproxy_redis_up 1") || !strings.Contains(m, "imsproxy_redis_cache_up 0") {
		t.Errorf("metrics:\n%s", grepLines(m, "imsproxy_redis"))
	}
}
