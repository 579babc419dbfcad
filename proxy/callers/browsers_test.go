package callers

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBrowsers_HostAllowed(t *testing.T) {
	b := &Browsers{CheckHost: true, Hosts: []string{"dev.example.test", "[fd00::1]"}}
	for host, want := range map[string]bool{
		"localhost": true, "localhost:8080": true, "LocalHost:1": true,
		"127.0.0.1": true, "127.0.0.1:8080": true, "127.255.255.254:1": true,
		"[::1]": true, "[::1]:8080": true,
		"dev.example.test": true, "dev.example.test:443": true, "[fd00::1]:80": true,
		"":                        true, // HTTP/1.0 without Host
		":80":                     false,
		"::1":                     false, // unbracketed
		"[::1]x":                  false,
		"localhost:":              false,
		"localhost:8o80":          false,
		"localhost:123456":        false,
		"localhost.":              false,
		"sub.localhost":           false,
		"0x7f.0.0.1":              false,
		"127.1":                   false,
		"2130706433":              false,
		"[::ffff:127.0.0.1]:80":   true, // IPv4 loopback, mapped
		"[fe80::1%25lo]:80":       false,
		"10.0.0.1":                false,
		"rebind.attacker.example": false,
	} {
		if got := b.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestBrowsers_HostAllowedOffLoopback(t *testing.T) {
	b := &Browsers{CheckHost: true, Addresses: true, Hosts: []string{"imsproxy.apps.svc"}}
	for host, want := range map[string]bool{
		"localhost:8080": true, "127.0.0.1": true, "[::1]:1": true,
		"imsproxy.apps.svc:8080": true,
		"10.1.2.3":               true, "10.1.2.3:9090": true, "[fd00::1]:80": true, "[::ffff:10.0.0.1]": true,
		"":                        true,
		"fd00::1":                 false, // unbracketed
		"[fe80::1%25eth0]:80":     false,
		"10.1.2.3.nip.io":         false,
		"rebind.attacker.example": false,
		"imsproxy":                false,
	} {
		if got := b.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "rebind.attacker.example"
	if no := b.Check(r); no == nil || no.Code != "host_not_allowed" || !strings.Contains(no.Message, "an IP address") {
		t.Fatalf("off loopback, a rebinding name: %+v", no)
	}
}

func TestBrowsers_CheckWithoutHostCheck(t *testing.T) {
	b := &Browsers{} // a listener with a callers file
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "anything.example"
	if no := b.Check(r); no != nil {
		t.Fatalf("Host checked without CheckHost: %+v", no)
	}
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if no := b.Check(r); no == nil || no.Code != "cross_site_request" {
		t.Fatalf("cross-site request: %+v", no)
	}
}
