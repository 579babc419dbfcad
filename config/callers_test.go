package config

import (
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

func TestParseCallers(t *testing.T) {
	good := testutil.KeyHash("k1")
	tests := []struct {
		name    string
		data    string
		want    int      // callers, when valid
		errs    []string // substrings of the error, when invalid
		notInIt string   // must not appear in the error
	}{
		{"valid", `[{"name":"dam","key_sha256":"` + good + `","routes":["stock","aem"],"license":true},
			{"name":"report","key_sha256":"` + strings.ToUpper(testutil.KeyHash("k2")) + `","routes":["stock"]}]`, 2, nil, ""},
		{"empty list", `[]`, 0, nil, ""},
		{"empty file", ``, 0, []string{"the file is empty"}, ""},
		{"null", `null`, 0, []string{"holds null"}, ""},
		{"an object, not a list", `{"callers":[]}`, 0, []string{"must hold a JSON list"}, ""},
		{"syntax error has its line", "[\n{\"name\":\"a\",}]", 0, []string{"line 2, column"}, ""},
		{"unknown field (typo)", `[{"name":"a","key_sha256":"` + good + `","routes":["stock"],"licence":true}]`, 0, []string{`unknown field "licence"`}, ""},
		{"pasted data as a field name", `[{"name":"a","key_sha256":"` + good + `","routes":["stock"],"imsp_0123456789abcdefghijklmnopqrstuvwxyz":true}]`, 0,
			[]string{"an unknown field (its name is too long to show)"}, "imsp_0123456789"},
		{"wrong type", `[{"name":"a","key_sha256":"` + good + `","routes":"stock"}]`, 0, []string{"routes must be a JSON list"}, ""},
		{"trailing data", `[] []`, 0, []string{"data after the JSON list"}, ""},
		{"every problem at once", `[{"key_sha256":"imsp_the-key-itself","routes":[]},{"name":"b","key_sha256":"` + good + `","routes":["Stock"]},{"name":"b","key_sha256":"` + good + `","routes":["stock"]}]`, 0,
			[]string{"caller 1: name is required", "caller 1: key_sha256 must be the 64 hex digits", "caller 1: routes is empty",
				`caller 2 (b): routes holds "Stock"`, "caller 3 (b): name is used by another caller", "caller 3 (b): key_sha256 is the same as another caller's"},
			"imsp_the-key-itself"},
		{"a route no IMSPROXY_ROUTES can name", `[{"name":"a","key_sha256":"` + good + `","routes":["st ock","a__b"]}]`, 0,
			[]string{`routes holds "st ock": a route name is lower-case letters, digits and single underscores`, `routes holds "a__b"`}, ""},
		{"missing key", `[{"name":"a","routes":["stock"]}]`, 0, []string{"key_sha256 is required"}, ""},
		{"unprintable name", `[{"name":"a\u0000b","key_sha256":"` + good + `","routes":["stock"]}]`, 0, []string{"printable"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCallers([]byte(tt.data), nil)
			if tt.errs == nil {
				if err != nil || len(got) != tt.want {
					t.Fatalf("got %d callers, error %v; want %d", len(got), err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.errs)
			}
			for _, s := range tt.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tt.notInIt != "" && strings.Contains(err.Error(), tt.notInIt) {
				t.Errorf("error repeats a key: %q", err)
			}
		})
	}
}
