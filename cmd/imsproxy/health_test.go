package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/testutil"
)

func TestAdminHosts(t *testing.T) {
	for _, tc := range []struct {
		listen  string
		want    []string
		wantErr string
	}{
		{"", []string{"127.0.0.1:9090"}, ""},
		{"127.0.0.1:19090", []string{"127.0.0.1:19090"}, ""},
		{"[::1]:9090", []string{"[::1]:9090"}, ""},
		{"localhost:9090", []string{"localhost:9090"}, ""},
		{"10.1.2.3:9090", []string{"10.1.2.3:9090"}, ""},
		{"0.0.0.0:9090", []string{"127.0.0.1:9090", "[::1]:9090"}, ""},
		{":9090", []string{"127.0.0.1:9090", "[::1]:9090"}, ""},
		{"[::]:9090", []string{"[::1]:9090", "127.0.0.1:9090"}, ""},
		{"9090", nil, "IMSPROXY_ADMIN_LISTEN=9090: must be host:port"},
		{"127.0.0.1:0", nil, "port 0 picks a free port at start; pass the one it picked with -url"},
	} {
		var environ []string
		if tc.listen != "" {
			environ = []string{"IMSPROXY_ADMIN_LISTEN=" + tc.listen}
		}
		got, err := adminHosts(config.AdminListen(environ))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("adminHosts(%q) = %v, %v; want an error saying %q", tc.listen, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("adminHosts(%q) = %v, %v; want %v", tc.listen, got, err, tc.want)
		}
	}
}

// admin is a stand-in for the admin listener: /healthz answers 200,
// /readyz what ready says.
func admin(t *testing.T, ready func(w http.ResponseWriter)) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { ready(w) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func runHealth(environ []string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"health"}, args...), environ, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHealth(t *testing.T) {
	ready := admin(t, func(w http.ResponseWriter) { _, _ = w.Write([]byte(`{"ready":true}`)) })
	notReady := admin(t, func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"ready":false,"routes":{"aem":{"ready":true},"stock":{"ready":false,"last_error":"IMS answered 401 invalid_client"},"brandportal":{"ready":false}}}`))
	})
	stopping := admin(t, func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"ready":false,"stopping":true,"routes":{"stock":{"ready":true}}}`))
	})
	_, port, _ := net.SplitHostPort(ready)
	closed := testutil.ClosedAddr(t)
	// What a pod's environment may hold besides: none of it matters here.
	others := []string{"IMSPROXY_STOCK_TIMEOUT=soon", "IMSPROXY_NO_SUCH_THING=1", "IMSPROXY_STOCK_CLIENT_SECRET=s3cr3t"}

	for _, tc := range []struct {
		name       string
		environ    []string
		args       []string
		wantCode   int
		wantOut    string
		wantErr    string
		notInStdio string
	}{
		{"ready", []string{"IMSPROXY_ADMIN_LISTEN=" + ready}, nil, 0, "http://" + ready + "/readyz: 200 OK", "", ""},
		{"the rest of the configuration is not read", append(others, "IMSPROXY_ADMIN_LISTEN="+ready), nil, 0, "200 OK", "", "s3cr3t"},
		{"a wildcard listener is asked on loopback", []string{"IMSPROXY_ADMIN_LISTEN=0.0.0.0:" + port}, nil, 0, "http://127.0.0.1:" + port + "/readyz: 200 OK", "", ""},
		{"live", []string{"IMSPROXY_ADMIN_LISTEN=" + notReady}, []string{"-live"}, 0, "http://" + notReady + "/healthz: 200 OK", "", ""},
		{"not ready, with each route's reason", []string{"IMSPROXY_ADMIN_LISTEN=" + notReady}, nil, 1, "",
			"imsproxy health: http://" + notReady + "/readyz answered 503 Service Unavailable: route brandportal: no token yet; route stock: IMS answered 401 invalid_client\n", ""},
		{"shutting down", []string{"IMSPROXY_ADMIN_LISTEN=" + stopping}, nil, 1, "", "answered 503 Service Unavailable: shutting down\n", ""},
		{"-url with the base URL", nil, []string{"-url", "http://" + ready}, 0, "http://" + ready + "/readyz: 200 OK", "", ""},
		{"-url with a path is asked as is", nil, []string{"-url", "http://" + ready + "/healthz"}, 0, "http://" + ready + "/healthz: 200 OK", "", ""},
		{"-url wins over the environment", []string{"IMSPROXY_ADMIN_LISTEN=" + closed}, []string{"-url", "http://" + ready}, 0, "200 OK", "", ""},
		{"nothing listens", []string{"IMSPROXY_ADMIN_LISTEN=" + closed}, nil, 1, "", "is imsproxy running, and is IMSPROXY_ADMIN_LISTEN the same here?", ""},
		{"a malformed IMSPROXY_ADMIN_LISTEN", []string{"IMSPROXY_ADMIN_LISTEN=9090"}, nil, 1, "", "IMSPROXY_ADMIN_LISTEN=9090: must be host:port", ""},
		{"a bad -url", nil, []string{"-url", "127.0.0.1:9090"}, 2, "", "want the admin listener's URL", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runHealth(tc.environ, tc.args...)
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantOut) || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, tc.wantCode, tc.wantOut, tc.wantErr)
			}
			if tc.wantCode == 0 && stderr != "" || tc.wantCode != 0 && stdout != "" {
				t.Errorf("stdout %q, stderr %q: want the outcome on one of them", stdout, stderr)
			}
			if tc.notInStdio != "" && strings.Contains(stdout+stderr, tc.notInStdio) {
				t.Errorf("the output holds %q", tc.notInStdio)
			}
		})
	}
}

// A probe has a deadline: health gives up within -timeout when the admin
// listener accepts but does not answer.
func TestHealth_GivesUpWithinTheTimeout(t *testing.T) {
	release := make(chan struct{})
	hung := admin(t, func(http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) }) // before the server's Close, registered earlier, runs
	start := time.Now()
	code, _, stderr := runHealth([]string{"IMSPROXY_ADMIN_LISTEN=" + hung}, "-timeout", "300ms")
	took := time.Since(start)
	if code != 1 || !strings.Contains(stderr, "no answer in time") {
		t.Errorf("exit %d, stderr %q; want 1 and no answer in time", code, stderr)
	}
	if took > 5*time.Second {
		t.Errorf("took %v with -timeout 300ms", took)
	}
}
