// Package redistest runs a real redis-server for a test: on a free
// 127.0.0.1 port, with a temporary directory of its own, stopped when the
// test ends. Fleet mode is tested against Redis itself, never a stand-in.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Options tunes a Server.
type Options struct {
	// AOF turns on the append-only file, synced on every write, so that
	// the data survives a restart (Restart).
	AOF bool
}

// Server is a redis-server started for one test.
type Server struct {
	t    testing.TB
	opts Options
	bin  string
	// Addr is host:port; URL is redis://Addr/0.
	Addr, URL string
	// Dir holds the server's files (its log, the append-only file).
	Dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs redis-server for the rest of the test. It fails the test
// (never skips it) when redis-server is not installed: CI installs it
// (Debian package redis-server).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"} {
			if _, err2 := os.Stat(p); err2 == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("redis-server is not installed (apt-get install redis-server): fleet mode is tested against a real Redis")
	}
	s := &Server{t: t, opts: opts, bin: bin, Dir: t.TempDir()}
	var lastErr error
	for range 5 { // a port found free may be taken before redis-server binds it
		s.port = freePort(t)
		if lastErr = s.launch(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatal(lastErr)
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
	s.URL = "redis://" + s.Addr + "/0"
	t.Cleanup(s.Kill)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// launch starts redis-server on s.port and waits until it answers PING.
func (s *Server) launch() error {
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--logfile", filepath.Join(s.Dir, "redis.log"), "--save", "", "--daemonize", "no",
		"--appendonly", "no",
	}
	if s.opts.AOF {
		args[len(args)-1] = "yes"
		args = append(args, "--appendfsync", "always")
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	addr := "127.0.0.1:" + strconv.Itoa(s.port)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			return fmt.Errorf("redis-server exited at start:\n%s", log)
		default:
		}
		if Ping(addr) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return errors.New("redis-server did not answer PING within 20 s")
}

// Ping sends PING to the Redis at addr and checks the answer.
func Ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Stop shuts the server down cleanly (SIGTERM: the append-only file is
// flushed) and waits for it to exit.
func (s *Server) Stop() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.t.Errorf("redis-server did not stop within 20 s of SIGTERM")
		s.Kill()
	}
	s.cmd = nil
}

// Kill ends the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port and directory, after
// Stop or Kill.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.Stop()
	}
	if err := s.launch(); err != nil {
		s.t.Fatal(err)
	}
}
