// Package fleet is fleet mode: the state that N replicas of the proxy share
// through Redis (or Valkey) so that the guarantees of one process hold for
// the fleet — one license budget per route and client, one audit trail,
// a second level of the search cache with purges that reach every
// replica, and optionally one token per route. Every key of a route is
// <prefix>:{<route>:<client id>}:…, one Cluster slot per route, so two
// organisations whose routes share a name never share a key.
//
// Redis failing never takes the proxy down: licenses are refused (never
// counted locally instead), searches fall back to the local cache, a
// shared token to the replica's own exchange.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/imsproxy/imsproxy/config"
)

// Operations, as imsproxy_redis_errors_total labels them.
const (
	OpPing     = "ping"
	OpReserve  = "reserve"
	OpSettle   = "settle"
	OpAudit    = "audit"
	OpCacheGet = "cache_get"
	OpCacheSet = "cache_set"
	OpPurge    = "purge"
	OpToken    = "token"
)

// Ops lists every operation label, so the error counters show at 0.
var Ops = []string{OpPing, OpReserve, OpSettle, OpAudit, OpCacheGet, OpCacheSet, OpPurge, OpToken}

// cacheTimeout bounds a search-cache operation: a level-2 lookup must cost
// less than the upstream round trip it saves, so it gives up long before
// IMSPROXY_REDIS_TIMEOUT.
const cacheTimeout = 50 * time.Millisecond

// checkInterval is how often Run pings Redis (closing the breaker when it
// answers) and compares the routes' cache generations (a purge whose
// message was lost still arrives within it).
const checkInterval = time.Second

// maxBackground bounds the level-2 stores and purges running at once;
// past it a store is dropped (the next miss stores it again).
const maxBackground = 64

// errDown is returned without asking Redis while the breaker is open.
var errDown = errors.New("the fleet's Redis is unreachable")

// Client is one process's connection to the fleet's Redis.
type Client struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	failed  func(op string) // counts an error; never nil

	// up is the breaker: false after an operation failed, true again when
	// a PING succeeds (Run). The search cache does not ask Redis while it
	// is false, so an unreachable Redis costs searches nothing.
	up      atomic.Bool
	lastErr atomic.Pointer[string]

	// cache is the Redis of the search cache's answers: another instance
	// (IMSPROXY_REDIS_CACHE_URL) or the state's.
	cache *redis.Client
	// cacheUp is the search cache's breaker, its own even when the cache
	// shares the state's Redis: a lookup that misses its short deadline
	// must not refuse licenses (which wait up to IMSPROXY_REDIS_TIMEOUT).
	cacheUp atomic.Bool

	background chan struct{} // a slot per store or purge running
	wg         sync.WaitGroup

	mu     sync.Mutex
	caches map[string]*Level2 // by purge channel
	subs   chan string        // channels for listen to subscribe to
}

// New returns the Client of cfg. It connects lazily: New does no I/O, so
// serve starts while Redis is down (fleet mode degrades, it does not stop
// the proxy). failed counts an operation's error (nil: not counted).
func New(cfg *config.Redis, log *slog.Logger, failed func(op string)) (*Client, error) {
	opts, err := clientOptions(cfg, cfg.URL)
	if err != nil {
		// config.Load validated the URL; the error may quote it.
		return nil, errors.New("IMSPROXY_REDIS_URL cannot be used")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if failed == nil {
		failed = func(string) {}
	}
	c := &Client{
		rdb: redis.NewClient(opts), prefix: cfg.Prefix, timeout: cfg.Timeout, log: log, failed: failed,
		background: make(chan struct{}, maxBackground), caches: map[string]*Level2{},
		subs: make(chan string, 64),
	}
	c.up.Store(true) // until an operation says otherwise
	c.cacheUp.Store(true)
	c.cache = c.rdb
	if !cfg.CacheURL.IsZero() {
		copts, err := clientOptions(cfg, cfg.CacheURL)
		if err != nil {
			_ = c.rdb.Close()
			return nil, errors.New("IMSPROXY_REDIS_CACHE_URL cannot be used")
		}
		c.cache = redis.NewClient(copts)
	}
	quietOnce.Do(func() { redis.SetLogger(quiet{}) })
	return c, nil
}

// clientOptions are go-redis's options for the Redis at url.
func clientOptions(cfg *config.Redis, url config.Secret) (*redis.Options, error) {
	opts, err := redis.ParseURL(url.Reveal())
	if err != nil {
		return nil, err
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout, cfg.Timeout
	opts.ContextTimeoutEnabled = true
	// No hidden retries: a retried XADD would write a record twice, and a
	// retry would outlast the timeout the caller was promised.
	opts.MaxRetries = -1
	opts.MinIdleConns = 1
	opts.Protocol = 2 // RESP2, without HELLO: Valkey, and Redis from 6.2 (XADD MINID) on
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if opts.TLSConfig != nil {
		opts.TLSConfig = &tls.Config{ServerName: opts.TLSConfig.ServerName, RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	}
	return opts, nil
}

// separateCache reports whether the search cache has a Redis of its own.
func (c *Client) separateCache() bool { return c.cache != c.rdb }

// quiet drops go-redis's own log lines (printed to stderr, outside the
// proxy's log format): every failure it would report is returned to the
// proxy, which counts and logs it once.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var quietOnce sync.Once

// Close waits for the background stores and closes the connections.
func (c *Client) Close() error {
	c.wg.Wait()
	if c.separateCache() {
		_ = c.cache.Close()
	}
	return c.rdb.Close()
}

// Up reports whether the Redis of the shared state answered the last
// operation (its breaker is closed).
func (c *Client) Up() bool { return c.up.Load() }

// CacheUp reports whether the search cache's own Redis answered its last
// operation; ok is false when the cache shares the state's Redis.
func (c *Client) CacheUp() (up, ok bool) { return c.cacheUp.Load(), c.separateCache() }

// stateUp reports whether the Redis of the shared state answers.
func (c *Client) stateUp() bool { return c.up.Load() }

// bothUp reports whether every Redis the search cache needs answers: the
// state's (the generation) and the cache's breaker is closed.
func (c *Client) bothUp() bool { return c.up.Load() && c.cacheUp.Load() }

// LastError is the last Redis error, "" when none since the last success.
func (c *Client) LastError() string {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// fail records a failed operation: counted, logged when Redis was up, and
// the breaker opens.
func (c *Client) fail(op string, err error) {
	c.failed(op)
	msg := op + ": " + err.Error()
	c.lastErr.Store(&msg)
	if c.up.Swap(false) {
		what := "Redis unreachable"
		if refused(err) {
			what = "Redis refused an operation"
		}
		c.log.Warn(what+": licenses are refused, searches use the local cache alone, shared tokens are fetched by each replica",
			"op", op, "error", err)
	}
}

// refused reports whether err is Redis's own error reply (OOM at
// maxmemory, READONLY on a replica, NOPERM): Redis was reached and said
// no, which sends the operator to Redis rather than to the network.
// redis.Nil, an absent key, is a reply too but no refusal.
func refused(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply) && !errors.Is(err, redis.Nil)
}

// ok records a successful operation.
func (c *Client) ok() {
	if !c.up.Load() {
		if c.cacheUp.Load() {
			c.lastErr.Store(nil)
		}
		if !c.up.Swap(true) {
			c.log.Info("Redis reachable again")
		}
	}
}

// failCache records a failed search-cache operation: only the cache's
// breaker opens, so licenses go on; a Redis that is really down opens the
// state's breaker at the next ping.
func (c *Client) failCache(op string, err error) {
	c.failed(op)
	msg := "cache " + op + ": " + err.Error()
	c.lastErr.Store(&msg)
	if c.cacheUp.Swap(false) {
		what := "the search cache's Redis did not answer"
		if refused(err) {
			what = "the search cache's Redis refused an operation"
		}
		c.log.Warn(what+": searches use the local cache alone until it answers a ping", "op", op, "error", err)
	}
}

// okCache records a successful search-cache operation.
func (c *Client) okCache() {
	if !c.cacheUp.Load() {
		if c.up.Load() {
			c.lastErr.Store(nil)
		}
		if !c.cacheUp.Swap(true) {
			c.log.Info("the search cache's Redis answers again")
		}
	}
}

// ctx bounds one operation by IMSPROXY_REDIS_TIMEOUT (or d when shorter).
func (c *Client) ctx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, min(c.timeout, d))
}

// Ping asks Redis once, and the cache's Redis when it has one of its own.
func (c *Client) Ping(ctx context.Context) error {
	opCtx, cancel := c.ctx(ctx, c.timeout)
	err := c.rdb.Ping(opCtx).Err()
	cancel()
	if err != nil {
		c.fail(OpPing, err)
		return fmt.Errorf("ping Redis: %w%s", err, tlsHint(c.rdb, err))
	}
	c.ok()
	if !c.separateCache() {
		c.okCache()
	} else {
		opCtx, cancel := c.ctx(ctx, c.timeout)
		err := c.cache.Ping(opCtx).Err()
		cancel()
		if err != nil {
			c.failCache(OpPing, err)
			return fmt.Errorf("ping the search cache's Redis (IMSPROXY_REDIS_CACHE_URL): %w%s", err, tlsHint(c.cache, err))
		}
		c.okCache()
	}
	return nil
}

// tlsHint explains a ping of a rediss:// URL that got no answer in time:
// a Redis without TLS reads the handshake as a command and waits for more.
func tlsHint(rdb *redis.Client, err error) string {
	if rdb.Options().TLSConfig == nil || !errors.Is(err, context.DeadlineExceeded) {
		return ""
	}
	return " (the URL is rediss://: does that Redis speak TLS, or is it redis://?)"
}

// CheckVersion checks that Redis trims streams by age, as the audit
// stream's XADD does (MINID, Redis 6.2): before it, every record's append
// would fail. It trims the audit stream as an append would, nothing more.
func (c *Client) CheckVersion(ctx context.Context) error {
	ctx, cancel := c.ctx(ctx, c.timeout)
	defer cancel()
	minID := strconv.FormatInt(time.Now().Add(-auditRetention).UnixMilli(), 10)
	err := c.rdb.XTrimMinIDApprox(ctx, c.auditKey(), minID, 0).Err()
	switch {
	case err == nil:
		return nil
	case strings.Contains(err.Error(), "syntax error") || strings.Contains(err.Error(), "unknown command"):
		// What a Redis before 6.2 answers.
		return fmt.Errorf("trim the audit stream by age (XTRIM MINID), which needs Redis 6.2 or later or Valkey: %w", err)
	}
	return fmt.Errorf("trim the audit stream %s by age: %w", c.auditKey(), err)
}

// LoadScripts loads the Lua scripts of fleet mode into Redis, which checks
// that they compile and that the user may run them (imsproxy check).
func (c *Client) LoadScripts(ctx context.Context) error {
	for _, s := range []*redis.Script{reserveScript, settleScript} {
		ctx, cancel := c.ctx(ctx, c.timeout)
		err := s.Load(ctx, c.rdb).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("load the license scripts into Redis: %w", err)
		}
	}
	return nil
}

// Run pings Redis every second (closing the breaker again once it
// answers), listens for the purges of other replicas, and compares the
// caches' generations in case a purge message was lost. It returns when
// ctx is done.
func (c *Client) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.listen(ctx) })
	tick := time.NewTicker(checkInterval)
	defer tick.Stop()
	for {
		if c.Ping(ctx); c.stateUp() {
			c.mu.Lock()
			caches := make([]*Level2, 0, len(c.caches))
			for _, l := range c.caches {
				caches = append(caches, l)
			}
			c.mu.Unlock()
			for _, l := range caches {
				l.sync(ctx)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// listen empties a replica's local cache when another replica purges.
// go-redis resubscribes after a lost connection; what was published
// meanwhile is caught by the generation check of Run.
func (c *Client) listen(ctx context.Context) {
	c.mu.Lock()
	channels := make([]string, 0, len(c.caches))
	for ch := range c.caches {
		channels = append(channels, ch)
	}
	c.mu.Unlock()
	ps := c.rdb.Subscribe(ctx, channels...)
	defer ps.Close()
	msgs := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case ch := <-c.subs: // a cache made after Run started
			_ = ps.Subscribe(ctx, ch) // on failure, Run's generation check stands in
		case m, ok := <-msgs:
			if !ok {
				return
			}
			c.mu.Lock()
			l := c.caches[m.Channel]
			c.mu.Unlock()
			if l != nil {
				l.received(m.Payload)
			}
		}
	}
}

// Route is the part of Redis that belongs to one route and client id.
type Route struct {
	c    *Client
	name string
	tag  string // <prefix>:{<route>:<client id>}
}

// Route returns the keys of route rc.
func (c *Client) Route(rc *config.Route) *Route {
	return &Route{c: c, name: rc.Name, tag: c.prefix + ":{" + rc.Name + ":" + rc.Credentials.ClientID + "}"}
}

// key is the route's key with this suffix.
func (r *Route) key(suffix string) string { return r.tag + ":" + suffix }

// auditKey is the stream of every route's audit records.
func (c *Client) auditKey() string { return c.prefix + ":audit" }

// goBackground runs f in the background unless maxBackground already run;
// it reports whether f was started.
func (c *Client) goBackground(f func()) bool {
	select {
	case c.background <- struct{}{}:
	default:
		return false
	}
	c.wg.Go(func() {
		defer func() { <-c.background }()
		f()
	})
	return true
}
