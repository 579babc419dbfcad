// Package fakeadobe is a strict emulator of the Adobe services imsproxy talks
// to: IMS (the JWT exchange and OAuth client credentials), the Stock API and
// its download host, and the AEM Assets HTTP API. It exists because Adobe
// cannot be reached from development or CI machines; the integration tests,
// `imsproxy sandbox` and docker-compose run it instead.
//
// It is strict on purpose: every check Adobe documents (the JWT exchange in
// Adobe Stock's Access API Reference, the Stock API reference, the AEM
// Assets HTTP API, what Adobe's own client libraries send and expect) is
// enforced with Adobe's statuses and error shapes, so a proxy that passes against it passes against Adobe.
// Where Adobe's behaviour is undocumented the emulator picks the stricter
// reading (a Stock token must belong to the client named by x-api-key; a
// download refuses any Authorization header).
//
// # Paths
//
// One listener serves everything; the paths are Adobe's own:
//
//	POST /ims/exchange/jwt[/]           JWT exchange, expires_in in ms
//	POST /ims/token/v3                  client_credentials, expires_in in s
//	/Rest/Media/1/Search/Files, /Search/CategoryTree, /Search/Category, /Files
//	/Rest/Libraries/1/Content/Info, /Content/License, /Member/Profile,
//	    /Member/LicenseHistory, /Member/Abandon      (stock.adobe.io)
//	/Rest/Libraries/Download/{id}/{n}?token=, /Rest/Libraries/Watermarked/Download/{id}/{n}
//	/files/{id}?...&sig=                signed file URLs the downloads redirect to
//	/jpg/..., /videos/...               thumbnails and previews (the CDN)
//	/api/assets.json, /api/assets/{path}.json, /content/dam/{path}   (AEM)
//	/_fake/...                          the control API (see ControlPrefix)
//
// Licence download URLs point at Options.DownloadBaseURL (by default the
// address the request came to); StartDownload gives the download host a
// listener of its own.
//
// # In a test
//
//	srv := fakeadobe.New(fakeadobe.Options{TokenLifetime: 3 * time.Second})
//	base, err := srv.Start("127.0.0.1:0") // or httptest.NewServer(srv)
//	defer srv.Close()
//	creds, err := srv.NewCredentials(fakeadobe.CredentialOptions{})
//	// point the proxy at base (IMS, Stock, download host and AEM) with
//	// creds.ClientID, creds.ClientSecret, creds.PrivateKeyPEM()...
//	srv.SetIMSDown(true)    // outage; SetStockDown, SetFaults for 5xx, latency, headers, padding
//	srv.RevokeTokens()      // the proxy must refresh on 401
//	for _, rec := range srv.Requests(0) {
//		// rec.HasAuthorization, rec.APIKey, rec.Token.State, rec.CredentialSHA256...
//	}
//
// # In a sandbox
//
//	srv := fakeadobe.New(fakeadobe.Options{})
//	base, _ := srv.Start("127.0.0.1:0")
//	creds, _ := srv.NewCredentials(fakeadobe.CredentialOptions{Name: "sandbox"})
//	files, _ := creds.WriteFiles(dir, fakeadobe.Endpoints{IMS: base, Stock: base})
//	// files.Env holds IMSPROXY_* variables for a stock (oauth) and an aem
//	// (credentials file, jwt) route.
//
// The binary cmd/fakeadobe does the same from flags and drives the rest
// through the control API.
package fakeadobe
