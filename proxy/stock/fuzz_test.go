package stock

import (
	"net/url"
	"testing"
)

// FuzzLicenseQuery feeds arbitrary queries to the license request parser.
// What it accepts must be unambiguous: one canonical content_id, which is
// the content_id any standard query parser reads from the same query.
func FuzzLicenseQuery(f *testing.F) {
	f.Add("content_id=123&license=Standard")
	f.Add("content_id=1&content_id=2")
	f.Add("content%5Fid=5&license_again=true")
	f.Fuzz(func(t *testing.T, raw string) {
		lr, err := parseLicenseQuery(raw)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty message")
			}
			return
		}
		if !canonicalID(lr.ContentID) || !licenseName(lr.License) {
			t.Fatalf("accepted %+v from %q", lr, raw)
		}
		q, qerr := url.ParseQuery(raw)
		if qerr != nil || len(q["content_id"]) != 1 || q.Get("content_id") != lr.ContentID {
			t.Fatalf("%q: parsed %+v but url.ParseQuery reads %v (%v)", raw, lr, q["content_id"], qerr)
		}
	})
}
