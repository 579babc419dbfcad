package proxy

import (
	"net/http"
	"slices"
	"testing"

	"github.com/imsproxy/imsproxy/internal/testutil"
)

// Adobe Stock echoes X-Request-Id in its answers; the caller must still see
// the id once, not once from the proxy and once from the upstream.
func TestRoute_RequestIDOnceWhenUpstreamEchoesIt(t *testing.T) {
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
	}}
	front, _ := newTestRoute(t, up, &countingSource{}, nil)

	for _, sent := range []string{"trace-7", ""} {
		req, _ := http.NewRequest("GET", front.URL+"/x", nil)
		if sent != "" {
			req.Header.Set("X-Request-Id", sent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Values("X-Request-Id")
		if len(got) != 1 || (sent != "" && got[0] != sent) || slices.Contains(got, "") {
			t.Errorf("sent %q: answer X-Request-Id = %q, want exactly one id", sent, got)
		}
	}
}
