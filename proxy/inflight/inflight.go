// Package inflight bounds the memory that all requests together hold for
// answers being cached or rewritten (IMSPROXY_MAX_INFLIGHT_BYTES): the
// search cache's captures, the AEM link rewriter's held answers, the Stock
// licensing answers held until their outcome is known. Without it, many
// callers that ask for large answers and never read them would each pin
// their answer in memory.
package inflight

import (
	"context"
	"sync"
	"sync/atomic"
)

// Limiter counts the bytes held against a fixed bound. It is safe for
// concurrent use; Reserve and Release never block.
type Limiter struct {
	max  int64
	used atomic.Int64

	// Waiters (Wait) sleep on wake, which Release closes and replaces
	// when anyone waits.
	waiting atomic.Int64
	mu      sync.Mutex
	wake    chan struct{}
}

// New returns a Limiter of max bytes.
func New(max int64) *Limiter {
	return &Limiter{max: max, wake: make(chan struct{})}
}

// Reserve takes n bytes if they fit under the bound and reports whether
// it did. What is reserved is given back with Release.
func (l *Limiter) Reserve(n int) bool {
	for {
		used := l.used.Load()
		if used+int64(n) > l.max {
			return false
		}
		if l.used.CompareAndSwap(used, used+int64(n)) {
			return true
		}
	}
}

// Charge counts n bytes that are held already, whether or not they fit
// (a cached answer evicted while still being written to a caller): the
// bound is then exceeded until they are released, and Reserve refuses
// meanwhile.
func (l *Limiter) Charge(n int) { l.used.Add(int64(n)) }

// Release gives back n bytes taken by Reserve, Charge or Wait.
func (l *Limiter) Release(n int) {
	l.used.Add(-int64(n))
	if l.waiting.Load() > 0 {
		l.mu.Lock()
		close(l.wake)
		l.wake = make(chan struct{})
		l.mu.Unlock()
	}
}

// Wait reserves n bytes, waiting for room until ctx is done (then it
// returns ctx's error and holds nothing). More than the whole bound is
// taken only from an empty limiter, which it then exceeds.
func (l *Limiter) Wait(ctx context.Context, n int) error {
	for {
		if l.take(int64(n)) {
			return nil
		}
		l.mu.Lock()
		wake := l.wake
		l.waiting.Add(1)
		l.mu.Unlock()
		// Bytes released between the take above and the registration
		// woke nobody: look once more before sleeping.
		if l.take(int64(n)) {
			l.waiting.Add(-1)
			return nil
		}
		select {
		case <-wake:
			l.waiting.Add(-1)
		case <-ctx.Done():
			l.waiting.Add(-1)
			return ctx.Err()
		}
	}
}

func (l *Limiter) take(n int64) bool {
	if n > l.max {
		return l.used.CompareAndSwap(0, n)
	}
	return l.Reserve(int(n))
}

// Used is the number of bytes held now.
func (l *Limiter) Used() int64 { return l.used.Load() }
