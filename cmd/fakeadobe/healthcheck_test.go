package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestRun_Healthcheck(t *testing.T) {
	dir := t.TempDir()
	// A port that was bound and closed: nothing answers there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if err := run(context.Background(), []string{"-healthcheck", "-listen", closed}, io.Discard); !errors.Is(err, errUnhealthy) {
		t.Fatalf("healthcheck of nothing: %v, want unhealthy", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-credentials-out", dir}, pw)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("run did not stop")
		}
	})
	sc := bufio.NewScanner(pr)
	var addr string
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "fakeadobe listening on http://"); ok {
			addr = strings.Fields(rest)[0]
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if addr == "" {
		t.Fatalf("no address printed: %v", <-done)
	}

	// Until the files are written the probe may fail; then it must pass.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := run(context.Background(), []string{"-healthcheck", "-listen", addr, "-credentials-out", dir}, io.Discard)
		if err == nil {
			break
		}
		if !errors.Is(err, errUnhealthy) || time.Now().After(deadline) {
			t.Fatalf("healthcheck of a running emulator: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	err = run(context.Background(), []string{"-healthcheck", "-listen", addr, "-credentials-out", t.TempDir()}, io.Discard)
	if !errors.Is(err, errUnhealthy) || !strings.Contains(err.Error(), "credentials not written") {
		t.Fatalf("healthcheck with no credential files: %v", err)
	}
}
