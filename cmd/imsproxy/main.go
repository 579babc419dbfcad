// Command imsproxy lets applications call Adobe Stock, AEM and Brand Portal
// without holding Adobe credentials: it obtains and renews Adobe IMS access
// tokens and adds them to every request it forwards.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/imsproxy/imsproxy/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

const usage = `usage: imsproxy [command]

commands:
  serve      run the proxy from the environment (the default)
  check      validate the configuration and obtain one token per route
  keygen     write a private key and certificate for the Developer Console
  token      print an access token for a route (for scripts)
  caller-key mint a caller key for IMSPROXY_CALLERS_FILE (-name, -routes, -license)
  sandbox    run a built-in Adobe emulator and the proxy in front of it, and print what to try
  version    print the version
`

// run dispatches a command and returns the exit code: 0 success, 1 failure
// at run time, 2 invalid configuration or usage.
func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
		return serve(environ, stderr)
	case "check":
		return check(args[1:], environ, stdout, stderr)
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "token":
		return token(args[1:], environ, stdout, stderr)
	case "caller-key":
		return callerKey(args[1:], stdout, stderr)
	case "sandbox":
		return sandbox(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "imsproxy %s %s %s/%s\n", version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "imsproxy: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
