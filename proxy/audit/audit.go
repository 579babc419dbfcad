// Package audit writes the audit log of licensing: one JSON line per
// attempt, allowed or refused, appended and synced to disk, from which the
// day's license count is rebuilt after a restart. A license forwarded to
// Stock has two lines: its attempt, on disk before the license is
// requested, and its outcome.
package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes of licensing attempts besides the code of a refusal: the audit
// log's "outcome" and the outcome label of imsproxy_licenses_total.
const (
	OutcomeLicensed        = "licensed"         // Stock licensed the content: credits may have been spent
	OutcomeAlreadyLicensed = "already_licensed" // the organisation held that license already; nothing spent
	OutcomeNotPossible     = "not_possible"     // Stock answered but did not license (no quota, cancelled)
	OutcomeFailed          = "failed"           // Stock refused (4xx), or the license was never sent
	OutcomeUnknown         = "unknown"          // no answer, or a 5xx: Stock may have licensed; counted
	OutcomeBadRequest      = "bad_request"      // content_id or license malformed, repeated or ambiguous
	OutcomeEditorialCheck  = "editorial_check_failed"

	// OutcomeAttempt marks the line written before a license is
	// forwarded; its outcome follows in a line with the same Attempt.
	OutcomeAttempt = "attempt"
	// OutcomeLogReopened marks the line that starts a file reopened
	// after the log was deleted, replaced or truncated: DayLicenses
	// carries the route's count of the day over from the lost lines.
	OutcomeLogReopened = "log_reopened"
)

// Counts reports whether an outcome counts toward the daily limit: a
// license was made, or may have been.
func Counts(outcome string) bool { return outcome == OutcomeLicensed || outcome == OutcomeUnknown }

// Record is one line of the audit log: one licensing attempt, allowed or
// refused. It holds no secret: the caller is named, never its key, and no
// token or URL with a token is written.
type Record struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Route     string    `json:"route"`
	// Caller is the callers-file name; "" when no callers file is set.
	Caller string `json:"caller"`
	Remote string `json:"remote"` // the caller's IP address
	Method string `json:"method"`
	// ContentID and License are the request's content_id and license;
	// "" when absent or malformed.
	ContentID    string `json:"content_id"`
	License      string `json:"license"`
	LicenseAgain bool   `json:"license_again,omitempty"`
	// Editorial is what the editorial guard found: "no", "yes", "override"
	// (the caller sent X-Imsproxy-Allow-Editorial: true) or "unknown".
	Editorial string `json:"editorial,omitempty"`
	// Outcome is one of the licensing outcomes (licensed, already_licensed,
	// not_possible, failed, or the code of the proxy's refusal).
	Outcome string `json:"outcome"`
	// Status is the status the caller got; UpstreamStatus the one Stock
	// answered (0: the request was not answered by Stock).
	Status         int `json:"status"`
	UpstreamStatus int `json:"upstream_status"`
	// PurchaseState is Stock's purchase_details.state for the content.
	PurchaseState string `json:"purchase_state,omitempty"`
	// Attempt pairs the attempt line of a forwarded license with its
	// outcome line (NewAttemptID).
	Attempt string `json:"attempt,omitempty"`
	// DayLicenses is, on a log_reopened line, the route's count of the
	// day so far.
	DayLicenses int `json:"day_licenses,omitempty"`
}

// attemptPrefix makes attempt ids unique across restarts; attemptSeq
// within a process.
var (
	attemptPrefix = func() string {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}()
	attemptSeq atomic.Uint64
)

// NewAttemptID returns an id for a license attempt, unique to it (the
// request id is the caller's to choose, so it may repeat).
func NewAttemptID() string {
	return attemptPrefix + "-" + strconv.FormatUint(attemptSeq.Add(1), 10)
}

// Log appends Records as JSON lines to IMSPROXY_AUDIT_LOG (or stdout for
// "-"). Each line is written whole with O_APPEND and fsync'd
// before Write returns, so a line is on disk once the caller has its answer.
// A file deleted, replaced (rotated by renaming) or truncated while the
// proxy runs is noticed at the next line and reopened at its path.
type Log struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	w       io.Writer
	file    *os.File // nil for stdout
	written int64    // the file's size after the last line: less means truncated
	torn    bool     // a write failed midway: the file may end inside a line

	// The licenses counted by day and route (Counts): rebuilt from the
	// file at start (the daily limit's count after a restart), kept up
	// to date by Write, and carried into a reopened file.
	day       string
	dayCounts map[string]int
	// dangling is how many of the day's licenses were found at start
	// with an attempt line but no outcome: the process stopped while
	// Stock was asked.
	dangling int
}

// Open opens (creating it, mode 0600) the audit log at path, "-" meaning
// stdout, and counts the licenses of now's UTC day already in it.
func Open(path string, now time.Time, log *slog.Logger) (*Log, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Log{path: path, log: log, day: UTCDay(now), dayCounts: map[string]int{}}
	if path == "-" {
		a.w = os.Stdout
		return a, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	a.w, a.file = f, f
	if err := a.countDay(now); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("read %s to count today's licenses: %w", path, err)
	}
	if info, err := f.Stat(); err == nil {
		a.written = info.Size()
	}
	if a.dangling > 0 {
		log.Warn("licenses were being requested when the proxy stopped; their outcome is unknown and they count toward today's limit",
			"path", path, "licenses", a.dangling)
	}
	return a, nil
}

// Write appends rec as one line. An error is also logged: the attempt has
// happened, and the operator must know its line is missing. A caller
// that must not go on without its line (a license about to be
// requested) checks the error.
func (a *Log) Write(rec Record) error {
	if a == nil {
		return nil
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err // cannot happen: only strings, numbers and a time
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	err = a.reopenIfGone(rec.Time)
	if err == nil {
		err = a.writeLine(line)
	}
	if err != nil {
		a.log.Error("audit log write failed: a licensing attempt is not recorded", "path", a.path,
			"request_id", rec.RequestID, "route", rec.Route, "outcome", rec.Outcome, "error", err)
		return err
	}
	if Counts(rec.Outcome) {
		a.rollLocked(rec.Time)
		a.dayCounts[rec.Route]++
	}
	return nil
}

// writeLine appends line and a newline and syncs the file. After a write
// that failed midway, the next line starts on a line of its own.
func (a *Log) writeLine(line []byte) error {
	buf := make([]byte, 0, len(line)+2)
	if a.torn {
		buf = append(buf, '\n')
	}
	buf = append(append(buf, line...), '\n')
	n, err := a.w.Write(buf)
	a.written += int64(n)
	if err != nil {
		a.torn = a.torn || n > 0
		return err
	}
	a.torn = false
	if a.file != nil {
		return a.file.Sync()
	}
	return nil
}

// reopenIfGone reopens the file at its path when the one open is no
// longer there (deleted, or renamed by a rotation) or was truncated, and
// starts it with each route's count of the day at now, so that a restart
// still counts the licenses whose lines are gone.
func (a *Log) reopenIfGone(now time.Time) error {
	if a.file == nil {
		return nil // stdout
	}
	onDisk, errPath := os.Stat(a.path)
	open, errOpen := a.file.Stat()
	if errPath == nil && errOpen == nil && os.SameFile(onDisk, open) && open.Size() >= a.written {
		return nil
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	_ = a.file.Close()
	a.w, a.file, a.torn, a.written = f, f, false, 0
	if info, err := f.Stat(); err == nil {
		a.written = info.Size()
	}
	a.log.Warn("the audit log was deleted, replaced or truncated; reopened at its path, with today's license counts carried over", "path", a.path)
	a.rollLocked(now)
	for _, route := range slices.Sorted(maps.Keys(a.dayCounts)) {
		if n := a.dayCounts[route]; n > 0 {
			line, _ := json.Marshal(Record{Time: now.UTC(), Route: route, Outcome: OutcomeLogReopened, DayLicenses: n})
			if err := a.writeLine(line); err != nil {
				return err
			}
		}
	}
	return nil
}

// rollLocked starts the counts of a new UTC day.
func (a *Log) rollLocked(now time.Time) {
	if day := UTCDay(now); day != a.day {
		a.day = day
		clear(a.dayCounts)
	}
}

// Close closes the file (stdout stays open).
func (a *Log) Close() error {
	if a == nil || a.file == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.file.Close()
}

// LicensesOn is how many licenses route made, or may have made, on day
// (0 for a day other than the one counted).
func (a *Log) LicensesOn(day, route string) int {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if day != a.day {
		return 0
	}
	return a.dayCounts[route]
}

// countDay counts the day's licenses per route — licensed and unknown
// outcomes, and attempts without an outcome line (the process stopped
// while Stock was asked) — reading the file backwards from its end until
// the lines are from an earlier day: the cost is that of one day's lines,
// however old the log is. A log_reopened line carries the count of the
// lines before it.
func (a *Log) countDay(now time.Time) error {
	info, err := a.file.Stat()
	if err != nil {
		return err
	}
	start := StartOfUTCDay(now)
	// Lines are appended in time order; an hour of slack absorbs a clock
	// stepped back around midnight.
	stop := start.Add(-time.Hour)
	r, err := os.Open(a.path)
	if err != nil {
		return err
	}
	defer r.Close()
	answered := map[string]bool{} // attempts whose outcome line was read
	carried := map[string]bool{}  // routes whose earlier lines a log_reopened line counts
	return scanLinesBackward(r, info.Size(), func(line []byte) bool {
		var rec struct {
			Time        time.Time `json:"time"`
			Route       string    `json:"route"`
			Outcome     string    `json:"outcome"`
			Attempt     string    `json:"attempt"`
			DayLicenses int       `json:"day_licenses"`
		}
		if json.Unmarshal(line, &rec) != nil {
			return true // a torn line after a crash or a full disk: not a license
		}
		if rec.Time.Before(stop) {
			return false
		}
		if carried[rec.Route] {
			return true
		}
		today := !rec.Time.Before(start)
		switch {
		case rec.Outcome == OutcomeAttempt:
			if today && !answered[rec.Attempt] {
				a.dayCounts[rec.Route]++
				a.dangling++
			}
		case rec.Outcome == OutcomeLogReopened:
			if today {
				a.dayCounts[rec.Route] += rec.DayLicenses
				carried[rec.Route] = true
			}
		default:
			if rec.Attempt != "" {
				answered[rec.Attempt] = true
			}
			if today && Counts(rec.Outcome) {
				a.dayCounts[rec.Route]++
			}
		}
		return true
	})
}

// maxAuditLine bounds a line while reading backwards; real lines are a few
// hundred bytes, so a longer one is skipped as garbage.
const maxAuditLine = 1 << 20

// scanLinesBackward calls fn with each non-empty line of the first size
// bytes of r, last line first, until fn returns false.
func scanLinesBackward(r io.ReaderAt, size int64, fn func(line []byte) bool) error {
	const block = 64 << 10
	var carry []byte  // the start of a line whose end has been read
	skipping := false // the line being read is over maxAuditLine: no record, passed over
	for end := size; end > 0; {
		start := max(0, end-block)
		buf := make([]byte, end-start, int(end-start)+len(carry))
		if _, err := r.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		buf = append(buf, carry...)
		lines := bytes.Split(buf, []byte{'\n'})
		first := 1 // lines[0] may continue in the block before
		if start == 0 {
			first = 0
		}
		for i := len(lines) - 1; i >= first; i-- {
			if skipping {
				skipping = false // the start of the long line
				continue
			}
			if len(lines[i]) > 0 && !fn(lines[i]) {
				return nil
			}
		}
		carry = lines[0]
		if start > 0 && len(carry) > maxAuditLine {
			// Not a record (they are a few hundred bytes): garbage left
			// by something else writing to the file. It is skipped
			// rather than refused, so that the proxy starts.
			carry, skipping = nil, true
		}
		end = start
	}
	return nil
}

// StartOfUTCDay is midnight UTC of t's day.
func StartOfUTCDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// UTCDay names t's UTC day, 2006-01-02.
func UTCDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }
