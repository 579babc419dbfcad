package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/tokens"
)

// TokenStore keeps a route's sealed token in Redis for tokens.SharedSource.
type TokenStore struct{ r *Route }

var _ tokens.SharedStore = TokenStore{}

// TokenStore returns the route's shared-token store.
func (r *Route) TokenStore() TokenStore { return TokenStore{r: r} }

func (s TokenStore) do(ctx context.Context, f func(ctx context.Context) error) error {
	c := s.r.c
	if !c.stateUp() {
		return errDown
	}
	ctx, cancel := c.ctx(ctx, c.timeout)
	defer cancel()
	if err := f(ctx); err != nil {
		c.fail(OpToken, err)
		return err
	}
	c.ok()
	return nil
}

// Load implements tokens.SharedStore.
func (s TokenStore) Load(ctx context.Context) ([]byte, error) {
	var b []byte
	err := s.do(ctx, func(ctx context.Context) error {
		var err error
		b, err = s.r.c.rdb.Get(ctx, s.r.key("token")).Bytes()
		if errors.Is(err, redis.Nil) {
			b, err = nil, nil
		}
		return err
	})
	return b, err
}

// Save implements tokens.SharedStore.
func (s TokenStore) Save(ctx context.Context, sealed []byte, ttl time.Duration) error {
	return s.do(ctx, func(ctx context.Context) error {
		return s.r.c.rdb.Set(ctx, s.r.key("token"), sealed, ttl).Err()
	})
}

// unlockScript deletes the lock only if it is still the caller's.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Lock implements tokens.SharedStore.
func (s TokenStore) Lock(ctx context.Context, ttl time.Duration) (func(), bool, error) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	owner := hex.EncodeToString(id[:])
	key := s.r.key("token:lock")
	var ok bool
	err := s.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = s.r.c.rdb.SetNX(ctx, key, owner, ttl).Result()
		return err
	})
	if err != nil || !ok {
		return func() {}, false, err
	}
	return func() {
		_ = s.do(context.Background(), func(ctx context.Context) error {
			return unlockScript.Run(ctx, s.r.c.rdb, []string{key}, owner).Err()
		})
	}, true, nil
}

// Force implements tokens.SharedStore.
func (s TokenStore) Force(ctx context.Context, interval time.Duration) (bool, error) {
	var ok bool
	err := s.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = s.r.c.rdb.SetNX(ctx, s.r.key("token:forced"), "1", interval).Result()
		return err
	})
	return ok, err
}
