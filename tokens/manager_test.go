package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

// fakeSource hands out numbered tokens of a fixed lifetime, can fail on
// demand and can hold an exchange open until released, so tests control
// exactly when an exchange finishes.
type fakeSource struct {
	now      func() time.Time
	lifetime time.Duration
	calls    atomic.Int64
	fail     atomic.Pointer[error]
	started  chan struct{} // receives once per Fetch, when non-nil
	release  chan struct{} // Fetch waits for it, when non-nil
}

func (s *fakeSource) Fetch(ctx context.Context) (Token, error) {
	n := s.calls.Add(1)
	if s.started != nil {
		s.started <- struct{}{}
	}
	if s.release != nil {
		select {
		case <-s.release:
		case <-ctx.Done():
			return Token{}, ctx.Err()
		}
	}
	if err := s.fail.Load(); err != nil {
		return Token{}, *err
	}
	now := s.now()
	return Token{Value: fmt.Sprintf("token-%d", n), Obtained: now, Expiry: now.Add(s.lifetime)}, nil
}

// errIMSDown stands for any exchange failure.
var errIMSDown = errors.New("IMS answered 500 internal_error")

func (s *fakeSource) failWith(err error) { s.fail.Store(&err) }
func (s *fakeSource) recover()           { s.fail.Store(nil) }

func newFakeClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
}

func TestRefreshLead(t *testing.T) {
	tests := []struct {
		lifetime, want time.Duration
	}{
		{24 * time.Hour, 2*time.Hour + 24*time.Minute},
		{3 * time.Second, 1500 * time.Millisecond},
		{time.Hour, 6 * time.Minute},
		{20 * time.Minute, 5 * time.Minute},
		{4 * time.Minute, 2 * time.Minute},
	}
	for _, tt := range tests {
		if got := refreshLead(tt.lifetime); got != tt.want {
			t.Errorf("refreshLead(%v) = %v, want %v", tt.lifetime, got, tt.want)
		}
	}
}

func TestBackoff_StaysWithinBoundsAndGrows(t *testing.T) {
	lo, hi := time.Second, time.Minute
	for failures := 1; failures <= 12; failures++ {
		want := min(lo<<(failures-1), hi)
		for range 50 {
			d := backoff(failures, lo, hi)
			if d < max(want/2, lo) || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, max(want/2, lo), want)
			}
		}
	}
}

func TestManager_ColdStartMakesOneExchange(t *testing.T) {
	src := &fakeSource{now: time.Now, lifetime: time.Hour, started: make(chan struct{}, 1), release: make(chan struct{})}
	m := NewManager("stock", src, Options{})

	const callers = 300
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Token(context.Background()); err != nil {
				errs <- err
			}
		}()
	}
	<-src.started // the first caller's exchange is under way; all others join it
	close(src.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Token: %v", err)
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("exchanges = %d, want 1", got)
	}
}

func TestManager_WarmTokenNeedsNoExchange(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	m := NewManager("stock", src, Options{Now: clock.Now})
	first, err := m.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		tok, err := m.Token(context.Background())
		if err != nil || tok.Value != first.Value {
			t.Fatalf("Token = %q, %v; want the cached %q", tok.Value, err, first.Value)
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("exchanges = %d, want 1", got)
	}
}

func TestManager_TokenReadDoesNotAllocate(t *testing.T) {
	src := &fakeSource{now: time.Now, lifetime: time.Hour}
	m := NewManager("stock", src, Options{})
	ctx := context.Background()
	if _, err := m.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(1000, func() { _, _ = m.Token(ctx) }); allocs != 0 {
		t.Fatalf("Token allocates %v times per call, want 0", allocs)
	}
}

func TestManager_IMSDownAtStartThenRecovers(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	src.failWith(errIMSDown)
	m := NewManager("aem", src, Options{Now: clock.Now})

	_, err := m.Token(context.Background())
	var unavailable *UnavailableError
	if !errors.As(err, &unavailable) {
		t.Fatalf("Token error = %v, want *UnavailableError", err)
	}
	if !errors.Is(err, errIMSDown) {
		t.Fatalf("Token error = %v, want it to carry the IMS error", err)
	}
	if unavailable.RetryAfter <= 0 {
		t.Fatalf("RetryAfter = %v, want > 0", unavailable.RetryAfter)
	}

	// During the backoff, requests fail fast without asking IMS again.
	for range 50 {
		if _, err := m.Token(context.Background()); err == nil {
			t.Fatal("Token succeeded while IMS is down")
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("exchanges during backoff = %d, want 1", got)
	}
	if st := m.Status(); st.Ready || st.LastError == "" || st.NextRetry.IsZero() {
		t.Fatalf("Status = %+v, want not ready with the last error and next retry", st)
	}

	src.recover()
	clock.Advance(unavailable.RetryAfter)
	tok, err := m.Token(context.Background())
	if err != nil || tok.Value == "" {
		t.Fatalf("Token after recovery = %v, %v", tok, err)
	}
	if st := m.Status(); !st.Ready || st.LastError != "" {
		t.Fatalf("Status after recovery = %+v, want ready without error", st)
	}
}

func TestManager_KeepsValidTokenWhileIMSFails(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: 24 * time.Hour}
	m := NewManager("stock", src, Options{Now: clock.Now})
	old, err := m.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	src.failWith(errIMSDown)
	clock.Advance(22 * time.Hour) // past the refresh point, before expiry
	if _, err, _ := m.group.Do("refresh", m.refresh); err != nil {
		t.Fatalf("a failed refresh with a valid token must not fail: %v", err)
	}
	for range 20 {
		tok, err := m.Token(context.Background())
		if err != nil || tok.Value != old.Value {
			t.Fatalf("Token = %v, %v; want the old token", tok, err)
		}
	}
	if st := m.Status(); !st.Ready || st.LastError == "" {
		t.Fatalf("Status = %+v, want ready and the refresh error reported", st)
	}
}

func TestManager_InvalidateIsRateLimited(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	m := NewManager("stock", src, Options{Now: clock.Now})
	ctx := context.Background()
	first, _ := m.Token(ctx)

	if !m.Invalidate(context.Background(), first.Value) {
		t.Fatal("first Invalidate refused")
	}
	second, err := m.Token(ctx)
	if err != nil || second.Value == first.Value {
		t.Fatalf("after Invalidate, Token = %v, %v; want a new token", second.Value, err)
	}
	// A stale value (a request that used the old token) needs no refresh.
	if !m.Invalidate(context.Background(), first.Value) {
		t.Fatal("Invalidate of an already replaced token should allow a retry")
	}
	clock.Advance(5 * time.Second)
	if m.Invalidate(context.Background(), second.Value) {
		t.Fatal("second forced refresh within 10s allowed")
	}
	if tok, _ := m.Token(ctx); tok.Value != second.Value {
		t.Fatalf("refused Invalidate dropped the token anyway")
	}
	clock.Advance(5 * time.Second)
	if !m.Invalidate(context.Background(), second.Value) {
		t.Fatal("forced refresh after 10s refused")
	}
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("exchanges = %d, want 2 before the next Token call", got)
	}
}

func TestManager_ReplaceKeepsOldCredentialsUntilNewOnesWork(t *testing.T) {
	clock := newFakeClock()
	oldSrc := &fakeSource{now: clock.Now, lifetime: time.Hour}
	m := NewManager("aem", oldSrc, Options{Now: clock.Now})
	ctx := context.Background()
	old, _ := m.Token(ctx)

	broken := &fakeSource{now: clock.Now, lifetime: time.Hour}
	broken.failWith(errIMSDown)
	if err := m.Replace(ctx, broken); err == nil {
		t.Fatal("Replace with failing credentials succeeded")
	}
	if tok, _ := m.Token(ctx); tok.Value != old.Value {
		t.Fatal("failed Replace changed the token")
	}

	newSrc := &fakeSource{now: clock.Now, lifetime: time.Hour}
	if err := m.Replace(ctx, newSrc); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour) // the next exchange must use the new source
	if _, err := m.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if oldSrc.calls.Load() != 1 || newSrc.calls.Load() != 2 {
		t.Fatalf("exchanges old=%d new=%d, want 1 and 2", oldSrc.calls.Load(), newSrc.calls.Load())
	}
}

func TestManager_RejectsAlreadyExpiredToken(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: 0}
	m := NewManager("stock", src, Options{Now: clock.Now})
	if _, err := m.Token(context.Background()); err == nil {
		t.Fatal("a token that is already expired was accepted")
	}
}

// TestManager_RefreshesAheadOfExpiry runs the real background loop with a
// 3-second token, as IMS tokens would behave at 1/28800 scale: the refresh
// must happen 1.5 s before the end, and no reader ever gets a token that is
// expired at the moment it is handed out.
func TestManager_RefreshesAheadOfExpiry(t *testing.T) {
	exchanges := make(chan Exchange, 8)
	src := &fakeSource{now: time.Now, lifetime: 3 * time.Second}
	m := NewManager("stock", src, Options{OnExchange: func(e Exchange) { exchanges <- e }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	first := <-exchanges
	if first.Err != nil {
		t.Fatal(first.Err)
	}

	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				readerDone <- nil
				return
			default:
			}
			tok, err := m.Token(ctx)
			if err != nil {
				readerDone <- err
				return
			}
			if !time.Now().Before(tok.Expiry) {
				readerDone <- fmt.Errorf("got a token that expired at %v", tok.Expiry)
				return
			}
		}
	}()

	var second Exchange
	select {
	case second = <-exchanges:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh within 10s")
	}
	close(stop)
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	if second.Err != nil {
		t.Fatal(second.Err)
	}
	left := first.Token.Expiry.Sub(second.Token.Obtained)
	if left <= 0 || left > 1600*time.Millisecond {
		t.Fatalf("refreshed %v before expiry, want about 1.5s (and never after)", left)
	}
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("exchanges = %d, want 2", got)
	}
}

func BenchmarkManager_Token(b *testing.B) {
	src := &fakeSource{now: time.Now, lifetime: time.Hour}
	m := NewManager("stock", src, Options{})
	ctx := context.Background()
	if _, err := m.Token(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Token(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// An exchange belongs to the Manager, not to the request that started it,
// but it ends with the Manager: a shutdown does not wait for IMS. Cut off
// so, it is not IMS's failure: no "token exchange failed" line (which said
// "IMS unreachable: context canceled", with a hint about DNS), no count.
func TestManager_ExchangeEndsWithRun(t *testing.T) {
	src := &fakeSource{lifetime: time.Hour, started: make(chan struct{}, 1), release: make(chan struct{})}
	src.now = time.Now
	opts, logs, reported := watched()
	opts.FetchTimeout = time.Hour
	m := NewManager("stock", src, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	<-src.started // Run's first exchange, which IMS does not answer
	got := make(chan error, 1)
	go func() { _, err := m.Token(context.Background()); got <- err }() // a request joins it
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the request waiting for the exchange got %v, want the cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the exchange outlived the Manager's context")
	}
	if n := reported.Load(); n != 0 || strings.Contains(logs.String(), "token exchange failed") {
		t.Errorf("an exchange cut off by the shutdown was reported %d times as an exchange:\n%s", n, logs)
	}
}

// With no valid token and an IMS that does not answer, a request waits
// Options.Wait, not the exchange's whole FetchTimeout, and learns that
// there is no token; the exchange goes on and serves the next request.
func TestManager_TokenWaitsAtMostWait(t *testing.T) {
	src := &fakeSource{now: time.Now, lifetime: time.Hour, started: make(chan struct{}, 1), release: make(chan struct{})}
	m := NewManager("stock", src, Options{FetchTimeout: time.Hour, Wait: 50 * time.Millisecond})
	start := time.Now()
	_, err := m.Token(context.Background())
	var unavailable *UnavailableError
	if !errors.As(err, &unavailable) || ErrorCode(err) != CodeUnreachable || unavailable.RetryAfter <= 0 {
		t.Fatalf("Token = %v, want an *UnavailableError saying IMS did not answer, with a Retry-After", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("Token waited %v for a hanging IMS, want about 50ms", waited)
	}
	<-src.started
	close(src.release) // IMS answers at last
	testutil.WaitFor(t, "the exchange to finish", func() bool { return m.Status().Ready })
	if _, err := m.Token(context.Background()); err != nil || src.calls.Load() != 1 {
		t.Fatalf("after the exchange: %v, %d exchanges; want the token of the one exchange", err, src.calls.Load())
	}
}

// A reload under way when the proxy stops is cut off like Run's own
// exchange: an error for the reload, no "token exchange failed" line.
func TestManager_ReplaceCutOffByTheStopIsNotAnIMSFailure(t *testing.T) {
	opts, logs, reported := watched()
	m := NewManager("stock", &fakeSource{now: time.Now, lifetime: time.Hour}, opts)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the stop, before IMS answered
	next := &fakeSource{now: time.Now, lifetime: time.Hour, release: make(chan struct{})}
	if err := m.Replace(ctx, next); !errors.Is(err, context.Canceled) {
		t.Fatalf("Replace = %v, want the cancellation", err)
	}
	if n := reported.Load(); n != 0 || strings.Contains(logs.String(), "token exchange failed") {
		t.Errorf("a reload cut off by the stop was reported %d times:\n%s", n, logs)
	}
}

// TestManager_StatusIsCurrentWhenAnExchangeIsReported holds what readiness
// and its tests rely on: whoever learns of an exchange (a metric, a log
// line) and then asks for the status sees that exchange's outcome, failed or
// not.
func TestManager_StatusIsCurrentWhenAnExchangeIsReported(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{now: clock.Now, lifetime: time.Hour}
	src.failWith(errIMSDown)
	m, seen := statusAtEachReport(clock, src)

	_, _ = m.Token(context.Background())
	src.recover()
	clock.Advance(time.Hour)
	if _, err := m.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(*seen) != 2 {
		t.Fatalf("%d exchanges reported, want 2", len(*seen))
	}
	if failed := (*seen)[0]; failed.Ready || failed.LastError == "" {
		t.Errorf("status when the failed exchange was reported = %+v, want its error", failed)
	}
	if recovered := (*seen)[1]; !recovered.Ready || recovered.LastError != "" {
		t.Errorf("status when the good exchange was reported = %+v, want ready without error", recovered)
	}
}

// The same holds for the exchange of reloaded credentials: when it is
// reported, the status shows the new token, not the failure it replaced.
func TestManager_StatusIsCurrentWhenAReloadIsReported(t *testing.T) {
	clock := newFakeClock()
	old := &fakeSource{now: clock.Now, lifetime: time.Hour}
	old.failWith(errIMSDown)
	m, seen := statusAtEachReport(clock, old)
	_, _ = m.Token(context.Background())

	if err := m.Replace(context.Background(), &fakeSource{now: clock.Now, lifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if len(*seen) != 2 {
		t.Fatalf("%d exchanges reported, want 2", len(*seen))
	}
	if reloaded := (*seen)[1]; !reloaded.Ready || reloaded.LastError != "" || !reloaded.Obtained.Equal(clock.Now()) {
		t.Errorf("status when the reload's exchange was reported = %+v, want the new token, ready, without error", reloaded)
	}
}

// watched returns Options that log to logs and count in reported each
// exchange the Manager reports.
func watched() (opts Options, logs *testutil.Buffer, reported *atomic.Int64) {
	logs, reported = &testutil.Buffer{}, &atomic.Int64{}
	return Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), OnExchange: func(Exchange) { reported.Add(1) }}, logs, reported
}

// statusAtEachReport returns a Manager of src that records, each time it
// reports an exchange, its Status at that moment.
func statusAtEachReport(clock *testutil.Clock, src Source) (*Manager, *[]Status) {
	var seen []Status
	var m *Manager
	m = NewManager("stock", src, Options{Now: clock.Now, OnExchange: func(Exchange) { seen = append(seen, m.Status()) }})
	return m, &seen
}
