// Package testroute builds the route configurations tests share. It is
// apart from testutil, which config's own tests import.
package testroute

import (
	"net/url"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// Stock is the configuration of a stock route named stock in front of
// upstream, with OAuth credentials of client client-id-1, no cache and no
// licensing.
func Stock(t testing.TB, upstream string) *config.Route {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	return &config.Route{
		Name:         "stock",
		Type:         config.TypeStock,
		Listen:       "127.0.0.1:0",
		Upstream:     u,
		Auth:         config.AuthOAuth,
		Credentials:  config.Credentials{ClientID: "client-id-1"},
		Product:      "imsproxy/test",
		Timeout:      5 * time.Second,
		MaxBodyBytes: 4 << 20,
	}
}
