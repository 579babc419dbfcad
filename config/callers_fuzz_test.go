package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

// FuzzCallersFile feeds arbitrary bytes to the callers-file parser: whatever
// an operator points IMSPROXY_CALLERS_FILE at, it must report problems,
// never panic, never accept an entry a request could not be checked
// against, and never repeat a key_sha256 value (it may be a key) in an
// error. Seeds are in testdata/fuzz/FuzzCallersFile.
func FuzzCallersFile(f *testing.F) {
	f.Add([]byte(`[{"name":"dam","key_sha256":"` + testutil.KeyHash("k") + `","routes":["stock"],"license":true}]`))
	f.Add([]byte(`[{"name":"","key_sha256":"imsp_secret","routes":[]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		callers, err := ParseCallers(data, nil)
		if err != nil {
			if callers != nil {
				t.Fatal("callers returned with an error")
			}
			for _, key := range keyValues(data) {
				if strings.Contains(err.Error(), key) {
					t.Fatalf("the error repeats key_sha256 %q: %v", key, err)
				}
			}
			return
		}
		names := map[string]bool{}
		for _, c := range callers {
			if c.Name == "" || names[c.Name] || len(c.Routes) == 0 {
				t.Fatalf("accepted an unusable caller %+v", c)
			}
			names[c.Name] = true
			for _, r := range c.Routes {
				if !validRouteName(r) {
					t.Fatalf("accepted route %q", r)
				}
			}
		}
	})
}

// keyValues returns the key_sha256 strings of data (when it decodes as a
// list of objects) long enough to be recognised and not also part of a
// field name, name or route, which errors may quote.
func keyValues(data []byte) []string {
	var entries []map[string]any
	if json.Unmarshal(data, &entries) != nil {
		return nil
	}
	var quoted []string
	for _, e := range entries {
		for field := range e {
			quoted = append(quoted, field)
		}
		if s, ok := e["name"].(string); ok {
			quoted = append(quoted, s)
		}
		if rs, ok := e["routes"].([]any); ok {
			for _, r := range rs {
				if s, ok := r.(string); ok {
					quoted = append(quoted, s)
				}
			}
		}
	}
	var keys []string
	for _, e := range entries {
		k, ok := e["key_sha256"].(string)
		if !ok || len(k) < 8 || strings.Contains(strings.Join(quoted, "\x00"), k) {
			continue
		}
		keys = append(keys, k)
	}
	return keys
}
