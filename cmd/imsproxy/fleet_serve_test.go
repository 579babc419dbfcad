package main

import (
	"io"
	"testing"
)

// A fleet configuration that check accepts starts serve, Redis reachable
// or not, whatever the length of the secret the shared token's key is
// derived from.
func TestServe_StartsInFleetModeWhatCheckAccepts(t *testing.T) {
	for _, secret := range []string{"s", "a-client-secret-of-ordinary-length"} {
		environ := []string{
			"IMSPROXY_ROUTES=stock", "IMSPROXY_IMS_URL=http://127.0.0.1:1", "IMSPROXY_ADMIN_LISTEN=127.0.0.1:0",
			"IMSPROXY_STOCK_LISTEN=127.0.0.1:0", "IMSPROXY_STOCK_UPSTREAM=http://127.0.0.1:1",
			"IMSPROXY_STOCK_CLIENT_ID=client", "IMSPROXY_STOCK_CLIENT_SECRET=" + secret, "IMSPROXY_STOCK_SCOPES=openid",
			"IMSPROXY_STOCK_ALLOW_LICENSE=true", "IMSPROXY_STOCK_LICENSE_DAILY_LIMIT=5", "IMSPROXY_STOCK_SHARE_TOKEN=true",
			"IMSPROXY_REDIS_URL=redis://" + closedAddr(t) + "/0", "IMSPROXY_REDIS_CACHE_URL=redis://" + closedAddr(t) + "/1",
		}
		srv, _, _, code := start(environ, io.Discard)
		if srv == nil {
			t.Fatalf("secret of %d bytes: serve refused to start (exit %d) a configuration check accepts", len(secret), code)
		}
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	}
}
