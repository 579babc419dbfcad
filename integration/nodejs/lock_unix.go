//go:build unix

package nodejs

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// lock serialises the npm installs of test processes that run at once
// (go test runs packages in parallel) on the same directory.
func lock(t testing.TB, dir string) (unlock func()) {
	t.Helper()
	sum := sha256.Sum256([]byte(dir))
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "imsproxy-npm-"+hex.EncodeToString(sum[:8])+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}
