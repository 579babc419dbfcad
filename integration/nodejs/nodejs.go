// Package nodejs runs Adobe's own Node.js clients, pinned in
// integration/package.json and installed by `npm ci`, from Go tests, so the
// tests prove the emulator and the proxy against code nobody here wrote.
package nodejs

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Dir is the directory of package.json and the client scripts, found from
// a test's working directory (integration/ or one of its packages).
func Dir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "package-lock.json")); err == nil && filepath.Base(d) == "integration" {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no integration/package-lock.json above %s", wd)
		}
	}
}

// Node returns the node executable, with the modules (e.g.
// "@adobe/aem-upload") installed in dir/node_modules: when one is missing,
// it runs `npm ci` there, as CI does, so that a plain `go test ./...` on a
// machine with Node runs the client instead of skipping it. Without node
// the test is skipped: these tests prove the emulator against Adobe's
// clients, which need Node.
func Node(t testing.TB, dir string, modules ...string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; this test runs Adobe's Node.js clients")
	}
	unlock := lock(t, dir)
	defer unlock()
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", m, "package.json")); err != nil {
			install(t, dir)
			break
		}
	}
	return node
}

// install runs `npm ci` in dir (the versions of package-lock.json).
func install(t testing.TB, dir string) {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("node is installed but npm is not: install npm, or run `npm ci` in integration/")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// Run runs script (a path under dir) with input as JSON on stdin and the
// extra environment variables, bounded to two minutes, and decodes the one
// JSON line it prints into out. HOME is a fresh directory: Adobe's
// libraries read their configuration from there. A script that exits
// non-zero fails the test with its stderr.
func Run(t testing.TB, node, script string, input, out any, env ...string) {
	t.Helper()
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstderr:\n%s", filepath.Base(script), err, stderr.String())
	}
	line := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:] // a library may have printed before the answer
	}
	if err := json.Unmarshal([]byte(line), out); err != nil {
		t.Fatalf("node %s printed %q: %v\nstderr:\n%s", filepath.Base(script), stdout.String(), err, stderr.String())
	}
}
