package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults of Options.
const (
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 60 * time.Second
	DefaultForceInterval = 10 * time.Second
	DefaultFetchTimeout  = 30 * time.Second
	DefaultWait          = 5 * time.Second
)

// Options tunes a Manager. The zero value is the production behaviour.
type Options struct {
	Kind   string           // auth kind, for Status and logs
	Now    func() time.Time // clock; nil = time.Now
	Logger *slog.Logger     // nil = discard

	// OnExchange, when set, is called after every exchange (metrics), once
	// its outcome is recorded: Status read from it shows that exchange,
	// unless Replace swapped the credentials while it ran (its outcome
	// then belongs to the old ones and is not recorded).
	OnExchange func(Exchange)

	MinBackoff    time.Duration // first retry delay after a failed exchange
	MaxBackoff    time.Duration // cap of the exponential backoff
	ForceInterval time.Duration // at most one forced refresh per interval
	FetchTimeout  time.Duration // bound on one exchange
	// Wait bounds how long Token waits for an exchange when no token is
	// valid: the exchange goes on, but the request is answered.
	Wait time.Duration
}

// Exchange describes one completed call to a Source.
type Exchange struct {
	Route    string
	Kind     string
	Err      error // nil on success
	Duration time.Duration
	Token    Token // zero on failure
}

// UnavailableError is returned by Manager.Token when there is no valid token
// and IMS failed: it wraps the last exchange error (use errors.As to reach
// an *IMSError) and says when the next attempt is due.
type UnavailableError struct {
	Route      string
	RetryAfter time.Duration
	Err        error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("no valid token for route %s: %v", e.Route, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Status is a snapshot of a Manager for /readyz and `imsproxy check`.
type Status struct {
	Route       string    `json:"-"`
	Kind        string    `json:"auth"`
	Ready       bool      `json:"ready"`
	Expiry      time.Time `json:"token_expiry,omitzero"`
	Obtained    time.Time `json:"token_obtained,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	NextRetry   time.Time `json:"next_retry,omitzero"`
}

// Manager holds one route's token. Token reads are lock-free; at most one
// exchange runs at a time; a background loop (Run) refreshes ahead of expiry
// and retries failures with exponential backoff and jitter.
type Manager struct {
	route string
	opts  Options
	now   func() time.Time
	log   *slog.Logger

	current atomic.Pointer[Token] // nil: no token (not yet, or dropped)
	group   singleflight.Group
	kick    chan struct{} // wakes Run after a state change; buffered 1
	// life is Run's context: an exchange belongs to no single request
	// (every waiter shares it) but ends with the Manager.
	life atomic.Pointer[context.Context]

	mu         sync.Mutex // guards the fields below
	src        Source
	gen        uint64 // incremented by Replace; stale exchanges are discarded
	lastErr    error
	lastErrAt  time.Time
	failures   int
	nextRetry  time.Time
	lastForced time.Time
	// unchanged: the last refresh returned the token already held (a
	// fixed token, or an IMS that hands out the same one), so asking
	// again before it stops being usable would only return it again.
	unchanged bool
}

// NewManager returns a Manager for route that obtains tokens from src.
func NewManager(route string, src Source, opts Options) *Manager {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.ForceInterval <= 0 {
		opts.ForceInterval = DefaultForceInterval
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	m := &Manager{
		route: route,
		opts:  opts,
		now:   opts.Now,
		log:   opts.Logger,
		src:   src,
		kick:  make(chan struct{}, 1),
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m
}

// Token returns a valid token. While the cached one is valid it returns at
// once without locking or allocating; otherwise it joins the one exchange in
// flight (or starts it). While IMS is failing and no valid token remains it
// returns an *UnavailableError at once instead of hammering IMS: the
// background loop owns the retries. It waits at most Options.Wait for an
// exchange: an IMS that hangs does not hold every request for the whole
// FetchTimeout.
func (m *Manager) Token(ctx context.Context) (Token, error) {
	now := m.now()
	if t := m.current.Load(); t != nil && usable(t, now) {
		return *t, nil
	}
	m.mu.Lock()
	lastErr, nextRetry := m.lastErr, m.nextRetry
	m.mu.Unlock()
	if lastErr != nil && now.Before(nextRetry) {
		return Token{}, &UnavailableError{Route: m.route, RetryAfter: nextRetry.Sub(now), Err: lastErr}
	}
	ch := m.group.DoChan("refresh", m.refresh)
	wait := time.NewTimer(m.opts.Wait)
	defer wait.Stop()
	select {
	case r := <-ch:
		if r.Err != nil {
			return Token{}, r.Err
		}
		return r.Val.(Token), nil
	case <-wait.C:
		return Token{}, &UnavailableError{Route: m.route, RetryAfter: time.Second, Err: &IMSError{
			Code: CodeUnreachable, Err: fmt.Errorf("no answer within %v; the exchange goes on", m.opts.Wait)}}
	case <-ctx.Done():
		return Token{}, ctx.Err()
	}
}

// Invalidate drops the token whose value is value after the upstream
// rejected it, so the next Token call fetches a new one. It reports whether
// the caller may retry with a fresh token: false when a forced refresh
// already happened within ForceInterval (IMS is not asked again).
func (m *Manager) Invalidate(ctx context.Context, value string) bool {
	cur := m.current.Load()
	if cur == nil || cur.Value != value {
		return true // already replaced: the current token is a new one
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.lastForced.IsZero() && now.Sub(m.lastForced) < m.opts.ForceInterval {
		return false
	}
	m.lastForced = now
	if m.current.CompareAndSwap(cur, nil) {
		m.log.LogAttrs(ctx, slog.LevelWarn, "upstream rejected the token; fetching a new one", slog.String("route", m.route))
		if r, ok := m.src.(rejecter); ok {
			r.Rejected(value)
		}
	}
	return true
}

// Replace swaps in a new Source (reloaded credentials) once it has produced
// a valid token; on error the old Source and token stay in use.
func (m *Manager) Replace(ctx context.Context, src Source) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.FetchTimeout)
	defer cancel()
	start := m.now()
	tok, err := src.Fetch(ctx)
	if err == nil {
		err = m.checkFresh(tok)
	}
	exchange := Exchange{Route: m.route, Kind: m.opts.Kind, Err: err, Duration: m.now().Sub(start), Token: tok}
	if err != nil {
		if !stoppedBy(ctx, err) {
			m.report(exchange) // nothing to record: the old credentials stay
		}
		return fmt.Errorf("new credentials for route %s: %w", m.route, err)
	}
	m.mu.Lock()
	m.src = src
	m.gen++
	m.unchanged = false
	m.clearFailureLocked()
	m.current.Store(&tok)
	m.mu.Unlock()
	// Reported once recorded, as refresh does: whoever learns of the new
	// token and then reads the status sees it.
	m.report(exchange)
	m.wake()
	return nil
}

// stoppedBy reports whether err is the cancellation of ctx, the
// Manager's or the reload's, that the proxy's stop caused: an exchange cut
// off so is no failure of IMS, to be neither logged as one nor counted.
// IMS's own answer arriving at that moment is still reported.
func stoppedBy(ctx context.Context, err error) bool {
	return err != nil && errors.Is(ctx.Err(), context.Canceled) && errors.Is(err, context.Canceled)
}

// Status returns a snapshot for readiness reporting.
func (m *Manager) Status() Status {
	now := m.now()
	s := Status{Route: m.route, Kind: m.opts.Kind}
	if t := m.current.Load(); t != nil {
		s.Ready = usable(t, now)
		s.Expiry, s.Obtained = t.Expiry, t.Obtained
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastErr != nil {
		s.LastError = m.lastErr.Error()
		s.LastErrorAt = m.lastErrAt
		s.NextRetry = m.nextRetry
	}
	return s
}

// Run fetches the first token at once, then refreshes ahead of expiry and
// retries failures until ctx is done. Start it once per Manager.
func (m *Manager) Run(ctx context.Context) {
	m.life.Store(&ctx)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-timer.C:
			select {
			case <-m.group.DoChan("refresh", m.refresh):
			case <-ctx.Done():
				return
			}
		}
		timer.Reset(m.untilNextAction())
	}
}

// untilNextAction is how long Run sleeps: until the retry after a failure,
// until the refresh point of the current token, or at once without a token.
func (m *Manager) untilNextAction() time.Duration {
	const forever = 24 * time.Hour * 365
	now := m.now()
	m.mu.Lock()
	lastErr, nextRetry, unchanged := m.lastErr, m.nextRetry, m.unchanged
	m.mu.Unlock()
	if lastErr != nil {
		return max(nextRetry.Sub(now), 0)
	}
	t := m.current.Load()
	switch {
	case t == nil:
		return 0
	case t.Expiry.IsZero():
		return forever // a fixed token without expiry: nothing to refresh
	case unchanged:
		return max(usableUntil(t).Sub(now), 0)
	default:
		return max(t.Expiry.Add(-refreshLead(t.Lifetime())).Sub(now), 0)
	}
}

// refresh performs one exchange unless the current token is still before
// its refresh point (a caller that queued behind a finished exchange, or a
// Run wake-up that raced with one). It runs inside the singleflight group,
// so any number of callers share one exchange.
func (m *Manager) refresh() (any, error) {
	now := m.now()
	if t := m.current.Load(); t != nil && usable(t, now) && !refreshDue(t, now) {
		return *t, nil
	}
	m.mu.Lock()
	src, gen := m.src, m.gen
	m.mu.Unlock()

	// The exchange outlives any one request: it is shared by all waiters,
	// so it runs in the Manager's context (Run's), bounded, rather than in
	// the first caller's.
	life := context.Background()
	if p := m.life.Load(); p != nil {
		life = *p
	}
	ctx, cancel := context.WithTimeout(life, m.opts.FetchTimeout)
	defer cancel()
	tok, err := src.Fetch(ctx)
	if err == nil {
		err = m.checkFresh(tok)
	}
	if stoppedBy(life, err) {
		return Token{}, &UnavailableError{Route: m.route, Err: err}
	}
	exchange := Exchange{Route: m.route, Kind: m.opts.Kind, Err: err, Duration: m.now().Sub(now), Token: tok}

	// The outcome is recorded before it is reported, so that whoever learns
	// of the exchange from a log line or a metric and then reads the status
	// sees it.
	defer m.wake()
	defer m.report(exchange)
	m.mu.Lock()
	defer m.mu.Unlock()
	if gen != m.gen {
		// Credentials were replaced while this exchange ran: its result
		// belongs to the old ones.
		if t := m.current.Load(); t != nil {
			return *t, nil
		}
		return Token{}, &UnavailableError{Route: m.route, Err: errors.New("credentials replaced during exchange")}
	}
	if err != nil {
		m.failures++
		m.lastErr, m.lastErrAt = err, m.now()
		delay := backoff(m.failures, m.opts.MinBackoff, m.opts.MaxBackoff)
		m.nextRetry = m.lastErrAt.Add(delay)
		if t := m.current.Load(); t != nil && usable(t, m.lastErrAt) {
			return *t, nil // keep serving with the old token
		}
		return Token{}, &UnavailableError{Route: m.route, RetryAfter: delay, Err: err}
	}
	m.clearFailureLocked()
	prev := m.current.Load()
	m.unchanged = prev != nil && prev.Value == tok.Value
	m.current.Store(&tok)
	return tok, nil
}

func (m *Manager) clearFailureLocked() {
	m.failures = 0
	m.lastErr = nil
	m.lastErrAt = time.Time{}
	m.nextRetry = time.Time{}
}

// checkFresh rejects a token that is already unusable (an IMS answer with a
// zero lifetime, or a clock far off): storing it would make Run spin.
func (m *Manager) checkFresh(t Token) error {
	if t.Value == "" {
		return errors.New("IMS returned an empty access token")
	}
	if !usable(&t, m.now()) {
		return fmt.Errorf("IMS returned a token that expires at %s, which is already past (check the clock)", t.Expiry.UTC().Format(time.RFC3339))
	}
	return nil
}

func (m *Manager) report(e Exchange) {
	if e.Err != nil {
		attrs := []any{"route", m.route, "auth", m.opts.Kind, "duration", e.Duration, "error", e.Err}
		var h interface{ Hint() string }
		if errors.As(e.Err, &h) && h.Hint() != "" {
			attrs = append(attrs, "hint", h.Hint())
		}
		m.log.Warn("token exchange failed", attrs...)
	} else {
		// A fixed token that is not an IMS JWT has no known expiry.
		var expiresIn any = "unknown"
		if !e.Token.Expiry.IsZero() {
			expiresIn = e.Token.Expiry.Sub(m.now()).Round(time.Second)
		}
		msg := "token obtained"
		if e.Token.FromFleet {
			msg = "token obtained from the fleet's store in Redis"
		}
		m.log.Info(msg, "route", m.route, "auth", m.opts.Kind, "duration", e.Duration, "expires_in", expiresIn)
	}
	if m.opts.OnExchange != nil {
		m.opts.OnExchange(e)
	}
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// usable reports whether t may still be sent upstream at now. A safety
// margin keeps a token that is about to expire from dying in transit.
func usable(t *Token, now time.Time) bool {
	return t.Expiry.IsZero() || now.Before(usableUntil(t))
}

// usableUntil is when t stops being usable: its expiry less the safety
// margin (a tenth of its lifetime, at most 10 s). t must have an expiry.
func usableUntil(t *Token) time.Time {
	return t.Expiry.Add(-min(t.Lifetime()/10, 10*time.Second))
}

// refreshDue reports whether t has reached its refresh point.
func refreshDue(t *Token, now time.Time) bool {
	if t.Expiry.IsZero() {
		return false
	}
	return !now.Before(t.Expiry.Add(-refreshLead(t.Lifetime())))
}

// refreshLead is how long before expiry a token is refreshed:
// min(lifetime/2, max(lifetime/10, 5 min)) — 2h24m before the end of a 24 h
// token, 1.5 s before the end of a 3 s one.
func refreshLead(lifetime time.Duration) time.Duration {
	return min(lifetime/2, max(lifetime/10, 5*time.Minute))
}

// backoff is the delay before retry number failures (1, 2, ...): exponential
// from lo, capped at hi, with "equal jitter" (half fixed, half random) so
// many proxies restarted together do not retry in lockstep.
func backoff(failures int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return max(d/2+rand.N(d/2+1), lo)
}
