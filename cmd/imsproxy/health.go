package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// health asks the admin listener whether the proxy is ready (/readyz) or,
// with -live, alive (/healthz): exit 0 on a 200, 1 otherwise, with the
// reason on stderr. It is what an exec probe and the image's HEALTHCHECK
// run, so it reads nothing but IMSPROXY_ADMIN_LISTEN (the rest of the
// configuration is the server's business, and a probe runs with the
// container's environment) and gives up within -timeout.
func health(args, environ []string, stdout, stderr io.Writer) int {
	fs := newFlags("health", "usage: imsproxy health [-live] [-url URL] [-timeout 2s]\n\n"+
		"Asks the running proxy's admin listener for /readyz (or /healthz with -live), as a container\n"+
		"probe does. Without -url it reads "+config.AdminListenVariable+" (default "+config.AdminListenDefault+") and, when\n"+
		"that is a wildcard address such as 0.0.0.0:9090, asks on loopback.\n"+
		"Exit status: 0 the answer is 200, 1 anything else (the reason is on stderr), 2 usage.\n", stdout, stderr)
	live := fs.Bool("live", false, "ask /healthz (the process serves) instead of /readyz (every route holds a valid token)")
	base := fs.String("url", "", "the admin listener's base URL, e.g. http://10.0.0.7:9090 (a URL with a path is asked as is)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	if code, ok := fs.parse(args, 0); !ok {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "imsproxy health: -timeout must be positive\n")
		return 2
	}
	path := "/readyz"
	if *live {
		path = "/healthz"
	}
	var targets []string
	if *base != "" {
		u, err := url.Parse(*base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fmt.Fprintf(stderr, "imsproxy health: -url %q: want the admin listener's URL, e.g. http://127.0.0.1:9090\n", *base)
			return 2
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = path
		}
		targets = []string{u.String()}
	} else {
		hosts, err := adminHosts(config.AdminListen(environ))
		if err != nil {
			fmt.Fprintf(stderr, "imsproxy health: %v\n", err)
			return 1
		}
		for _, h := range hosts {
			targets = append(targets, "http://"+h+path)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var err error
	for _, target := range targets {
		var status string
		status, err = probe(ctx, target)
		if err == nil {
			fmt.Fprintf(stdout, "%s: %s\n", target, status)
			return 0
		}
		// A wildcard listener is reachable on either loopback; try the
		// next only when this one could not be connected to.
		var de *dialError
		if !errors.As(err, &de) {
			break
		}
	}
	fmt.Fprintf(stderr, "imsproxy health: %v\n", err)
	return 1
}

// dialError is a connection that could not be made.
type dialError struct{ msg string }

func (e *dialError) Error() string { return e.msg }

// probe GETs target and returns its status line, or why it is not a 200.
func probe(ctx context.Context, target string) (string, error) {
	client := &http.Client{
		// A probe asks the proxy itself, never through HTTPS_PROXY.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("%s: no answer in time (%v)", target, ctx.Err())
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			cause := op.Err
			var sys *os.SyscallError
			if errors.As(cause, &sys) {
				cause = sys.Err // "connection refused" rather than "connect: connection refused"
			}
			return "", &dialError{fmt.Sprintf("%s: cannot connect: %v (is imsproxy running, and is IMSPROXY_ADMIN_LISTEN the same here?)", target, cause)}
		}
		return "", fmt.Errorf("%s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s answered %s%s", target, resp.Status, notReady(body))
	}
	return resp.Status, nil
}

// notReady summarises a /readyz body that is not ready: the shutdown, and
// each route without a token with its last error.
func notReady(body []byte) string {
	var r struct {
		Stopping bool `json:"stopping"`
		Routes   map[string]struct {
			Ready     bool   `json:"ready"`
			LastError string `json:"last_error"`
		} `json:"routes"`
	}
	if json.Unmarshal(body, &r) != nil {
		return ""
	}
	var why []string
	if r.Stopping {
		why = append(why, "shutting down")
	}
	for _, name := range slices.Sorted(maps.Keys(r.Routes)) {
		rt := r.Routes[name]
		switch {
		case rt.Ready:
		case rt.LastError != "":
			why = append(why, "route "+name+": "+rt.LastError)
		default:
			why = append(why, "route "+name+": no token yet")
		}
	}
	if len(why) == 0 {
		return ""
	}
	return ": " + strings.Join(why, "; ")
}

// adminHosts returns where to reach an admin listener on listen (as
// IMSPROXY_ADMIN_LISTEN sets it): the address itself, or the loopback
// addresses when it listens on every interface.
func adminHosts(listen string) ([]string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return nil, fmt.Errorf("%s=%s: must be host:port, e.g. %s", config.AdminListenVariable, listen, config.AdminListenDefault)
	}
	if port == "0" {
		return nil, fmt.Errorf("%s=%s: port 0 picks a free port at start; pass the one it picked with -url", config.AdminListenVariable, listen)
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.Equal(net.IPv4zero)):
		return []string{net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port)}, nil
	case ip != nil && ip.Equal(net.IPv6unspecified):
		return []string{net.JoinHostPort("::1", port), net.JoinHostPort("127.0.0.1", port)}, nil
	}
	return []string{net.JoinHostPort(host, port)}, nil
}
