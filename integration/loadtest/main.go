// Command loadtest holds the two other processes of the load recipe
// (run.sh): a local upstream that answers every request with the same
// Stock-like JSON, and the baseline to compare imsproxy with — a bare
// httputil.ReverseProxy that adds two static headers, the floor for any Go
// proxy.
//
//	go run ./integration/loadtest upstream -listen 127.0.0.1:9101
//	go run ./integration/loadtest bare -listen 127.0.0.1:9102 -upstream http://127.0.0.1:9101
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadtest upstream|bare [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9101", "address to listen on (loopback)")
	upstream := fs.String("upstream", "http://127.0.0.1:9101", "bare: where to forward")
	_ = fs.Parse(os.Args[2:])

	var h http.Handler
	switch os.Args[1] {
	case "upstream":
		h = answer(stockLikeAnswer())
	case "bare":
		target, err := url.Parse(*upstream)
		if err != nil {
			log.Fatal(err)
		}
		h = bareProxy(target)
	default:
		fmt.Fprintf(os.Stderr, "loadtest: unknown mode %q (upstream or bare)\n", os.Args[1])
		os.Exit(2)
	}
	log.Fatal(http.ListenAndServe(*listen, h))
}

// answer serves body to every request, as a Stock search would.
func answer(body []byte) http.Handler {
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
}

// stockLikeAnswer is about 1 KB of JSON shaped like a Stock search answer.
func stockLikeAnswer() []byte {
	var b strings.Builder
	b.WriteString(`{"nb_results":1234,"files":[`)
	for i := range 8 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"title":"Cat sitting on a window sill","width":6000,"height":4000}`, 100000+i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// bareProxy is httputil.ReverseProxy with static credentials and a
// keep-alive pool as large as imsproxy's: the default of 2 idle
// connections per host would make it churn connections and look slower
// than it is.
func bareProxy(target *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set("Authorization", "Bearer static-token")
			pr.Out.Header.Set("X-Api-Key", "client-id")
		},
		Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 256},
		// wrk closes its connections mid-request when it stops.
		ErrorLog: log.New(io.Discard, "", 0),
	}
}
