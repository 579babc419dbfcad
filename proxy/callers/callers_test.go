package callers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

func TestLookup(t *testing.T) {
	callers, err := config.ParseCallers([]byte(testutil.CallersJSON(
		testutil.Caller{Name: "a", Key: "key-a", Routes: []string{"stock"}},
		testutil.Caller{Name: "b", Key: "key-b", Routes: []string{"stock"}})), nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"key-a": "a", "key-b": "b", "key-c": "", "": "", "key-a ": ""} {
		got := ""
		if c := lookup(callers, key); c != nil {
			got = c.Name
		}
		if got != want {
			t.Errorf("lookup(%q) = %q, want %q", key, got, want)
		}
	}
}

// newTestFile writes a callers file of content for routes stock and aem
// and serves it.
func newTestFile(t *testing.T, content string) (*File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callers.json")
	testutil.WriteFile(t, path, content)
	routes := []string{"stock", "aem"}
	loaded, err := config.ReadCallers(path, routes)
	if err != nil {
		t.Fatal(err)
	}
	return NewFile(path, routes, loaded, nil), path
}

func TestCallers_ReloadKeepsPreviousCallersOnError(t *testing.T) {
	c, path := newTestFile(t, testutil.CallersJSON(testutil.Caller{Name: "a", Key: "key-a", Routes: []string{"stock"}}))
	req := func(key string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Api-Key", key)
		return r
	}
	testutil.WriteFile(t, path, testutil.CallersJSON(testutil.Caller{Name: "b", Key: "key-b", Routes: []string{"stock"}}))
	if changed, err := c.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if c.identify(req("key-a")) != nil || c.identify(req("key-b")) == nil {
		t.Fatal("after the reload, key-a should be refused and key-b known")
	}
	if changed, err := c.Reload(); changed || err != nil {
		t.Fatalf("Reload of an unchanged file = %v, %v; want no change", changed, err)
	}
	for name, content := range map[string]string{
		"broken JSON":      `[{"name":`,
		"unknown route":    testutil.CallersJSON(testutil.Caller{Name: "c", Key: "key-c", Routes: []string{"brandportal"}}),
		"file not present": "",
	} {
		if name == "file not present" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else {
			testutil.WriteFile(t, path, content)
		}
		_, err := c.Reload()
		var ps config.Problems
		if !errors.As(err, &ps) || ps[0].Var != "IMSPROXY_CALLERS_FILE" {
			t.Errorf("%s: Reload error = %v, want problems of IMSPROXY_CALLERS_FILE", name, err)
		}
		if c.identify(req("key-b")) == nil {
			t.Errorf("%s: the previous callers are no longer in force", name)
		}
	}
}

func TestCallers_WatchReloadsChangedFile(t *testing.T) {
	c, path := newTestFile(t, testutil.CallersJSON(testutil.Caller{Name: "a", Key: "key-a", Routes: []string{"stock"}}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Watch(ctx, 5*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	testutil.WriteFile(t, path, testutil.CallersJSON(testutil.Caller{Name: "b", Key: "key-b", Routes: []string{"stock"}}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer key-b")
	deadline := time.Now().Add(5 * time.Second)
	for c.identify(r) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the changed callers file was not reloaded within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
