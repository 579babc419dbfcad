package main

import (
	"bytes"
	"strings"
	"testing"
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
