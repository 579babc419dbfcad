package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/proxy/fleet"
)

// auditCmd prints the fleet's audit stream as JSON lines, oldest first.
func auditCmd(args, environ []string, stdout, stderr io.Writer) int {
	fs := newFlags("audit", "usage: imsproxy audit [-since 24h]\n\n"+
		"Prints the licensing attempts of the whole fleet, kept in Redis (fleet mode, IMSPROXY_REDIS_URL),\n"+
		"as JSON lines, oldest first. Reads only the IMSPROXY_REDIS_* variables.\n", stdout, stderr)
	since := fs.Duration("since", 24*time.Hour, "how far back to print")
	if code, ok := fs.parse(args, 0); !ok {
		return code
	}
	if *since <= 0 {
		fmt.Fprintf(stderr, "imsproxy audit: -since %v: give how far back to print, a positive duration such as 24h (records are kept 30 days)\n", *since)
		return 2
	}
	cfg, err := config.LoadRedis(environ)
	if err != nil {
		fmt.Fprintf(stderr, "imsproxy: invalid configuration:\n%v\n", err)
		return 2
	}
	if cfg == nil {
		fmt.Fprintln(stderr, "imsproxy audit: neither IMSPROXY_REDIS_URL nor IMSPROXY_REDIS_URL_FILE is set: the audit stream is kept in Redis in fleet mode (without it, read IMSPROXY_AUDIT_LOG)")
		return 2
	}
	c, err := fleet.New(cfg, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "imsproxy audit: %v\n", err)
		return 2
	}
	defer c.Close()
	if _, err := c.PrintAudit(context.Background(), time.Now().Add(-*since), stdout); err != nil {
		fmt.Fprintf(stderr, "imsproxy audit: %v\n", err)
		return 1
	}
	return 0
}
