package fleet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/redistest"
)

// replica is one process's view of the fleet: a Client of its own on the
// shared Redis, running until the test ends.
func replica(t *testing.T, srv *redistest.Server) *Client {
	t.Helper()
	return replicaOf(t, &config.Redis{URL: config.Secret(srv.URL), Prefix: "test", Timeout: 500 * time.Millisecond})
}

// replicaOf is replica with a configuration of its own.
func replicaOf(t *testing.T, cfg *config.Redis) *Client {
	t.Helper()
	return replicaWith(t, cfg, nil)
}

// replicaWith is replicaOf that tells failed of every failed operation.
func replicaWith(t *testing.T, cfg *config.Redis, failed func(op string)) *Client {
	t.Helper()
	c, err := New(cfg, nil, failed)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = c.Close()
	})
	started := make(chan struct{})
	wg.Go(func() { close(started); c.Run(ctx) })
	<-started
	return c
}

// stockRoute is a route named stock of client id.
func stockRoute(id string) *config.Route {
	return &config.Route{Name: "stock", Timeout: time.Second, Credentials: config.Credentials{ClientID: id,
		ClientSecret: config.Secret("a client secret of the route, long enough")}}
}

// inspect is a plain client to look at what Redis holds.
func inspect(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	opts, _ := redis.ParseURL(srv.URL)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
