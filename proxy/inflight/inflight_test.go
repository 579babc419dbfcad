package inflight

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

func TestLimiter_ReserveStaysWithinTheBound(t *testing.T) {
	l := New(100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 50 {
		wg.Go(func() {
			if l.Reserve(7) {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted != 14 || l.Used() != 98 {
		t.Fatalf("%d reservations of 7 granted (%d bytes held) under a bound of 100, want 14", granted, l.Used())
	}
	if l.Reserve(3) {
		t.Fatal("3 more bytes granted past the bound")
	}
	l.Release(98)
	if !l.Reserve(100) || l.Reserve(1) {
		t.Fatal("the whole bound not granted once free, or granted twice")
	}
}

func TestLimiter_ChargeCountsBytesAlreadyHeld(t *testing.T) {
	l := New(10)
	l.Charge(15)
	if l.Reserve(1) {
		t.Fatal("granted past a bound already exceeded")
	}
	l.Release(15)
	if !l.Reserve(10) {
		t.Fatal("the bound is not free again after the charge was released")
	}
}

func TestLimiter_WaitGetsRoomWhenReleased(t *testing.T) {
	l := New(10)
	if !l.Reserve(8) {
		t.Fatal("first reservation refused")
	}
	got := make(chan error, 1)
	go func() { got <- l.Wait(context.Background(), 5) }()
	testutil.WaitFor(t, "Wait to sleep", func() bool { return l.waiting.Load() == 1 })
	select {
	case err := <-got:
		t.Fatalf("Wait returned (%v) with only 2 bytes free", err)
	default:
	}
	l.Release(8)
	select {
	case err := <-got:
		if err != nil || l.Used() != 5 {
			t.Fatalf("Wait: %v, %d bytes held", err, l.Used())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait still waiting after the bytes were released")
	}
}

func TestLimiter_WaitEndsWithItsContext(t *testing.T) {
	l := New(10)
	l.Charge(10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 1); err != context.DeadlineExceeded {
		t.Fatalf("Wait = %v, want the context's deadline", err)
	}
	if l.Used() != 10 {
		t.Fatalf("%d bytes held after a Wait that gave up, want 10", l.Used())
	}
}

// More than the whole bound (an answer larger than it) is taken from an
// empty limiter rather than never.
func TestLimiter_WaitForMoreThanTheBound(t *testing.T) {
	l := New(10)
	l.Charge(1)
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background(), 25) }()
	l.Release(1)
	select {
	case err := <-done:
		if err != nil || l.Used() != 25 {
			t.Fatalf("Wait: %v, %d held", err, l.Used())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a wait for more than the bound never ended")
	}
}

// Many waiters and releasers at once: every wait ends, nothing leaks.
func TestLimiter_ConcurrentWaitsAllEnd(t *testing.T) {
	l := New(64)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			n := 1 + i%32
			if err := l.Wait(context.Background(), n); err != nil {
				t.Error(err)
				return
			}
			if l.Used() > 64 {
				t.Errorf("%d bytes held under a bound of 64", l.Used())
			}
			l.Release(n)
		})
	}
	wg.Wait()
	if l.Used() != 0 {
		t.Fatalf("%d bytes still held after every release", l.Used())
	}
}
