package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/tokens"
)

// The request-path benchmarks: the same GET straight to a local upstream,
// through a bare httputil.ReverseProxy that sets two static headers (the
// floor for any Go proxy), and through an imsproxy Route. The difference
// between the last two is what imsproxy itself costs.
//
//	go test -run '^$' -bench 'BenchmarkRequest' -benchmem ./proxy/

const benchAnswer = `{"nb_results":1,"files":[{"id":1,"title":"cat"}]}`

func benchUpstream(b *testing.B) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchAnswer)
	}))
	b.Cleanup(up.Close)
	return up
}

func benchGet(b *testing.B, target string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	u := target + "/Rest/Media/1/Search/Files?search_parameters%5Bwords%5D=cat"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(u)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

func BenchmarkRequest_Direct(b *testing.B) {
	benchGet(b, benchUpstream(b).URL)
}

func BenchmarkRequest_BareReverseProxy(b *testing.B) {
	target, _ := url.Parse(benchUpstream(b).URL)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("Authorization", "Bearer static-token")
			pr.Out.Header.Set("X-Api-Key", "client-id")
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}
	front := httptest.NewServer(rp)
	b.Cleanup(front.Close)
	benchGet(b, front.URL)
}

func BenchmarkRequest_Imsproxy(b *testing.B) {
	up := benchUpstream(b)
	rc := testroute.Stock(b, up.URL)
	mgr := tokens.NewManager(rc.Name, &countingSource{}, tokens.Options{})
	front := httptest.NewServer(NewRoute(rc, mgr, RouteOptions{Metrics: metrics.New()}))
	b.Cleanup(front.Close)
	benchGet(b, front.URL)
}
