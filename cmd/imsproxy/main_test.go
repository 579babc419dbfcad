package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
)

func TestRun_Commands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		environ    []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"version", []string{"version"}, nil, 0, "imsproxy ", ""},
		{"-v", []string{"-v"}, nil, 0, "imsproxy ", ""},
		{"--version", []string{"--version"}, nil, 0, "imsproxy ", ""},
		{"help", []string{"help"}, nil, 0, "usage: imsproxy", ""},
		{"unknown command", []string{"frobnicate"}, nil, 2, "", `unknown command "frobnicate"`},
		{"no configuration", nil, nil, 2, "", "imsproxy sandbox"},
		{"invalid configuration names the variable", []string{"serve"},
			[]string{"IMSPROXY_STOCK_CLIENT_ID=id", "IMSPROXY_STOCK_TIMEOUT=soon"}, 2, "", "IMSPROXY_STOCK_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, tt.environ, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// Every command follows one convention: -h prints its usage on stdout and
// exits 0 without doing anything else; an unknown flag or an unexpected
// argument exits 2 with the problem and the usage on stderr.
func TestCommands_HelpAndUnknownArguments(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {c.name, "-h", "--bogus"}, {"help", c.name}} {
				var stdout, stderr bytes.Buffer
				code := run(args, nil, &stdout, &stderr)
				if code != 0 || !strings.HasPrefix(stdout.String(), "usage: imsproxy") || stderr.Len() != 0 {
					t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout only", args, code, stdout.String(), stderr.String())
				}
			}
			for _, args := range [][]string{{c.name, "--bogus"}, {c.name, "-bogus=1"}, {c.name, "unexpected", "arguments"}} {
				var stdout, stderr bytes.Buffer
				code := run(args, nil, &stdout, &stderr)
				if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "usage: imsproxy") {
					t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and the problem and usage on stderr", args, code, stdout.String(), stderr.String())
				}
			}
		})
	}
	for _, args := range [][]string{{"--bogus"}, {"frobnicate"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, nil, &stdout, &stderr); code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "usage: imsproxy") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and the usage on stderr", args, code, stderr.String())
		}
	}
	var stdout bytes.Buffer
	if code := run([]string{"-h"}, nil, &stdout, io.Discard); code != 0 || !strings.Contains(stdout.String(), "caller-key") {
		t.Errorf("-h: exit %d, stdout %q; want the list of commands", code, stdout.String())
	}
}

// The top-level help names every variable the configuration reads, the
// command that checks them and where the documentation is.
func TestUsage_NamesTheVariablesAndTheDocumentation(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"-h"}, nil, &stdout, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stdout.String()
	for _, w := range append(config.GlobalVariables(), "IMSPROXY_<ROUTE>_", "'imsproxy check'", docsURL, "configuration.md") {
		if !strings.Contains(help, w) {
			t.Errorf("the help lacks %q", w)
		}
	}
	// A route variable stands as a word of the list: CLIENT_SECRET must
	// not pass for being inside CLIENT_SECRET_FILE.
	words := strings.FieldsFunc(help, func(r rune) bool { return r == ' ' || r == ',' || r == '\n' })
	for _, v := range config.RouteVariables() {
		if !slices.Contains(words, v) {
			t.Errorf("the help lacks the route variable %s", v)
		}
	}
	for _, line := range strings.Split(help, "\n") {
		if len(line) > 100 {
			t.Errorf("line longer than 100 columns: %q", line)
		}
	}
}
