package stock

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/imsproxy/imsproxy/proxy/audit"
)

// Budget is a route's LICENSE_DAILY_LIMIT: at most that many licenses a
// UTC day. A license holds a slot from before it is forwarded until its
// outcome is known, so that concurrent calls cannot overshoot the limit
// together.
type Budget interface {
	// Reserve takes a slot, or returns a *SpentError when the day's
	// licenses are made. Any other error means the budget could not be
	// asked: the license is refused. rec is the attempt's audit record so
	// far: a budget shared by a fleet audits a slot that is never settled
	// (its replica died) with it.
	Reserve(ctx context.Context, rec audit.Record) (Slot, error)
}

// Slot is one reserved license.
type Slot interface {
	// Settle gives the slot back, counting a license when counted is true
	// (one was made, or may have been). rec is the attempt's audit record:
	// a budget shared by a fleet appends it to the fleet's audit trail in
	// the same step, and then reports recorded.
	Settle(ctx context.Context, counted bool, rec audit.Record) (recorded bool)
}

// SpentError says that the day's licenses are made.
type SpentError struct {
	Limit      int
	RetryAfter time.Duration // until the next UTC day
}

func (e *SpentError) Error() string {
	return "the " + strconv.Itoa(e.Limit) + " licenses of the day are made"
}

var (
	_ Budget = (*DailyLimit)(nil)
	_ Budget = unlimited{}
	_ Slot   = dailySlot{}
)

// DailyLimit is a Budget kept in this process, its count rebuilt from the
// audit log at start.
type DailyLimit struct {
	max int
	now func() time.Time

	mu       sync.Mutex
	day      string
	count    int // licenses made on day
	inflight int // calls forwarded and not yet settled
}

// NewDailyLimit allows max licenses a UTC day on the clock now, of which
// madeToday are made already.
func NewDailyLimit(max int, now func() time.Time, madeToday int) *DailyLimit {
	if now == nil {
		now = time.Now
	}
	return &DailyLimit{max: max, now: now, day: audit.UTCDay(now()), count: madeToday}
}

// Reserve implements Budget.
func (l *DailyLimit) Reserve(context.Context, audit.Record) (Slot, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(now)
	if l.count+l.inflight >= l.max {
		return nil, &SpentError{Limit: l.max, RetryAfter: audit.StartOfUTCDay(now).Add(24 * time.Hour).Sub(now)}
	}
	l.inflight++
	return dailySlot{l}, nil
}

type dailySlot struct{ l *DailyLimit }

func (s dailySlot) Settle(_ context.Context, counted bool, _ audit.Record) bool {
	l := s.l
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(now)
	l.inflight--
	if counted {
		l.count++
	}
	return false
}

// rollLocked starts a new count at midnight UTC.
func (l *DailyLimit) rollLocked(now time.Time) {
	if day := audit.UTCDay(now); day != l.day {
		l.day, l.count = day, 0
	}
}

// Remaining is how many licenses may still be made today, those in flight
// counted.
func (l *DailyLimit) Remaining(context.Context) (int, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rollLocked(now)
	return max(l.max-l.count-l.inflight, 0), true
}

// unlimited is the Budget of a route without LICENSE_DAILY_LIMIT.
type unlimited struct{}

func (unlimited) Reserve(context.Context, audit.Record) (Slot, error) { return unlimited{}, nil }
func (unlimited) Settle(context.Context, bool, audit.Record) bool     { return false }
