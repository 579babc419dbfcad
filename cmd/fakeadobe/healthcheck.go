package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// errUnhealthy makes the process exit 1, what a container HEALTHCHECK reads
// as unhealthy (2 is reserved there).
var errUnhealthy = errors.New("unhealthy")

// healthcheck probes an emulator started with the same -listen and
// -credentials-out: its control API answers, and its credential files are
// written (they come last, so a service that needs them may start). It is
// the container health check of an image without a shell or curl.
func healthcheck(ctx context.Context, listen, credsOut string, useTLS bool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	scheme, client := "http", http.DefaultClient
	if useTLS {
		// The emulator's CA is generated at start: the probe trusts the
		// one written beside the credentials.
		if credsOut == "" {
			return errors.New("-healthcheck -tls needs -credentials-out, where the CA is written")
		}
		pem, err := os.ReadFile(filepath.Join(credsOut, "ca.crt"))
		if err != nil {
			return fmt.Errorf("%w: CA not written yet: %v", errUnhealthy, err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+listen+fakeadobe.ControlPrefix+"stats", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errUnhealthy, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %s", errUnhealthy, req.URL, resp.Status)
	}
	if credsOut != "" {
		// WriteFiles writes imsproxy.env last.
		if _, err := os.Stat(filepath.Join(credsOut, "imsproxy.env")); err != nil {
			return fmt.Errorf("%w: credentials not written yet: %v", errUnhealthy, err)
		}
	}
	return nil
}
