package stock

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/audit"
)

func TestParseLicenseQuery(t *testing.T) {
	tests := []struct {
		query string
		want  licenseRequest
		bad   bool
	}{
		{"content_id=123&license=Standard", licenseRequest{ContentID: "123", License: "Standard"}, false},
		{"content_id=123", licenseRequest{ContentID: "123"}, false},
		{"license=Video_HD&content_id=9&license_again=true", licenseRequest{ContentID: "9", License: "Video_HD", Again: true}, false},
		{"content%5Fid=77&license=Standard", licenseRequest{ContentID: "77", License: "Standard"}, false},
		{"", licenseRequest{}, true},
		{"content_id=", licenseRequest{}, true},
		{"content_id=0123", licenseRequest{}, true},
		{"content_id=12a", licenseRequest{}, true},
		{"content_id=-1", licenseRequest{}, true},
		{"content_id=+1", licenseRequest{}, true},
		{"content_id=1&content_id=2", licenseRequest{}, true},
		{"content_id[]=1", licenseRequest{}, true},
		{"content_id=1&content_id[0]=2", licenseRequest{}, true},
		{"content_id=1;content_id=2", licenseRequest{}, true},
		{"content_id=1&license=Standard&license=Extended", licenseRequest{}, true},
		{"content_id=1&license=Stand%20ard", licenseRequest{}, true},
		{"content_id=1&license_again=true&license_again=false", licenseRequest{}, true},
		{"content_id=1234567890123456789", licenseRequest{}, true},
		// Names some server reads as content_id, license or license_again.
		{"content_id=1&content.id=2", licenseRequest{}, true},
		{"content_id=1&content+id=2", licenseRequest{}, true},
		{"content_id=1&content[id]=2", licenseRequest{}, true},
		{"content_id=1&Content_Id=2", licenseRequest{}, true},
		{"content_id=1&contentid=2", licenseRequest{}, true},
		{"content_id=1&content-id=2", licenseRequest{}, true},
		{"content_id=1&content%255Fid=2", licenseRequest{}, true},
		{"content_id=1&licen%C5%BFe=Extended", licenseRequest{}, true},                // ſ folds to s
		{"content_id=1&%C4%B1icense=Extended", licenseRequest{ContentID: "1"}, false}, // ı is not l
		{"content_id=1&L%C4%B0CENSE=Extended", licenseRequest{}, true},                // İ lowers to i
		{"content_id=1&license_again%5B%5D=true", licenseRequest{}, true},             // an array
		{"content_id=1&License.Again=true", licenseRequest{}, true},
		{"content_id=1&content_ids=2&locale=en_US", licenseRequest{ContentID: "1"}, false},
	}
	for _, tt := range tests {
		got, err := parseLicenseQuery(tt.query)
		if (err != nil) != tt.bad {
			t.Errorf("parseLicenseQuery(%q) error = %v, want bad=%v", tt.query, err, tt.bad)
			continue
		}
		if !tt.bad && got != tt.want {
			t.Errorf("parseLicenseQuery(%q) = %+v, want %+v", tt.query, got, tt.want)
		}
	}
}

func TestAmbiguousPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/Rest/Libraries/1/Content/License":                  false,
		"/Rest/Media/1/Search/Files":                         false,
		"/Rest/Libraries/1/Content/%4Cicense":                false, // one more decoding, still plain
		"//stock.adobe.io/Rest/Libraries/1/Content/License":  true,
		"/\\stock.adobe.io/Rest/Libraries/1/Content/License": true,
		"/Rest;x=1/Libraries/1/Content/License":              true,
		"/Rest/Libraries/1/Content/License;jsessionid=1":     true,
		"/Rest/Libraries/1/Content/Licen\u017fe":             true,
		"/Rest/Libraries/1/Content/Licen%C5%BFe":             true, // decoded once more by a server
		"/Rest%3Bx/Libraries/1/Content/License":              true,
		"/%2F/stock.adobe.io/Rest":                           true,
	} {
		if _, got := scanPath(p); got != want {
			t.Errorf("scanPath(%q) ambiguous = %v, want %v", p, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := map[string]stockPath{
		"/Rest/Libraries/1/Content/License":                      pathLicense,
		"/Rest/Libraries/1/Content/License/":                     pathLicense,
		"/rest/libraries/1/content/LICENSE":                      pathLicense,
		"//Rest//Libraries/1/Content/License":                    pathLicense,
		"/Rest/Libraries/1/Content/./License":                    pathLicense,
		"/Rest/Libraries/1/Member/../Content/License":            pathLicense,
		`\Rest\Libraries\1\Content\License`:                      pathLicense,
		"/Rest/Libraries/1/Content/%4Cicense":                    pathLicense, // %254C once decoded by net/http
		"/Rest/Libraries/1/Content/License.json":                 pathLicense,
		"/Rest/Libraries/1/Content/License/../Info":              pathLicense, // an upstream that does not clean would route it to License
		"/Rest/Libraries/1/Content/Info":                         pathLicensing,
		"/Rest/Libraries/1/Member/LicenseHistory":                pathLicensing,
		"/Rest/Libraries/Download/123/1":                         pathDownload,
		"/Rest/Libraries/Watermarked/Download/123/0":             pathDownload,
		"/Rest/Media/1/Search/Files":                             pathOther,
		"/Rest/Libraries/1/Member/Profile":                       pathOther,
		"/Rest/Libraries/Download/../1/Member/Profile":           pathOther,
		"/Rest/Libraries/Download/../1/Content/License":          pathLicense,
		"/Rest/Libraries/Download/%2e%2e/1/Content/License?x=1":  pathLicense,
		"/Rest/Libraries/1/Content/Licens":                       pathOther,
		"/api/assets.json":                                       pathOther,
		"/Rest/Libraries/Watermarked/Download/../../1/Content/X": pathOther,
	}
	for p, want := range tests {
		if got := classify(p); got != want {
			t.Errorf("classify(%q) = %d, want %d", p, got, want)
		}
	}
}

func TestDailyLimit_ConcurrentCallsCannotOvershoot(t *testing.T) {
	clock := testutil.NewClock(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	l := NewDailyLimit(3, clock.Now, 1) // one made earlier today
	ctx := context.Background()
	var granted atomic.Int64
	slots := make(chan Slot, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if slot, err := l.Reserve(ctx, audit.Record{}); err == nil {
				granted.Add(1)
				slots <- slot
			}
		})
	}
	wg.Wait()
	close(slots)
	if got := granted.Load(); got != 2 {
		t.Fatalf("%d calls got a slot, want 2 (limit 3, 1 made)", got)
	}
	held := []Slot{}
	for s := range slots {
		held = append(held, s)
	}
	held[0].Settle(ctx, false, audit.Record{}) // one failed: its slot is free again
	again, err := l.Reserve(ctx, audit.Record{})
	if err != nil {
		t.Fatal("a failed call's slot was not given back")
	}
	held[1].Settle(ctx, true, audit.Record{})
	again.Settle(ctx, true, audit.Record{})
	_, err = l.Reserve(ctx, audit.Record{})
	var spent *SpentError
	if !errors.As(err, &spent) || spent.Limit != 3 || spent.RetryAfter != 12*time.Hour {
		t.Fatalf("a slot granted beyond the limit (error %v)", err)
	}
	clock.Advance(12 * time.Hour)
	if _, err := l.Reserve(ctx, audit.Record{}); err != nil {
		t.Fatal("the limit did not start over at midnight UTC")
	}
}

func TestEditorialCache_Expires(t *testing.T) {
	now := time.Now()
	c := newEditorialCache(func() time.Time { return now })
	c.put("1", true)
	if ed, ok := c.get("1"); !ok || !ed {
		t.Fatal("fresh entry not found")
	}
	now = now.Add(editorialTTL)
	if _, ok := c.get("1"); ok {
		t.Fatal("expired entry served")
	}
	for i := range editorialCacheSize + 10 {
		c.put(strconv.Itoa(i), false)
	}
	if len(c.m) > editorialCacheSize {
		t.Fatalf("cache holds %d entries, bound %d", len(c.m), editorialCacheSize)
	}
}

func TestEditorialFlag(t *testing.T) {
	tests := []struct {
		body string
		want bool
		fail editorialFailure // -1: no error
	}{
		{`{"files":[{"id":5,"is_editorial":true}]}`, true, -1},
		{`{"files":[{"id":"5","is_editorial":"false"}]}`, false, -1},
		{`{"files":[{"id":5,"is_editorial":1}]}`, true, -1},
		{`{"files":[{"id":5,"is_editorial":""}]}`, false, -1},
		{`{"files":[{"id":6,"is_editorial":false},{"id":5,"is_editorial":true}]}`, true, -1},
		{`{"files":[{"id":5}]}`, false, failNoFlag},
		{`{"files":[{"id":5,"is_editorial":null}]}`, false, failNoFlag},
		{`{"files":[{"id":55,"is_editorial":false}]}`, false, failUnlisted},
		{`{"files":[]}`, false, failUnlisted},
		{`<html>`, false, failNoFlag},
	}
	for _, tt := range tests {
		got, err := editorialFlag([]byte(tt.body), "5")
		var ee *editorialError
		switch {
		case tt.fail < 0 && (err != nil || got != tt.want):
			t.Errorf("%s: %v, %v; want %v", tt.body, got, err, tt.want)
		case tt.fail >= 0 && (!errors.As(err, &ee) || ee.kind != tt.fail):
			t.Errorf("%s: error %v, want kind %d", tt.body, err, tt.fail)
		}
	}
}
