package tokens

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// countingStatic counts the reads of a StaticSource.
type countingStatic struct {
	*StaticSource
	calls atomic.Int64
}

func (s *countingStatic) Fetch(ctx context.Context) (Token, error) {
	s.calls.Add(1)
	return s.StaticSource.Fetch(ctx)
}

// A fixed token past its refresh point cannot be refreshed: the background
// loop must wait for its end instead of reading it again and again (it once
// logged "token obtained" thousands of times a second for the last 2 h 24 min
// of a local development token). Near its end it is reported expired.
func TestManager_FixedTokenIsNotReadInALoop(t *testing.T) {
	clock := newFakeClock()
	tok := unsignedJWT(t, map[string]any{
		"created_at": strconv.FormatInt(clock.Now().UnixMilli(), 10), "expires_in": "3600000"})
	static, err := newStaticSource(config.Secret(tok), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	src := &countingStatic{StaticSource: static}
	m := NewManager("aem", src, Options{Kind: "token", Now: clock.Now})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitCalls := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for src.calls.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d reads of the fixed token, want %d", src.calls.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitCalls(1)
	clock.Advance(55 * time.Minute) // past the refresh point (6 min before the end)
	m.wake()
	waitCalls(2)
	// Run now sleeps until the token's end instead of reading it again
	// at once, over and over.
	if d := m.untilNextAction(); d <= 0 {
		t.Fatalf("after the refresh point the loop waits %v: it would spin", d)
	}
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("the fixed token was read %d times, want 2 (at start, at its refresh point)", got)
	}
	if _, err := m.Token(ctx); err != nil {
		t.Fatalf("the token is still usable: %v", err)
	}

	clock.Advance(5*time.Minute - 5*time.Second) // inside the 10 s safety margin
	_, err = m.Token(ctx)
	if ErrorCode(err) != CodeTokenExpired {
		t.Fatalf("Token near the end: %v (code %q), want %s", err, ErrorCode(err), CodeTokenExpired)
	}
}

// A fixed token that is not an IMS JWT has no known expiry: the log says
// so instead of a duration computed from the zero time.
func TestManager_LogsUnknownExpiryOfFixedToken(t *testing.T) {
	static, err := newStaticSource(config.Secret("opaque-local-token"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	// Token returns after the exchange it waited for was logged; nothing
	// else logs (Run is not started).
	var logs bytes.Buffer
	m := NewManager("gen", static, Options{Kind: "token", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, err := m.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	line := logs.String()
	if !strings.Contains(line, `msg="token obtained"`) || !strings.Contains(line, "expires_in=unknown") {
		t.Errorf("log = %q, want a token obtained line with expires_in=unknown", line)
	}
	if strings.Contains(line, "opaque-local-token") {
		t.Errorf("the log repeats the token: %q", line)
	}
}
