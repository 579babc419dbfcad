package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/proxy/cache"
)

// Level2 is a route's search cache shared through Redis: the second level
// behind each replica's own. Answers live under a generation, which a
// purge increments and publishes: every replica then empties its own level
// and stops reading the old generation's answers, which expire on their
// own. Redis failing or slower than 50 ms is a miss, and the breaker
// (Client.Up) keeps searches off Redis until it answers again.
type Level2 struct {
	r       *Route
	replica string              // this process, in purge messages
	local   func(reason string) // empties this replica's own level
	channel string

	gen     atomic.Pointer[string] // the generation known; nil until read
	pending atomic.Bool            // a purge Redis did not take: retried by sync
}

var _ cache.Shared = (*Level2)(nil)

// Level2 returns the route's shared search cache; local empties this
// replica's own level when another replica purges.
func (r *Route) Level2(local func(reason string)) *Level2 {
	var id [8]byte
	_, _ = rand.Read(id[:])
	l := &Level2{r: r, replica: hex.EncodeToString(id[:]), local: local, channel: r.key("cache:purged")}
	r.c.mu.Lock()
	r.c.caches[l.channel] = l
	r.c.mu.Unlock()
	select {
	case r.c.subs <- l.channel:
	default: // more caches than routes can make: the generation check stands in
	}
	return l
}

func (l *Level2) genKey() string { return l.r.key("cache:gen") }

// generation returns the current generation, reading it once from Redis.
func (l *Level2) generation(ctx context.Context) (string, error) {
	if g := l.gen.Load(); g != nil {
		return *g, nil
	}
	g, err := l.r.c.rdb.Get(ctx, l.genKey()).Result()
	if errors.Is(err, redis.Nil) {
		g, err = "0", nil
	}
	if err != nil {
		return "", err
	}
	l.gen.CompareAndSwap(nil, &g)
	return *l.gen.Load(), nil
}

func (l *Level2) entryKey(gen, key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.r.key("search:" + gen + ":" + hex.EncodeToString(sum[:]))
}

// Available implements cache.Shared: the breakers are closed (the
// generation is kept with the state, the answers in the cache's Redis).
func (l *Level2) Available() bool { return l.r.c.bothUp() }

// Get implements cache.Shared.
func (l *Level2) Get(ctx context.Context, key string) []byte {
	c := l.r.c
	if !c.bothUp() {
		return nil
	}
	ctx, cancel := c.ctx(ctx, cacheTimeout)
	defer cancel()
	gen, err := l.generation(ctx)
	if err != nil {
		c.failCache(OpCacheGet, err)
		return nil
	}
	b, err := c.cache.Get(ctx, l.entryKey(gen, key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		c.okCache()
		return nil
	case err != nil:
		c.failCache(OpCacheGet, err)
		return nil
	}
	c.okCache()
	return b
}

// Generation implements cache.Shared.
func (l *Level2) Generation() string {
	if g := l.gen.Load(); g != nil {
		return *g
	}
	return ""
}

// Set implements cache.Shared: the answer is written in the background,
// and dropped when too many writes are under way already.
func (l *Level2) Set(gen, key string, value []byte, ttl time.Duration, done func()) {
	if done == nil {
		done = func() {}
	}
	c := l.r.c
	if !c.cacheUp.Load() || gen == "" {
		done()
		return
	}
	started := c.goBackground(func() {
		defer done()
		ctx, cancel := c.ctx(context.Background(), c.timeout)
		defer cancel()
		if err := c.cache.Set(ctx, l.entryKey(gen, key), value, ttl).Err(); err != nil {
			c.failCache(OpCacheSet, err)
		}
	})
	if !started {
		done()
	}
}

// Purge implements cache.Shared: a new generation, published to the other
// replicas. When Redis cannot take it, it is retried once Redis answers
// again, so that no replica keeps serving what a license changed.
func (l *Level2) Purge(reason string) {
	c := l.r.c
	if !c.stateUp() {
		// Known down: not made to wait for a timeout (a license is being
		// answered); made once Redis answers again.
		l.pending.Store(true)
		return
	}
	ctx, cancel := c.ctx(context.Background(), c.timeout)
	defer cancel()
	n, err := c.rdb.Incr(ctx, l.genKey()).Result()
	if err == nil {
		g := strconv.FormatInt(n, 10)
		l.gen.Store(&g)
		err = c.rdb.Publish(ctx, l.channel, g+" "+l.replica+" "+reason).Err()
	}
	if err != nil {
		l.pending.Store(true)
		c.fail(OpPurge, err)
		return
	}
	l.pending.Store(false)
}

// received handles another replica's purge message: "<gen> <replica> <reason>".
func (l *Level2) received(payload string) {
	fields := strings.Fields(payload)
	if len(fields) < 2 || fields[1] == l.replica {
		return
	}
	g := fields[0]
	l.gen.Store(&g)
	reason := "fleet"
	if len(fields) > 2 {
		reason = "fleet:" + fields[2]
	}
	l.local(reason)
}

// sync runs every second while Redis answers: a purge that failed is made
// now, and a generation changed without this replica hearing of it (a
// message lost while the subscription reconnected) empties the local
// level.
func (l *Level2) sync(ctx context.Context) {
	if l.pending.Load() {
		l.Purge("retried")
		return
	}
	ctx, cancel := l.r.c.ctx(ctx, l.r.c.timeout)
	defer cancel()
	known := l.gen.Load()
	if known == nil {
		_, _ = l.generation(ctx) // learnt before the first search needs it
		return
	}
	g, err := l.r.c.rdb.Get(ctx, l.genKey()).Result()
	if errors.Is(err, redis.Nil) {
		g, err = "0", nil
	}
	if err != nil || g == *known {
		return
	}
	if l.gen.CompareAndSwap(known, &g) {
		l.local("fleet:missed")
	}
}
