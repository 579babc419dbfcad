// Command imsproxy lets applications call Adobe Stock, AEM and Brand Portal
// without holding Adobe credentials: it obtains and renews Adobe IMS access
// tokens and adds them to every request it forwards.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// command is one of imsproxy's commands: run gets the arguments after
// its name and returns the exit code (0 success, 1 failure at run time, 2
// invalid configuration or usage).
type command struct {
	name, summary string
	run           func(args, environ []string, stdout, stderr io.Writer) int
}

// commands lists every command; the first is the default.
var commands = []command{
	{"serve", "run the proxy from the environment (the default)", serve},
	{"check", "validate the configuration as serve does and obtain one token per route", check},
	{"keygen", "write a private key and certificate for the Developer Console",
		func(args, _ []string, stdout, stderr io.Writer) int { return keygen(args, stdout, stderr) }},
	{"token", "print an access token for a route (for scripts)", token},
	{"audit", "print the fleet's licensing audit trail from Redis as JSON lines", auditCmd},
	{"caller-key", "mint a caller key for IMSPROXY_CALLERS_FILE",
		func(args, _ []string, stdout, stderr io.Writer) int { return callerKey(args, stdout, stderr) }},
	{"health", "exit 0 when the running proxy is ready (or, with -live, alive): a container probe", health},
	{"sandbox", "run a built-in Adobe emulator and the proxy in front of it, and print what to try",
		func(args, _ []string, stdout, stderr io.Writer) int { return sandbox(args, stdout, stderr) }},
	{"version", "print the version, VCS revision and time, and Go version (also -v, --version)",
		func(args, _ []string, stdout, stderr io.Writer) int { return printVersion(args, stdout, stderr) }},
}

// docsURL is where the documentation of the source tree (docs/) is read.
const docsURL = "https://github.com/imsproxy/imsproxy/tree/main/docs"

// usage is the top-level help: the commands, the environment variables
// that configure the proxy, and where the documentation is.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: imsproxy [command] [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString("\n'imsproxy COMMAND -h' describes a command.\n\n")
	b.WriteString("The proxy is configured by environment variables only; 'imsproxy check' validates them\n" +
		"as serve does and obtains one token per route.\n")
	wrap(&b, "  global:    ", config.GlobalVariables())
	wrap(&b, "  per route: IMSPROXY_<ROUTE>_ followed by ", config.RouteVariables())
	b.WriteString("\nDocumentation: " + docsURL + "\n" +
		"  configuration.md (every variable), credentials.md, operations.md, kubernetes.md, docker.md.\n")
	return b.String()
}

// wrap writes head and then words, comma-separated, in lines of at most
// 100 characters indented under head's first column.
func wrap(b *strings.Builder, head string, words []string) {
	line := head
	for i, w := range words {
		if i < len(words)-1 {
			w += ","
		}
		if len(line)+1+len(w) > 100 && line != head {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = "             "
		}
		if line[len(line)-1] != ' ' {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
}

// run dispatches a command and returns its exit code.
func run(args, environ []string, stdout, stderr io.Writer) int {
	name := commands[0].name
	switch {
	case len(args) == 0:
	case args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help":
		if len(args) > 1 && args[0] == "help" {
			return run([]string{args[1], "-h"}, environ, stdout, stderr)
		}
		fmt.Fprint(stdout, usage())
		return 0
	case args[0] == "-v" || args[0] == "-version" || args[0] == "--version":
		name, args = "version", args[1:]
	case strings.HasPrefix(args[0], "-"):
		// Flags of the default command.
	default:
		name, args = args[0], args[1:]
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(args, environ, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "imsproxy: unknown command %q\n\n%s", name, usage())
	return 2
}

// printVersion prints the version, the VCS revision and its time when the
// build recorded them, and the Go version.
func printVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "usage: imsproxy version\n\nPrints the version, the VCS revision and time, and the Go version.\n", stdout, stderr)
	if code, ok := fs.parse(args, 0); !ok {
		return code
	}
	v := version.Get()
	fmt.Fprintf(stdout, "imsproxy %s", v.Version)
	if v.Revision != "" {
		fmt.Fprintf(stdout, " (revision %s", v.Revision)
		if !v.Time.IsZero() {
			fmt.Fprintf(stdout, ", %s", v.Time.UTC().Format(time.RFC3339))
		}
		if v.Modified {
			fmt.Fprint(stdout, ", modified")
		}
		fmt.Fprint(stdout, ")")
	}
	fmt.Fprintf(stdout, " %s %s/%s\n", v.GoVersion, runtime.GOOS, runtime.GOARCH)
	return 0
}
