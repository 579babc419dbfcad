package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy"
	"github.com/imsproxy/imsproxy/proxy/fleet"
	"github.com/imsproxy/imsproxy/tokens"
)

// checkReport is what `imsproxy check -json` prints.
type checkReport struct {
	OK       bool           `json:"ok"`
	Problems []checkProblem `json:"problems,omitempty"` // configuration problems (exit 2)
	Routes   []routeCheck   `json:"routes"`
	Redis    *redisCheck    `json:"redis,omitempty"` // fleet mode
	// Warnings are what serve would meet here now without it being a
	// configuration problem: a listener's port in use (perhaps by the
	// very proxy being checked).
	Warnings []string `json:"warnings,omitempty"`
}

// redisCheck is the outcome of pinging the fleet's Redis and loading the
// license scripts into it.
type redisCheck struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

type checkProblem struct {
	Variable string `json:"variable"`
	Message  string `json:"message"`
}

// routeCheck is the outcome of one route's token exchange.
type routeCheck struct {
	Route     string    `json:"route"`
	Auth      string    `json:"auth"`
	IMSURL    string    `json:"ims_url,omitempty"`
	OK        bool      `json:"ok"`
	Expiry    time.Time `json:"token_expiry,omitzero"`
	ExpiresIn string    `json:"token_expires_in,omitempty"`
	// Error is the IMS error code (or imsproxy's, tokens.ErrorCode).
	Error       string `json:"error,omitempty"`
	Description string `json:"error_description,omitempty"`
	Hint        string `json:"hint,omitempty"`

	CertificateExpiry  time.Time `json:"certificate_expiry,omitzero"`
	CertificateWarning string    `json:"certificate_warning,omitempty"`
}

// check validates the configuration and performs one real token exchange
// per route: exit 0 when every route got a token, 1 when one did not, 2
// when the configuration is invalid, so that a pipeline can gate on it.
func check(args, environ []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "usage: imsproxy check [-json] [-timeout 30s]\n\n"+
		"Validates the configuration as serve does and obtains one token per route from IMS.\n"+
		"A listener address that cannot be bound now (a port in use) is a warning.\n"+
		"Exit status: 0 every route got a token, 1 a route did not, 2 invalid configuration.\n", stdout, stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	timeout := fs.Duration("timeout", tokens.DefaultFetchTimeout, "bound on each route's token exchange")
	if code, ok := fs.parse(args, 0); !ok {
		return code
	}
	cfg, err := loadConfig(environ, stderr)
	if err != nil {
		if *asJSON {
			writeReport(stdout, checkReport{Problems: problemsOf(err), Routes: []routeCheck{}})
		}
		return 2
	}
	report := checkRoutes(context.Background(), cfg, *timeout, time.Now)
	for _, err := range proxy.ProbeListeners(cfg) {
		report.Warnings = append(report.Warnings, err.Error()+" (serve could not start here now, unless this is the proxy already running)")
	}
	if cfg.Redis != nil {
		report.Redis = checkRedis(context.Background(), cfg.Redis)
		report.OK = report.OK && report.Redis.OK
	}
	if *asJSON {
		writeReport(stdout, report)
	} else {
		printReport(stdout, report)
	}
	if !report.OK {
		return 1
	}
	return 0
}

// checkRoutes exchanges for a token on every route at once and reports in
// configuration order.
func checkRoutes(ctx context.Context, cfg *config.Config, timeout time.Duration, now func() time.Time) checkReport {
	report := checkReport{OK: true, Routes: make([]routeCheck, len(cfg.Routes))}
	var wg sync.WaitGroup
	for i := range cfg.Routes {
		wg.Go(func() { report.Routes[i] = checkRoute(ctx, &cfg.Routes[i], timeout, now) })
	}
	wg.Wait()
	for _, r := range report.Routes {
		report.OK = report.OK && r.OK
	}
	return report
}

func checkRoute(ctx context.Context, rc *config.Route, timeout time.Duration, now func() time.Time) routeCheck {
	r := routeCheck{Route: rc.Name, Auth: string(rc.Auth), CertificateExpiry: rc.Credentials.CertificateExpiry}
	r.CertificateWarning = tokens.CertificateWarning(r.CertificateExpiry, now())
	if rc.Auth == config.AuthJWT || rc.Auth == config.AuthOAuth {
		r.IMSURL = rc.IMSURL
	}
	if rc.Auth == config.AuthNone {
		r.OK = true
		return r
	}
	tok, err := fetchToken(ctx, rc, timeout)
	if err != nil {
		r.Error, r.Description, r.Hint = explain(err)
		if m := expectedMetascope[rc.Type]; r.Error == "invalid_scope" && rc.Auth == config.AuthJWT && m != "" {
			r.Hint += "; " + m
		}
		return r
	}
	r.OK, r.Expiry = true, tok.Expiry
	if !tok.Expiry.IsZero() {
		r.ExpiresIn = shortDuration(tok.Expiry.Sub(now()))
	}
	return r
}

// checkRedis pings the fleet's Redis, checks its version and loads the
// scripts into it, which also checks that the ACL user may run them.
func checkRedis(ctx context.Context, cfg *config.Redis) *redisCheck {
	c, err := fleet.New(cfg, nil, nil)
	if err == nil {
		defer c.Close()
		err = c.Ping(ctx)
	}
	if err == nil {
		err = c.CheckVersion(ctx)
	}
	if err == nil {
		err = c.LoadScripts(ctx)
	}
	if err != nil {
		return &redisCheck{Error: err.Error()}
	}
	return &redisCheck{OK: true}
}

// expectedMetascope says which metascope the Adobe Developer Console binds
// to a service account of each route type: invalid_scope on such a route most
// often means METASCOPES (or the JWT payload) names another one, such as
// User Management's ent_user_sdk on a Stock route.
var expectedMetascope = map[config.RouteType]string{
	config.TypeStock: "an Adobe Stock service account is bound to the metascope ent_stocksearch_sdk",
	config.TypeAEM:   "AEM as a Cloud Service service credentials are bound to the metascope ent_aem_cloud_api",
}

// printReport writes the report for a person: one line per route, then a
// hint and a certificate line where there is something to say.
func printReport(w io.Writer, report checkReport) {
	failed := 0
	for _, r := range report.Routes {
		fmt.Fprintf(w, "route %s (%s", r.Route, r.Auth)
		if r.IMSURL != "" {
			fmt.Fprintf(w, ", IMS %s", r.IMSURL)
		}
		fmt.Fprint(w, "): ")
		switch {
		case !r.OK:
			failed++
			fmt.Fprintf(w, "FAILED %s: %s\n", r.Error, r.Description)
			if r.Hint != "" {
				fmt.Fprintf(w, "  hint: %s\n", r.Hint)
			}
		case r.Auth == string(config.AuthNone):
			fmt.Fprintln(w, "no token needed")
		case r.Auth == string(config.AuthToken):
			fmt.Fprintf(w, "fixed token %s\n", expiresIn(r))
		default:
			fmt.Fprintf(w, "token retrieved successfully, %s\n", expiresIn(r))
		}
		switch {
		case r.CertificateWarning != "":
			fmt.Fprintf(w, "  WARNING: %s\n", r.CertificateWarning)
		case !r.CertificateExpiry.IsZero():
			fmt.Fprintf(w, "  certificate valid until %s\n", r.CertificateExpiry.UTC().Format(time.RFC3339))
		}
	}
	switch r := report.Redis; {
	case r == nil:
	case r.OK:
		fmt.Fprintln(w, "redis (fleet mode): reachable, scripts loaded")
	default:
		fmt.Fprintf(w, "redis (fleet mode): FAILED %s\n", r.Error)
	}
	for _, warning := range report.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warning)
	}
	redisFailed := report.Redis != nil && !report.Redis.OK
	switch {
	case failed > 0 && redisFailed:
		fmt.Fprintf(w, "%d of %d routes failed, and Redis\n", failed, len(report.Routes))
	case failed > 0:
		fmt.Fprintf(w, "%d of %d routes failed\n", failed, len(report.Routes))
	case redisFailed:
		fmt.Fprintln(w, "every route obtained a token; Redis failed")
	}
}

func expiresIn(r routeCheck) string {
	if r.ExpiresIn == "" {
		return "with no known expiry"
	}
	return "expires in " + r.ExpiresIn
}

func writeReport(w io.Writer, report checkReport) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(report)
}

func problemsOf(err error) []checkProblem {
	var ps config.Problems
	if !errors.As(err, &ps) {
		return []checkProblem{{Message: err.Error()}}
	}
	out := make([]checkProblem, len(ps))
	for i, p := range ps {
		out[i] = checkProblem{Variable: p.Var, Message: p.Message}
	}
	return out
}

// shortDuration renders d to the minute as IMS lifetimes are read:
// "23h59m", "5m", and seconds only under a minute ("3s").
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(max(d, 0)/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
}
