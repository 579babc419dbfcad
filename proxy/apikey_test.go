package proxy

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/tokens"
)

// clientSource hands out tokens of one client: "<client>-1", "<client>-2"...
type clientSource struct {
	client string
	n      atomic.Int64
}

func (s *clientSource) Fetch(context.Context) (tokens.Token, error) {
	now := time.Now()
	return tokens.Token{Value: s.client + "-" + strconv.FormatInt(s.n.Add(1), 10), ClientID: s.client,
		Obtained: now, Expiry: now.Add(time.Hour)}, nil
}

// sameClient reports whether a request's token belongs to the client its
// x-api-key names, as Adobe's gateway requires.
func sameClient(h http.Header) bool {
	tok, _ := cutBearer(h.Get("Authorization"))
	return strings.HasPrefix(tok, h.Get("X-Api-Key")+"-")
}

func TestRoute_APIKeyFollowsTheTokensClientAcrossAReplace(t *testing.T) {
	var served, mismatched atomic.Int64
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		served.Add(1)
		if !sameClient(r.Header) {
			mismatched.Add(1)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}}
	front, mgr := newTestRoute(t, up, &clientSource{client: "client-a"}, nil)

	stop := make(chan struct{})
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get(front.URL + "/x")
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for served.Load() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(200)
	if err := mgr.Replace(context.Background(), &clientSource{client: "client-b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(served.Load() + 200)
	close(stop)
	wg.Wait()

	if failed.Load() != 0 || mismatched.Load() != 0 {
		t.Fatalf("%d requests failed, %d reached the upstream with another client's key", failed.Load(), mismatched.Load())
	}
	all := up.All()
	if last := all[len(all)-1].Header.Get("X-Api-Key"); last != "client-b" {
		t.Errorf("after the replace the key is %q, want client-b", last)
	}
}

func TestRoute_RetryAfter401SendsTheNewClientsKey(t *testing.T) {
	var mgr *tokens.Manager
	var replaced atomic.Bool
	up := &testutil.Upstream{Handler: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if !sameClient(r.Header) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if tok, _ := cutBearer(r.Header.Get("Authorization")); strings.HasPrefix(tok, "client-a-") {
			// The old client's tokens are revoked while this request is
			// on its way, and the credentials switch to client b.
			if replaced.CompareAndSwap(false, true) {
				if err := mgr.Replace(r.Context(), &clientSource{client: "client-b"}); err != nil {
					t.Error(err)
				}
			}
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}}
	front, m := newTestRoute(t, up, &clientSource{client: "client-a"}, nil)
	mgr = m
	if status := get(t, front.URL+"/x"); status != http.StatusOK {
		t.Fatalf("status = %d, want 200 after the retry with the new client's token and key", status)
	}
	all := up.All()
	if len(all) != 2 || all[1].Header.Get("X-Api-Key") != "client-b" {
		t.Fatalf("upstream saw %d requests, the retry with key %q; want 2, client-b", len(all), all[len(all)-1].Header.Get("X-Api-Key"))
	}
}
