package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/internal/testroute"
	"github.com/imsproxy/imsproxy/internal/testutil"
	"github.com/imsproxy/imsproxy/proxy/metrics"
	"github.com/imsproxy/imsproxy/proxy/route"
	"github.com/imsproxy/imsproxy/tokens"
)

// panickingTokens panics in Token with a value holding a secret, as buggy
// code holding a token might.
type panickingTokens struct{}

const panicSecret = "eyJhbGciOi-secret-in-panic-value"

func (panickingTokens) Token(context.Context) (tokens.Token, error) {
	panic(errors.New("boom with " + panicSecret))
}
func (panickingTokens) Invalidate(context.Context, string) bool { return false }

func TestRoute_PanicIsAnswered500WithoutLeaking(t *testing.T) {
	up := httptest.NewServer(&testutil.Upstream{})
	t.Cleanup(up.Close)
	logs := &testutil.Buffer{}
	metrics := metrics.New()
	rt := NewRoute(testroute.Stock(t, up.URL), panickingTokens{}, RouteOptions{
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Metrics: metrics})
	front := httptest.NewServer(rt)
	t.Cleanup(front.Close)

	req, _ := http.NewRequest("GET", front.URL+"/Rest/Media/1/Search/Files", nil)
	req.Header.Set("X-Request-Id", "panic-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the connection was cut instead of answered: %v", err)
	}
	body := decodeProxyError(t, resp, http.StatusInternalServerError, "internal_error")
	if !strings.Contains(body.Message, "panic-1") {
		t.Errorf("message %q does not give the request id", body.Message)
	}
	out := logs.String()
	for _, want := range []string{`"panic_type":"*errors.errorString"`, `"stack":"goroutine`, "panickingTokens", `"request_id":"panic-1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, panicSecret) {
		t.Errorf("the panic value was logged:\n%s", out)
	}
	// The process lives on: a second request is answered too, and both
	// 500s are counted.
	resp, err = http.Get(front.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mresp := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(mresp, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(mresp.Body.String(), `imsproxy_requests_total{cache="none",code="5xx",method="GET",route="stock"} 2`) {
		t.Errorf("500s not counted:\n%s", grepLines(mresp.Body.String(), "imsproxy_requests_total"))
	}
}

func TestRecoverPanics_CutsAStartedAnswer(t *testing.T) {
	logs := &testutil.Buffer{}
	h := route.Recover(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/late" {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		panic("secret " + panicSecret)
	}), slog.New(slog.NewJSONHandler(logs, nil)), "admin")
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/early")
	if err != nil {
		t.Fatal(err)
	}
	decodeProxyError(t, resp, 500, "internal_error")

	resp, err = http.Get(srv.URL + "/late")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a panic after the answer began did not cut the connection: the caller cannot tell the answer is broken")
	}
	if strings.Contains(logs.String(), panicSecret) || !strings.Contains(logs.String(), `"panic_type":"string"`) {
		t.Errorf("log:\n%s", logs)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
