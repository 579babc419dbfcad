package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy"
	"github.com/imsproxy/imsproxy/tokens"
)

// token prints an access token for one route: the token alone on
// stdout, for scripts. It performs one exchange of its own rather than
// asking a running proxy: an endpoint handing out tokens would give every
// caller who can reach it the organisation's credentials.
func token(args, environ []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("token", "usage: imsproxy token [-timeout 30s] [ROUTE]\n\n"+
		"Prints an access token for ROUTE (optional when one route is configured) and nothing else on stdout.\n"+
		"Each call is a new exchange with IMS, which may throttle a client that asks too often:\n"+
		"reuse the token for its lifetime (24 h) instead of calling this in a loop.\n\n", stderr)
	timeout := fs.Duration("timeout", tokens.DefaultFetchTimeout, "bound on the token exchange")
	if err := fs.Parse(args); err != nil {
		return exitUsage(err)
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "imsproxy token: one route at a time, got %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	cfg, err := loadConfig(environ, stderr)
	if err != nil {
		return 2
	}
	rc, msg := pickRoute(cfg, fs.Arg(0))
	if rc == nil {
		fmt.Fprintf(stderr, "imsproxy token: %s\n", msg)
		return 2
	}
	if rc.Auth == config.AuthNone {
		fmt.Fprintf(stderr, "imsproxy token: route %s has AUTH=none: it adds no token\n", rc.Name)
		return 1
	}
	tok, err := fetchToken(context.Background(), rc, *timeout)
	if err != nil {
		code, desc, hint := explain(err)
		fmt.Fprintf(stderr, "imsproxy token: route %s: %s: %s\n", rc.Name, code, desc)
		if hint != "" {
			fmt.Fprintf(stderr, "hint: %s\n", hint)
		}
		return 1
	}
	fmt.Fprintln(stdout, tok.Value)
	return 0
}

// pickRoute finds the route called name, or the only route when name is
// empty; otherwise it says what the operator may choose from.
func pickRoute(cfg *config.Config, name string) (*config.Route, string) {
	names := make([]string, len(cfg.Routes))
	for i := range cfg.Routes {
		names[i] = cfg.Routes[i].Name
		if strings.EqualFold(cfg.Routes[i].Name, name) || (name == "" && len(cfg.Routes) == 1) {
			return &cfg.Routes[i], ""
		}
	}
	if name == "" {
		return nil, "name the route: one of " + strings.Join(names, ", ")
	}
	return nil, fmt.Sprintf("no route %q: the configured routes are %s", name, strings.Join(names, ", "))
}

// fetchToken performs one token exchange for rc, through the transport the
// proxy would use (CA_FILE, HTTPS_PROXY/NO_PROXY). A token that is already
// expired is an error: the proxy would refuse it too.
func fetchToken(ctx context.Context, rc *config.Route, timeout time.Duration) (tokens.Token, error) {
	client := &http.Client{Transport: proxy.NewTransport(rc), Timeout: timeout}
	defer client.CloseIdleConnections()
	src, err := tokens.NewSource(rc, client)
	if err != nil {
		return tokens.Token{}, err
	}
	if src == nil {
		return tokens.Token{}, errors.New("AUTH=none: no token")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tok, err := src.Fetch(ctx)
	if err == nil && !tok.Expiry.IsZero() && !tok.Expiry.After(time.Now()) {
		err = fmt.Errorf("IMS returned a token that expired at %s, which is already past: check this host's clock",
			tok.Expiry.UTC().Format(time.RFC3339))
	}
	return tok, err
}

// explain splits a token error into its code (tokens.ErrorCode), the
// description and the operator hint ("" when there is none).
func explain(err error) (code, description, hint string) {
	code = tokens.ErrorCode(err)
	var ie *tokens.IMSError
	if !errors.As(err, &ie) {
		return code, err.Error(), ""
	}
	description = ie.Description
	if description == "" || ie.StatusCode == 0 {
		description = ie.Error()
	}
	return code, description, ie.Hint()
}

// newFlagSet returns the flags of a command whose usage (on -h or a bad
// flag) is the text followed by the flags' defaults.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// exitUsage is the exit code of a command whose flags did not parse: 0 for
// -h, which printed the usage as asked, else 2.
func exitUsage(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
