package fleet

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/redistest"
	"github.com/imsproxy/imsproxy/tokens"
)

// countingSource hands out a new token on each exchange and counts them.
type countingSource struct{ n atomic.Int32 }

func (s *countingSource) Fetch(context.Context) (tokens.Token, error) {
	n := s.n.Add(1)
	now := time.Now()
	return tokens.Token{Value: "ims-access-token-number-" + strconv.Itoa(int(n)), Obtained: now, Expiry: now.Add(time.Hour)}, nil
}

func sharedManagers(t *testing.T, srv *redistest.Server, src tokens.Source, n int) []*tokens.Manager {
	t.Helper()
	var ms []*tokens.Manager
	for range n {
		rc := stockRoute("client")
		shared, err := tokens.NewSharedSource(rc, src, replica(t, srv).Route(rc).TokenStore(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A request here waits out a dead lock holder (5 s), which
		// IMSPROXY_TOKEN_WAIT's default would answer with a 503 first.
		ms = append(ms, tokens.NewManager("stock", shared, tokens.Options{Wait: 15 * time.Second}))
	}
	return ms
}

func TestSharedToken_OneExchangeForThreeReplicasAndNoTokenBytesInRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	src := &countingSource{}
	ms := sharedManagers(t, srv, src, 3)
	var wg sync.WaitGroup
	values := make([]string, len(ms))
	var fromFleet atomic.Int64
	for i, m := range ms {
		wg.Go(func() {
			tok, err := m.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			values[i] = tok.Value
			if tok.FromFleet {
				fromFleet.Add(1)
			}
		})
	}
	wg.Wait()
	if n := src.n.Load(); n != 1 {
		t.Errorf("%d exchanges for three replicas, want 1", n)
	}
	if n := fromFleet.Load(); n != 2 {
		t.Errorf("%d replicas say their token came from the fleet, want the 2 that did not exchange", n)
	}
	if values[0] != values[1] || values[1] != values[2] {
		t.Errorf("the replicas hold different tokens")
	}
	rdb := inspect(t, srv)
	keys, _ := rdb.Keys(context.Background(), "*").Result()
	if len(keys) == 0 {
		t.Fatal("nothing stored in Redis")
	}
	for _, k := range keys {
		v, _ := rdb.Get(context.Background(), k).Bytes()
		if bytes.Contains(v, []byte("ims-access-token")) || bytes.Contains([]byte(k), []byte("ims-access-token")) {
			t.Errorf("key %s holds the token in the clear", k)
		}
	}
}

func TestSharedToken_ARevokedTokenIsRefreshedOnceFleetWide(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	src := &countingSource{}
	ms := sharedManagers(t, srv, src, 3)
	first, _ := ms[0].Token(context.Background())
	for _, m := range ms[1:] {
		_, _ = m.Token(context.Background())
	}
	// The upstream refuses the token on every replica at once.
	var wg sync.WaitGroup
	fresh := make([]string, len(ms))
	for i, m := range ms {
		wg.Go(func() {
			if !m.Invalidate(context.Background(), first.Value) {
				t.Error("Invalidate refused")
			}
			tok, err := m.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			fresh[i] = tok.Value
		})
	}
	wg.Wait()
	if n := src.n.Load(); n != 2 {
		t.Errorf("%d exchanges, want 2: the first and one forced refresh for the fleet", n)
	}
	for i, v := range fresh {
		if v == first.Value || v != fresh[0] {
			t.Errorf("replica %d holds %q after the refresh", i, v)
		}
	}
}

func TestSharedToken_RedisDownEachReplicaExchangesAlone(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	src := &countingSource{}
	ms := sharedManagers(t, srv, src, 2)
	srv.Kill()
	for _, m := range ms {
		if _, err := m.Token(context.Background()); err != nil {
			t.Fatalf("no token with Redis down: %v", err)
		}
	}
	if n := src.n.Load(); n != 2 {
		t.Errorf("%d exchanges, want one per replica", n)
	}
}

func TestSharedToken_AWaiterExchangesAloneWhenTheLockHolderNeverDelivers(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	// A replica took the lock and died before storing a token.
	if err := inspect(t, srv).Set(context.Background(), "test:{stock:client}:token:lock", "dead-replica", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	src := &countingSource{}
	m := sharedManagers(t, srv, src, 1)[0]
	start := time.Now()
	if _, err := m.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 4*time.Second || d > 10*time.Second {
		t.Errorf("the waiter exchanged after %v, want after about 5 s", d)
	}
	if n := src.n.Load(); n != 1 {
		t.Errorf("%d exchanges, want 1", n)
	}
}
