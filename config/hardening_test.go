package config

import (
	"reflect"
	"testing"
)

func TestLoad_HardeningValues(t *testing.T) {
	c := mustLoad(t, with(oauthStock(),
		"IMSPROXY_ALLOWED_HOSTS", "Dev.Example.test, 10.0.0.5,[::2],",
		"IMSPROXY_ALLOWED_ORIGINS", "https://App.example.com/, http://localhost:3000,https://x.example.com:443,http://[::1]:8080",
		"IMSPROXY_TOKEN_WAIT", "1500ms",
		"IMSPROXY_MAX_INFLIGHT_BYTES", "16777216",
	))
	if want := []string{"dev.example.test", "10.0.0.5", "[::2]"}; !reflect.DeepEqual(c.AllowedHosts, want) {
		t.Errorf("AllowedHosts = %q, want %q", c.AllowedHosts, want)
	}
	// As browsers write Origin: lower case, no default port, no slash.
	if want := []string{"https://app.example.com", "http://localhost:3000", "https://x.example.com", "http://[::1]:8080"}; !reflect.DeepEqual(c.AllowedOrigins, want) {
		t.Errorf("AllowedOrigins = %q, want %q", c.AllowedOrigins, want)
	}
	if c.TokenWait.Milliseconds() != 1500 || c.MaxInflightBytes != 16<<20 {
		t.Errorf("TokenWait %v, MaxInflightBytes %d", c.TokenWait, c.MaxInflightBytes)
	}
}

func TestLoad_HardeningProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"host with a scheme or port", with(oauthStock(), "IMSPROXY_ALLOWED_HOSTS", "http://a.example,b.example:8080,ok.example"), []string{
			`IMSPROXY_ALLOWED_HOSTS: "b.example:8080" is not a host name or IP address: list names such as dev.example.test, without scheme or port`,
			`IMSPROXY_ALLOWED_HOSTS: "http://a.example" is not a host name or IP address: list names such as dev.example.test, without scheme or port`}},
		{"origins that are not origins", with(oauthStock(), "IMSPROXY_ALLOWED_ORIGINS", "*,null,app.example.com,https://a.example/path,ftp://a.example,https://u@a.example"), []string{
			`IMSPROXY_ALLOWED_ORIGINS: "*" is not an origin: list each as a browser sends it, scheme and host and a port only when needed, such as https://app.example.com`,
			`IMSPROXY_ALLOWED_ORIGINS: "app.example.com" is not an origin: list each as a browser sends it, scheme and host and a port only when needed, such as https://app.example.com`,
			`IMSPROXY_ALLOWED_ORIGINS: "ftp://a.example" is not an origin: list each as a browser sends it, scheme and host and a port only when needed, such as https://app.example.com`,
			`IMSPROXY_ALLOWED_ORIGINS: "https://a.example/path" is not an origin: list each as a browser sends it, scheme and host and a port only when needed, such as https://app.example.com`,
			`IMSPROXY_ALLOWED_ORIGINS: "https://u@a.example" is not an origin: list each as a browser sends it, scheme and host and a port only when needed, such as https://app.example.com`,
			`IMSPROXY_ALLOWED_ORIGINS: "null" is not an origin: list each as a browser sends it, scheme and host and a port only when needed, such as https://app.example.com`}},
		{"no token wait", with(oauthStock(), "IMSPROXY_TOKEN_WAIT", "0s"),
			[]string{"IMSPROXY_TOKEN_WAIT: must be more than 0, e.g. 5s"}},
		{"in-flight bound too small", with(oauthStock(), "IMSPROXY_MAX_INFLIGHT_BYTES", "1048576"),
			[]string{"IMSPROXY_MAX_INFLIGHT_BYTES: must be at least 16777216 (16 MiB): one licensing answer held for rewriting may take 8 MiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblems(t, loadProblems(t, tc.env), tc.want...)
		})
	}
}
