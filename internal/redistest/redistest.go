// Package redistest runs a real redis-server for a test: on a free
// 127.0.0.1 port, with a temporary directory of its own, stopped when the
// test ends. Fleet mode is tested against Redis itself, never a stand-in.
package redistest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
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
	// TLS serves rediss:// only, with a certificate for 127.0.0.1 signed
	// by a CA made for the test (CAFile).
	TLS bool
}

// Server is a redis-server started for one test.
type Server struct {
	t    testing.TB
	opts Options
	bin  string
	// Addr is host:port; URL is redis://Addr/0.
	Addr, URL string
	// Dir holds the server's files (its log, the append-only file).
	Dir string
	// CAFile is the PEM of the CA that signed a TLS server's certificate.
	CAFile  string
	rootCAs *x509.CertPool
	port    int
	cmd     *exec.Cmd
	done    chan struct{}
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
	if opts.TLS {
		if err := s.makeCertificates(); err != nil {
			t.Fatal(err)
		}
	}
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
	if opts.TLS {
		s.URL = "rediss://" + s.Addr + "/0"
	}
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
	if s.opts.TLS {
		args[1] = "0" // no plain port
		args = append(args, "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", filepath.Join(s.Dir, "server.crt"), "--tls-key-file", filepath.Join(s.Dir, "server.key"),
			"--tls-ca-cert-file", s.CAFile, "--tls-auth-clients", "no")
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
		if s.ping(addr) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return errors.New("redis-server did not answer PING within 20 s")
}

// ping sends PING to the server at addr and checks the answer.
func (s *Server) ping(addr string) error {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: time.Second}
	if s.opts.TLS {
		c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: s.rootCAs, ServerName: "127.0.0.1"})
	} else {
		c, err = d.Dial("tcp", addr)
	}
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

// makeCertificates writes a CA (CAFile) and a certificate for 127.0.0.1
// that it signed, with its key, into the server's directory.
func (s *Server) makeCertificates() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.Dir, "ca.crt")
	for name, block := range map[string]*pem.Block{
		s.CAFile:                           {Type: "CERTIFICATE", Bytes: caDER},
		filepath.Join(s.Dir, "server.crt"): {Type: "CERTIFICATE", Bytes: der},
		filepath.Join(s.Dir, "server.key"): {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(name, pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	s.rootCAs = x509.NewCertPool()
	s.rootCAs.AddCert(caCert)
	return nil
}
