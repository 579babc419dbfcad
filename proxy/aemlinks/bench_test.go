package aemlinks

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// The cost of the stage, without the network:
//
//	go test -run '^$' -bench . -benchmem ./proxy/aemlinks/

const benchUpstream = "https://author-p12345-e67890.adobeaemcloud.com"

// BenchmarkRewriteJSON_SirenListing rewrites a folder listing of ten
// assets (7.1 KB, 32 links to rewrite, 10 to leave) as the Assets HTTP API
// answers it.
func BenchmarkRewriteJSON_SirenListing(b *testing.B) {
	body := sirenListing(benchUpstream, 10)
	o := mustOrigin(b, benchUpstream)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if rewriteJSON(o, body, testBase) == nil {
			b.Fatal("nothing rewritten")
		}
	}
}

// BenchmarkStage_SirenListing is the whole stage on the same listing:
// held, rewritten, its header fixed and sent.
func BenchmarkStage_SirenListing(b *testing.B) {
	body := sirenListing(benchUpstream, 10)
	u, _ := url.Parse(benchUpstream)
	h := Rewrite(u, Options{})(answer("application/vnd.siren+json", body))
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081/api/assets/wknd/en/adventures.json", nil)
	w := &discard{header: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkBinary streams a 1 MiB binary in the reverse proxy's 32 KiB
// writes, straight and through the stage: the difference is the stage's
// cost for an answer it does not rewrite.
func BenchmarkBinary(b *testing.B) {
	body := make([]byte, 1<<20)
	u, _ := url.Parse(benchUpstream)
	next := answer("image/jpeg", body)
	for name, h := range map[string]http.Handler{"direct": next, "stage": Rewrite(u, Options{})(next)} {
		b.Run(name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081/content/dam/x.jpg", nil)
			w := &discard{header: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}

// The stage adds no allocation to an answer it streams, whatever its
// size: nothing of it is held.
func TestRewrite_StreamedBinaryCostsNoAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	u, _ := url.Parse(benchUpstream)
	next := answer("image/jpeg", make([]byte, 1<<20))
	staged := Rewrite(u, Options{})(next)
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081/content/dam/x.jpg", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	w := &discard{header: http.Header{}}
	direct := testing.AllocsPerRun(100, func() { next.ServeHTTP(w, r) })
	through := testing.AllocsPerRun(100, func() { staged.ServeHTTP(w, r) })
	if through > direct {
		t.Fatalf("%v allocations per answer through the stage, %v without", through, direct)
	}
}

// answer is an upstream's answer as the reverse proxy writes it: the
// header, then the body in 32 KiB writes.
func answer(contentType string, body []byte) http.Handler {
	ct := []string{contentType}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = ct
		w.WriteHeader(http.StatusOK)
		for p := body; len(p) > 0; {
			n := min(len(p), 32<<10)
			_, _ = w.Write(p[:n])
			p = p[n:]
		}
	})
}

// discard is a ResponseWriter that forgets what it is sent.
type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
