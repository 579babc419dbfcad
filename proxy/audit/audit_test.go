package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
