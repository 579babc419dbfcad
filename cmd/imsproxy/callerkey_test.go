package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
)

func TestCallerKey_PrintsKeyHashAndAnEntryTheProxyAccepts(t *testing.T) {
	mint := func() (key, hash, entry string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run([]string{"caller-key", "-name", "legacy-dam", "-routes", "stock, AEM", "-license"}, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) != 6 {
			t.Fatalf("output:\n%s", stdout.String())
		}
		return strings.TrimSpace(lines[1]), strings.TrimSpace(lines[3]), strings.TrimSpace(lines[5])
	}
	key, hash, entry := mint()
	sum := sha256.Sum256([]byte(key))
	if !strings.HasPrefix(key, "imsp_") || len(key) < 40 || hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("key %q, hash %q: want an imsp_ key of 256 bits and its SHA-256", key, hash)
	}
	callers, err := config.ParseCallers([]byte("["+entry+"]"), []string{"stock", "aem"})
	if err != nil {
		t.Fatalf("the printed entry is not a valid callers file: %v\n%s", err, entry)
	}
	c := callers[0]
	if c.Name != "legacy-dam" || !c.License || strings.Join(c.Routes, ",") != "stock,aem" {
		t.Fatalf("entry %+v", c)
	}
	if strings.Contains(entry, key) {
		t.Fatal("the entry holds the key itself")
	}
	if again, _, _ := mint(); again == key {
		t.Fatal("two runs minted the same key")
	}
}

func TestCallerKey_Usage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"caller-key", "extra"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "unexpected argument") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// caller-key refuses, as a usage error, what the callers file's own
// parser would refuse, and then prints no key and no entry.
func TestCallerKey_RefusesAnEntryTheProxyWouldNotLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"empty name and routes", []string{"-name", "", "-routes", ""}, []string{
			"imsproxy caller-key: -name: name is required", "imsproxy caller-key: -routes: routes is empty"}},
		{"a route IMSPROXY_ROUTES cannot name", []string{"-routes", "stock,st ock"}, []string{
			`imsproxy caller-key: -routes: routes holds "st ock": a route name is lower-case letters, digits and single underscores`}},
		{"an unprintable name", []string{"-name", "a\x00b"}, []string{"imsproxy caller-key: -name: name must be at most 100 printable characters"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"caller-key"}, tc.args...), nil, &stdout, &stderr)
			if code != 2 || stdout.Len() != 0 {
				t.Fatalf("exit %d, stdout %q; want 2 and nothing printed", code, stdout.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "imsp_") {
				t.Error("a refused entry's key was printed")
			}
		})
	}
}
