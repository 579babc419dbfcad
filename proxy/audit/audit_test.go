package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

func TestAuditLog_DailyCountSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	now := time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	line := func(at time.Time, route, outcome string) {
		b, _ := json.Marshal(Record{Time: at, Route: route, Outcome: outcome, ContentID: "1"})
		buf.Write(append(b, '\n'))
	}
	// Yesterday's licenses, more than a block of them, must not count.
	for i := range 2000 {
		line(now.Add(-30*time.Hour+time.Duration(i)*time.Second), "stock", OutcomeLicensed)
	}
	line(now.Add(-10*time.Hour+time.Minute), "stock", OutcomeLicensed) // 00:01 today
	line(now.Add(-time.Hour), "stock", OutcomeLicensed)
	line(now.Add(-time.Hour), "stock", "editorial_use_only")
	line(now.Add(-time.Hour), "stock", OutcomeAlreadyLicensed)
	line(now.Add(-time.Hour), "stock2", OutcomeLicensed)
	buf.WriteString(`{"time":"2025-06-02T09:59:00Z","route":"stock","outc`) // torn by a crash
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Open(path, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	day := UTCDay(now)
	if got := a.LicensesOn(day, "stock"); got != 2 {
		t.Errorf("stock: %d licenses today, want 2", got)
	}
	if got := a.LicensesOn(day, "stock2"); got != 1 {
		t.Errorf("stock2: %d licenses today, want 1", got)
	}
	if got := a.LicensesOn("2025-06-03", "stock"); got != 0 {
		t.Errorf("another day: %d", got)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", info.Mode().Perm())
	}
}

func TestScanLinesBackward(t *testing.T) {
	var want []string
	var buf bytes.Buffer
	for i := range 5000 {
		s := strings.Repeat(strconv.Itoa(i), i%40+1)
		want = append(want, s)
		buf.WriteString(s + "\n")
		if i%1000 == 0 {
			buf.WriteString("\n") // empty lines are skipped
		}
	}
	var got []string
	err := scanLinesBackward(bytes.NewReader(buf.Bytes()), int64(buf.Len()), func(line []byte) bool {
		got = append(got, string(line))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[len(got)-1-i] != want[i] {
			t.Fatalf("line %d = %q, want %q", i, got[len(got)-1-i], want[i])
		}
	}
}

// Licenses that may have been made count as well as those that were: an
// unknown outcome, and an attempt whose outcome line never came (the
// process stopped while Stock was asked). An attempt with its outcome
// counts once, by the outcome.
func TestAuditLog_CountsUnknownAndUnansweredAttempts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	now := time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	line := func(rec Record) {
		b, _ := json.Marshal(rec)
		buf.Write(append(b, '\n'))
	}
	line(Record{Time: now.Add(-20 * time.Hour), Route: "stock", Outcome: OutcomeAttempt, Attempt: "y1"}) // yesterday's
	at := now.Add(-time.Hour)
	line(Record{Time: at, Route: "stock", Outcome: OutcomeAttempt, Attempt: "a1"})
	line(Record{Time: at, Route: "stock", Outcome: OutcomeLicensed, Attempt: "a1"})
	line(Record{Time: at, Route: "stock", Outcome: OutcomeAttempt, Attempt: "a2"})
	line(Record{Time: at, Route: "stock", Outcome: OutcomeFailed, Attempt: "a2"}) // Stock refused: not counted
	line(Record{Time: at, Route: "stock", Outcome: OutcomeAttempt, Attempt: "a3"})
	line(Record{Time: at, Route: "stock", Outcome: OutcomeUnknown, Attempt: "a3"})
	line(Record{Time: at, Route: "stock", Outcome: OutcomeAttempt, Attempt: "a4"}) // no outcome: the process died
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	a, err := Open(path, now, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := a.LicensesOn(UTCDay(now), "stock"); got != 3 {
		t.Errorf("%d licenses counted, want 3 (licensed, unknown, attempt without outcome)", got)
	}
	if !strings.Contains(logs.String(), `"licenses":1`) {
		t.Errorf("the attempt without outcome is not reported at start: %s", logs.String())
	}
}

// A log file deleted, renamed away (rotation) or truncated while the proxy
// runs is noticed at the next line and reopened at its path, starting
// with the day's count so far: a restart still counts every license.
func TestAuditLog_ReopensAFileGoneAndKeepsTheDaysCount(t *testing.T) {
	now := time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	for name, lose := range map[string]func(path string) error{
		"deleted":   os.Remove,
		"rotated":   func(p string) error { return os.Rename(p, p+".1") },
		"truncated": func(p string) error { return os.Truncate(p, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			a, err := Open(path, now, nil)
			if err != nil {
				t.Fatal(err)
			}
			write := func(outcome string) {
				t.Helper()
				if err := a.Write(Record{Time: now, Route: "stock", Outcome: outcome}); err != nil {
					t.Fatal(err)
				}
			}
			write(OutcomeLicensed)
			write(OutcomeUnknown)
			write(OutcomeFailed)
			if err := lose(path); err != nil {
				t.Fatal(err)
			}
			write(OutcomeLicensed)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("the log was not recreated at its path: %v", err)
			}
			if !strings.Contains(string(data), `"outcome":"log_reopened"`) || !strings.Contains(string(data), `"day_licenses":2`) {
				t.Errorf("the reopened file does not carry the day's count over:\n%s", data)
			}
			again, err := Open(path, now.Add(time.Minute), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if got := again.LicensesOn(UTCDay(now), "stock"); got != 3 {
				t.Errorf("after a restart: %d licenses today, want 3", got)
			}
		})
	}
}

// A write that fails (a full disk) is an error the caller sees, so that a
// license is not requested without its line.
func TestAuditLog_WriteOnAFullDiskFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	var logs testutil.Buffer
	a, err := Open("/dev/full", time.Now(), slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Write(Record{Time: time.Now(), Route: "stock", Outcome: OutcomeAttempt}); err == nil {
		t.Fatal("a line written to a full disk reported no error")
	}
	if !strings.Contains(logs.String(), "audit log write failed") {
		t.Errorf("the failure is not logged: %s", logs.String())
	}
}

// A line longer than any record (garbage something else wrote into the
// file) is skipped when the day is counted, so the proxy still starts —
// and `imsproxy check`, which only checks the file can be read, agrees.
func TestOpen_SkipsAnOverLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	now := time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	line := func(at time.Time) {
		b, _ := json.Marshal(Record{Time: at, Route: "stock", Outcome: OutcomeLicensed, ContentID: "1"})
		buf.Write(append(b, '\n'))
	}
	line(now.Add(-2 * time.Hour))
	buf.WriteString(strings.Repeat("x", 3*maxAuditLine) + "\n")
	line(now.Add(-time.Hour))
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Open(path, now, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer a.Close()
	if got := a.LicensesOn(UTCDay(now), "stock"); got != 2 {
		t.Errorf("%d licenses counted, want the 2 around the garbage", got)
	}
}
