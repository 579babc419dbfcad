// Package audit writes the audit log of licensing: one JSON line per
// attempt, allowed or refused, appended and synced to disk, from which the
// day's license count is rebuilt after a restart.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Outcomes of licensing attempts besides the code of a refusal: the audit
// log's "outcome" and the outcome label of imsproxy_licenses_total.
const (
	OutcomeLicensed        = "licensed"         // Stock licensed the content: credits may have been spent
	OutcomeAlreadyLicensed = "already_licensed" // the organisation held that license already; nothing spent
	OutcomeNotPossible     = "not_possible"     // Stock answered but did not license (no quota, cancelled)
	OutcomeFailed          = "failed"           // Stock answered an error, or could not be asked
	OutcomeBadRequest      = "bad_request"      // content_id or license malformed, repeated or ambiguous
	OutcomeEditorialCheck  = "editorial_check_failed"
)

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
}

// Log appends Records as JSON lines to IMSPROXY_AUDIT_LOG (or stdout for
// "-"). Each line is written whole with O_APPEND and fsync'd
// before Write returns, so a line is on disk once the caller has its answer.
type Log struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	w    io.Writer
	file *os.File // nil for stdout

	// The licenses of the day the log was opened, by route: the daily
	// limit's count after a restart.
	day       string
	dayCounts map[string]int
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
	return a, nil
}

// Write appends rec as one line. An error is also logged: the attempt has
// happened, and the operator must know its line is missing.
func (a *Log) Write(rec Record) error {
	if a == nil {
		return nil
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err // cannot happen: only strings, numbers and a time
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.w.Write(line)
	if err == nil && a.file != nil {
		err = a.file.Sync()
	}
	if err != nil {
		a.log.Error("audit log write failed: a licensing attempt is not recorded", "path", a.path,
			"request_id", rec.RequestID, "route", rec.Route, "outcome", rec.Outcome, "error", err)
	}
	return err
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

// LicensesOn is how many licenses route made on day (as found when the log
// was opened; 0 for any other day).
func (a *Log) LicensesOn(day, route string) int {
	if a == nil || day != a.day {
		return 0
	}
	return a.dayCounts[route]
}

// countDay counts the day's "licensed" lines per route, reading the file
// backwards from its end until the lines are from an earlier day: the
// cost is that of one day's lines, however old the log is.
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
	return scanLinesBackward(r, info.Size(), func(line []byte) bool {
		var rec struct {
			Time    time.Time `json:"time"`
			Route   string    `json:"route"`
			Outcome string    `json:"outcome"`
		}
		if json.Unmarshal(line, &rec) != nil {
			return true // a torn last line after a crash: not a license
		}
		if rec.Time.Before(stop) {
			return false
		}
		if rec.Outcome == OutcomeLicensed && !rec.Time.Before(start) {
			a.dayCounts[rec.Route]++
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
