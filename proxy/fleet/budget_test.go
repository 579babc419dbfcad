package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/redistest"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/stock"
)

func TestBudget_ExactAcrossReplicasUnderConcurrency(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const limit, callers = 7, 60
	var budgets []*Budget
	for range 3 {
		budgets = append(budgets, replica(t, srv).Route(stockRoute("client")).Budget(limit, time.Minute))
	}
	var granted, spent atomic.Int32
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			b := budgets[i%len(budgets)]
			slot, err := b.Reserve(context.Background(), audit.Record{})
			var se *stock.SpentError
			switch {
			case errors.As(err, &se):
				spent.Add(1)
				if se.Limit != limit || se.RetryAfter <= 0 || se.RetryAfter > 24*time.Hour {
					t.Errorf("SpentError = %+v", se)
				}
			case err != nil:
				t.Error(err)
			default:
				granted.Add(1)
				slot.Settle(context.Background(), true, audit.Record{Route: "stock", Outcome: "licensed"})
			}
		})
	}
	wg.Wait()
	if granted.Load()+spent.Load() != callers {
		t.Fatalf("granted %d + spent %d != %d", granted.Load(), spent.Load(), callers)
	}
	if granted.Load() != limit {
		t.Errorf("%d licenses granted across the replicas, want exactly %d", granted.Load(), limit)
	}
	left, ok := budgets[0].Remaining(context.Background())
	if !ok || left != 0 {
		t.Errorf("remaining = %d, %v; want 0 (the limit is spent)", left, ok)
	}
	n, err := inspect(t, srv).Get(context.Background(), budgetKeyToday(t, srv)).Int()
	if err != nil || n != limit {
		t.Errorf("licenses counted in Redis = %d (%v), want exactly %d", n, err, limit)
	}
}

// budgetKeyToday is the count key of route stock, client "client", today.
func budgetKeyToday(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	tm, err := inspect(t, srv).Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return "test:{stock:client}:license:" + audit.UTCDay(tm) + ":count"
}

func TestBudget_ADeadReplicasReservationCountsWhenItsLeaseEnds(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	dead := replica(t, srv).Route(stockRoute("client")).Budget(2, 300*time.Millisecond)
	alive := replica(t, srv).Route(stockRoute("client")).Budget(2, time.Minute)
	ctx := context.Background()
	attempt := audit.Record{RequestID: "req-7", Route: "stock", Caller: "batch", Remote: "10.0.0.7", Method: "GET",
		ContentID: "130065173", License: "Standard", Attempt: "att-7"}
	if _, err := dead.Reserve(ctx, attempt); err != nil { // never settled: the replica died
		t.Fatal(err)
	}
	s, err := alive.Reserve(ctx, audit.Record{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alive.Reserve(ctx, audit.Record{}); !isSpent(err) {
		t.Fatalf("third reservation with two held: %v, want spent", err)
	}
	s.Settle(ctx, false, audit.Record{}) // refused by Stock: free again
	rdb := inspect(t, srv)
	testutil.WaitFor(t, "the dead replica's lease to end and count", func() bool {
		n, _ := rdb.Get(ctx, budgetKeyToday(t, srv)).Int()
		if n == 0 {
			_, _ = alive.Remaining(ctx) // Remaining does not sweep; a reservation does
			if s, err := alive.Reserve(ctx, audit.Record{}); err == nil {
				s.Settle(ctx, false, audit.Record{})
			}
		}
		return n == 1
	})
	if _, err := alive.Reserve(ctx, audit.Record{}); err != nil {
		t.Fatalf("one license left: %v", err)
	}
	if _, err := alive.Reserve(ctx, audit.Record{}); !isSpent(err) {
		t.Fatalf("the expired lease counts: want spent, got %v", err)
	}
	msgs, err := rdb.XRange(ctx, "test:audit", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range msgs {
		var rec map[string]any
		_ = json.Unmarshal([]byte(m.Values["record"].(string)), &rec)
		if rec["reason"] != "lease_expired" {
			continue
		}
		found = true
		// Who licensed what: the attempt's record, with its outcome.
		for k, want := range map[string]any{"outcome": "unknown", "route": "stock", "request_id": "req-7", "caller": "batch",
			"remote": "10.0.0.7", "content_id": "130065173", "license": "Standard", "attempt": "att-7", "status": 0.0, "upstream_status": 0.0} {
			if rec[k] != want {
				t.Errorf("the expired lease's record has %s = %v, want %v: %v", k, rec[k], want, rec)
			}
		}
		if tm, err := time.Parse(time.RFC3339, rec["time"].(string)); err != nil || time.Since(tm) > time.Minute {
			t.Errorf("the expired lease's record has time %v", rec["time"])
		}
	}
	if !found {
		t.Errorf("no audit record of the expired lease among %v", msgs)
	}
}

func isSpent(err error) bool {
	var se *stock.SpentError
	return errors.As(err, &se)
}

func TestBudget_SettleAppendsTheRecordToTheStream(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := replica(t, srv)
	for _, limit := range []int{0, 3} {
		b := c.Route(stockRoute("client")).Budget(limit, time.Minute)
		s, err := b.Reserve(context.Background(), audit.Record{})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Settle(context.Background(), true, audit.Record{RequestID: "req-" + string(rune('a'+limit)), Outcome: "licensed"}) {
			t.Errorf("limit %d: Settle did not record", limit)
		}
	}
	if err := c.Trail().Write(audit.Record{RequestID: "refused", Outcome: "forbidden"}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	n, err := c.PrintAudit(context.Background(), time.Now().Add(-time.Minute), &out)
	if err != nil || n != 3 {
		t.Fatalf("PrintAudit = %d, %v", n, err)
	}
	for _, id := range []string{`"request_id":"req-a"`, `"request_id":"req-d"`, `"request_id":"refused"`} {
		if !strings.Contains(out.String(), id) {
			t.Errorf("audit output lacks %s:\n%s", id, out.String())
		}
	}
	if n, _ := c.PrintAudit(context.Background(), time.Now().Add(time.Minute), &out); n != 0 {
		t.Errorf("records since the future: %d", n)
	}
}

func TestBudget_RedisDownRefusesAndNeverCountsLocally(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := replica(t, srv).Route(stockRoute("client")).Budget(5, time.Minute)
	srv.Kill()
	start := time.Now()
	_, err := b.Reserve(context.Background(), audit.Record{})
	if err == nil || isSpent(err) {
		t.Fatalf("Reserve with Redis down = %v, want an error that is not SpentError", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Reserve took %v with Redis down", d)
	}
}

func TestBudget_TwoOrganisationsWithTheSameRouteNameDoNotShareACount(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := replica(t, srv)
	a := c.Route(stockRoute("org-a")).Budget(1, time.Minute)
	b := c.Route(stockRoute("org-b")).Budget(1, time.Minute)
	if _, err := a.Reserve(context.Background(), audit.Record{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(context.Background(), audit.Record{}); err != nil {
		t.Fatalf("org-b's budget is spent by org-a's license: %v", err)
	}
}

// A reservation made by a replica of the earlier form, "<random> <request
// id>", is audited with that id as its request id, however it is spelt:
// a caller's X-Request-Id that looks like a record adds no field.
func TestBudget_AnEarlierReservationsRequestIDIsNotReadAsARecord(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := replica(t, srv).Route(stockRoute("client")).Budget(5, time.Minute)
	ctx := context.Background()
	rdb := inspect(t, srv)
	held := strings.TrimSuffix(budgetKeyToday(t, srv), ":count") + ":held"
	forged := `{"caller":"forged","content_id":"9","request_id":"x"}`
	if err := rdb.ZAdd(ctx, held, redis.Z{Score: 1, Member: "0123abcd " + forged}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, audit.Record{}); err != nil { // sweeps
		t.Fatal(err)
	}
	msgs, err := rdb.XRange(ctx, "test:audit", "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("audit stream %v (%v), want the expired reservation's record", msgs, err)
	}
	var rec map[string]any
	_ = json.Unmarshal([]byte(msgs[0].Values["record"].(string)), &rec)
	if rec["request_id"] != forged || rec["caller"] != nil || rec["content_id"] != nil || rec["reason"] != "lease_expired" {
		t.Errorf("the earlier reservation's record: %v", rec)
	}
}

// A Redis that answers with an error (here OOM at maxmemory) was reached:
// the warning says it refused, not that it is unreachable, which would
// send the operator to the network instead of Redis's memory.
func TestClient_ARefusingRedisIsNotCalledUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(*redistest.Server, *redis.Client)
		want  string
	}{
		{"full", func(_ *redistest.Server, rdb *redis.Client) {
			rdb.ConfigSet(context.Background(), "maxmemory-policy", "noeviction")
			rdb.ConfigSet(context.Background(), "maxmemory", "1")
		}, "Redis refused an operation: "},
		{"gone", func(srv *redistest.Server, _ *redis.Client) { srv.Kill() }, "Redis unreachable: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			c, logs := loggedClient(t, srv)
			b := c.Route(stockRoute("client")).Budget(5, time.Minute)
			tc.spoil(srv, inspect(t, srv))
			if _, err := b.Reserve(context.Background(), audit.Record{}); err == nil {
				t.Fatal("Reserve succeeded")
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("log %q, want %q", logs, tc.want)
			}
		})
	}
}

// loggedClient is a Client on srv whose log the test reads.
func loggedClient(t *testing.T, srv *redistest.Server) (*Client, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	c, err := New(&config.Redis{URL: config.Secret(srv.URL), Prefix: "test", Timeout: 500 * time.Millisecond},
		slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, logs
}

// At maxmemory the search cache's stores fail first; its warning says
// Redis refused too.
func TestLevel2_AStoreIntoAFullRedisIsARefusal(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c, logs := loggedClient(t, srv)
	l := c.Route(stockRoute("client")).Level2(func(string) {})
	_ = l.Get(context.Background(), "search") // reads the generation
	rdb := inspect(t, srv)
	rdb.ConfigSet(context.Background(), "maxmemory-policy", "noeviction")
	rdb.ConfigSet(context.Background(), "maxmemory", "1")
	stored := make(chan struct{})
	l.Set(l.Generation(), "search", []byte("answer"), time.Minute, func() { close(stored) })
	<-stored
	if want := "the search cache's Redis refused an operation: "; !strings.Contains(logs.String(), want) {
		t.Errorf("log %q, want %q", logs, want)
	}
}
