package fleet

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/redistest"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
)

func TestLevel2_AnAnswerStoredByOneReplicaIsFoundByAnother(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := replica(t, srv).Route(stockRoute("client")).Level2(func(string) {})
	b := replica(t, srv).Route(stockRoute("client")).Level2(func(string) {})
	ctx := context.Background()
	if got := a.Get(ctx, "search"); got != nil { // also reads the generation
		t.Fatalf("empty Redis answered %q", got)
	}
	a.Set(a.Generation(), "search", []byte("answer"), time.Minute, nil)
	testutil.WaitFor(t, "the background store", func() bool { return string(b.Get(ctx, "search")) == "answer" })
	other := replica(t, srv).Route(stockRoute("other-org")).Level2(func(string) {})
	if got := other.Get(ctx, "search"); got != nil {
		t.Errorf("another client id reads the answer: %q", got)
	}
}

func TestLevel2_APurgeReachesEveryReplicaWithinASecond(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var purgedB, purgedA atomic.Int32
	a := replica(t, srv).Route(stockRoute("client")).Level2(func(string) { purgedA.Add(1) })
	cb := replica(t, srv)
	b := cb.Route(stockRoute("client")).Level2(func(string) { purgedB.Add(1) })
	ctx := context.Background()
	_ = a.Get(ctx, "k")
	_ = b.Get(ctx, "k")
	a.Set(a.Generation(), "k", []byte("v"), time.Minute, nil)
	testutil.WaitFor(t, "the store", func() bool { return b.Get(ctx, "k") != nil })
	rdb := inspect(t, srv)
	testutil.WaitFor(t, "both replicas to subscribe", func() bool {
		n, _ := rdb.PubSubNumSub(ctx, b.channel).Result()
		return n[b.channel] == 2
	})
	start := time.Now()
	a.Purge("test")
	testutil.WaitFor(t, "b to hear of the purge", func() bool { return purgedB.Load() > 0 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("the purge reached the other replica after %v", d)
	}
	if purgedA.Load() != 0 {
		t.Errorf("the purging replica heard its own purge")
	}
	if got := b.Get(ctx, "k"); got != nil {
		t.Errorf("after the purge the other replica still reads %q", got)
	}
}

func TestLevel2_RedisDownIsAMissAndTheBreakerKeepsSearchesOffIt(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var lookupsFailed atomic.Int64
	c := replicaWith(t, &config.Redis{URL: config.Secret(srv.URL), Prefix: "test", Timeout: 500 * time.Millisecond},
		func(op string) {
			if op == OpCacheGet {
				lookupsFailed.Add(1)
			}
		})
	l := c.Route(stockRoute("client")).Level2(func(string) {})
	ctx := context.Background()
	_ = l.Get(ctx, "k")
	srv.Kill()
	if got := l.Get(ctx, "k"); got != nil || l.Available() || lookupsFailed.Load() != 1 {
		t.Fatalf("Get with Redis down = %q, the cache's breaker closed %v, lookups failed %d (want 1)", got, l.Available(), lookupsFailed.Load())
	}
	for range 1000 {
		_ = l.Get(ctx, "k")
	}
	if n := lookupsFailed.Load() - 1; n != 0 {
		t.Errorf("%d of 1000 lookups with the breaker open asked Redis, want none", n)
	}
	srv.Restart()
	testutil.WaitFor(t, "the breakers to close once Redis answers", func() bool { return c.Up() && l.Available() })
}

func TestLevel2_AnAnswerFetchedBeforeAPurgeIsNeverFoundAfterIt(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	l := replica(t, srv).Route(stockRoute("client")).Level2(func(string) {})
	ctx := context.Background()
	_ = l.Get(ctx, "k")
	before := l.Generation() // read when the fetch began
	l.Purge("license")       // a license while the answer was on its way
	l.Set(before, "k", []byte("is_licensed: false"), time.Minute, nil)
	l.Set(l.Generation(), "other", []byte("fetched after"), time.Minute, nil)
	testutil.WaitFor(t, "the later store", func() bool { return l.Get(ctx, "other") != nil })
	if got := l.Get(ctx, "k"); got != nil {
		t.Errorf("an answer fetched before the purge is found after it: %q", got)
	}
}

func TestLevel2_ACacheInstanceOfItsOwnHoldsTheAnswersAndMayFailAlone(t *testing.T) {
	state := redistest.Start(t, redistest.Options{})
	cacheSrv := redistest.Start(t, redistest.Options{})
	c := replicaOf(t, &config.Redis{URL: config.Secret(state.URL), CacheURL: config.Secret(cacheSrv.URL), Prefix: "test", Timeout: 500 * time.Millisecond})
	rc := stockRoute("client")
	l := c.Route(rc).Level2(func(string) {})
	budget := c.Route(rc).Budget(5, time.Minute)
	ctx := context.Background()
	_ = l.Get(ctx, "k")
	l.Set(l.Generation(), "k", []byte("answer"), time.Minute, nil)
	testutil.WaitFor(t, "the store", func() bool { return l.Get(ctx, "k") != nil })
	if n, _ := inspect(t, cacheSrv).Keys(ctx, "test:*:search:*").Result(); len(n) != 1 {
		t.Errorf("answers in the cache's Redis: %v", n)
	}
	if n, _ := inspect(t, state).Keys(ctx, "test:*:search:*").Result(); len(n) != 0 {
		t.Errorf("answers in the state's Redis: %v", n)
	}

	cacheSrv.Kill()
	if got := l.Get(ctx, "k"); got != nil {
		t.Fatalf("Get with the cache's Redis down = %q", got)
	}
	if up, ok := c.CacheUp(); up || !ok || !c.Up() {
		t.Errorf("cache up %v (%v), state up %v: want the cache's breaker alone open", up, ok, c.Up())
	}
	s, err := budget.Reserve(ctx, audit.Record{})
	if err != nil {
		t.Fatalf("a license with only the cache's Redis down: %v", err)
	}
	s.Settle(ctx, true, audit.Record{})
	cacheSrv.Restart()
	testutil.WaitFor(t, "the cache's breaker to close", func() bool { up, _ := c.CacheUp(); return up })
}

// A search lookup gives up after 50 ms, long before IMSPROXY_REDIS_TIMEOUT:
// one that misses its deadline on the shared Redis turns the level-2 cache
// off until a ping, but licenses, which wait the whole timeout, go on.
func TestLevel2_ASlowLookupDoesNotRefuseLicenses(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := replica(t, srv)
	rc := stockRoute("client")
	l := c.Route(rc).Level2(func(string) {})
	budget := c.Route(rc).Budget(5, time.Minute)
	ctx := context.Background()
	_ = l.Get(ctx, "k") // reads the generation
	if err := inspect(t, srv).Do(ctx, "CLIENT", "PAUSE", "300", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if got := l.Get(ctx, "k"); got != nil {
		t.Fatalf("a paused Redis answered %q", got)
	}
	if l.Available() || !c.Up() {
		t.Errorf("after a slow lookup: cache available %v, state up %v; want only the cache off", l.Available(), c.Up())
	}
	s, err := budget.Reserve(ctx, audit.Record{}) // waits out the pause
	if err != nil {
		t.Fatalf("a license after a slow search lookup: %v", err)
	}
	s.Settle(ctx, true, audit.Record{})
	testutil.WaitFor(t, "the cache to be used again", l.Available)
}
