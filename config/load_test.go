package config

import (
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoad_GlobalDefaults(t *testing.T) {
	c := mustLoad(t, oauthStock())
	want := Config{
		IMSURL:          "https://ims-na1.adobelogin.com",
		AdminListen:     "127.0.0.1:9090",
		LogLevel:        slog.LevelInfo,
		LogFormat:       "text",
		ShutdownTimeout: 15 * time.Second,

		TokenWait:        5 * time.Second,
		MaxInflightBytes: 256 << 20,
	}
	got := *c
	got.Routes = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("globals = %+v\nwant      %+v", got, want)
	}
}

func TestLoad_GlobalValues(t *testing.T) {
	c := mustLoad(t, with(oauthStock(),
		"IMSPROXY_IMS_URL", "https://ims-na1-stg1.adobelogin.com/",
		"IMSPROXY_ADMIN_LISTEN", "[::1]:9999",
		"IMSPROXY_LOG_LEVEL", "DEBUG",
		"IMSPROXY_LOG_FORMAT", "json",
		"IMSPROXY_SHUTDOWN_TIMEOUT", "1m30s",
		"IMSPROXY_CALLERS_FILE", writeFile(t, "callers.json", "[]"),
		"IMSPROXY_ALLOW_REMOTE", "true",
		"IMSPROXY_AUDIT_LOG", "-",
	))
	if c.IMSURL != "https://ims-na1-stg1.adobelogin.com" || c.AdminListen != "[::1]:9999" ||
		c.LogLevel != slog.LevelDebug || c.LogFormat != "json" || c.ShutdownTimeout != 90*time.Second ||
		c.CallersFile == "" || !c.AllowRemote || c.AuditLog != "-" {
		t.Errorf("globals = %+v", c)
	}
	if c.Routes[0].IMSURL != "https://ims-na1-stg1.adobelogin.com" {
		t.Errorf("route IMS URL = %q, want the global one without trailing slash", c.Routes[0].IMSURL)
	}
	for level, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got := mustLoad(t, with(oauthStock(), "IMSPROXY_LOG_LEVEL", level)).LogLevel; got != want {
			t.Errorf("LOG_LEVEL=%s: level %v, want %v", level, got, want)
		}
	}
}

func TestLoad_RouteDefaultsPerType(t *testing.T) {
	stock := mustLoad(t, oauthStock()).Routes[0]
	if stock.Name != "stock" || stock.Type != TypeStock || stock.Listen != "127.0.0.1:8080" ||
		stock.Upstream.String() != "https://stock.adobe.io" || stock.Auth != AuthOAuth ||
		stock.IMSURL != "https://ims-na1.adobelogin.com" || stock.Product != "imsproxy/dev" ||
		stock.DownloadUpstream.String() != "https://stock.adobe.com" || stock.AllowLicense ||
		stock.LicenseDailyLimit != 0 || stock.Timeout != 60*time.Second || stock.MaxBodyBytes != 104857600 ||
		stock.RootCAs != nil {
		t.Errorf("stock route = %+v", stock)
	}
	if want := (Cache{Size: 1024, TTL: 5 * time.Minute, MaxBytes: 67108864, StaleIfError: time.Hour}); stock.Cache != want {
		t.Errorf("stock cache = %+v, want %+v", stock.Cache, want)
	}
	if got := stock.Credentials.Metascopes; !reflect.DeepEqual(got, []string{"ent_stocksearch_sdk"}) {
		t.Errorf("stock metascopes = %q", got)
	}

	aem := mustLoad(t, map[string]string{
		"IMSPROXY_AEM_UPSTREAM":     "https://author-p1-e2.adobeaemcloud.com",
		"IMSPROXY_AEM_ACCESS_TOKEN": "dev-token",
	}).Routes[0]
	if aem.Type != TypeAEM || aem.Listen != "127.0.0.1:8081" || aem.Auth != AuthToken ||
		aem.Cache != (Cache{}) || aem.Product != "" || aem.DownloadUpstream != nil ||
		!reflect.DeepEqual(aem.Credentials.Metascopes, []string{"ent_aem_cloud_api"}) {
		t.Errorf("aem route = %+v", aem)
	}

	bp := mustLoad(t, map[string]string{
		"IMSPROXY_ROUTES":       "BP",
		"IMSPROXY_BP_LISTEN":    "127.0.0.1:8082",
		"IMSPROXY_BP_UPSTREAM":  "https://bp.example.com",
		"IMSPROXY_BP_AUTH":      "none",
		"IMSPROXY_BP_CLIENT_ID": "bp-client",
	}).Routes[0]
	if bp.Name != "bp" || bp.Type != TypeGeneric || bp.Auth != AuthNone || bp.Credentials.Metascopes != nil ||
		bp.Cache.Size != 0 || bp.Credentials.ClientID != "bp-client" {
		t.Errorf("generic route = %+v", bp)
	}
}

func TestLoad_StockOptions(t *testing.T) {
	r := mustLoad(t, with(oauthStock(),
		"IMSPROXY_STOCK_LISTEN", "localhost:18080",
		"IMSPROXY_STOCK_UPSTREAM", "http://127.0.0.1:7000/base",
		"IMSPROXY_STOCK_PRODUCT", "MyApp/2.0",
		"IMSPROXY_STOCK_CACHE_SIZE", "0",
		"IMSPROXY_STOCK_CACHE_TTL", "30s",
		"IMSPROXY_STOCK_CACHE_MAX_BYTES", "1024",
		"IMSPROXY_STOCK_CACHE_STALE_IF_ERROR", "0",
		"IMSPROXY_STOCK_ALLOW_LICENSE", "true",
		"IMSPROXY_STOCK_DOWNLOAD_UPSTREAM", "http://127.0.0.1:7001",
		"IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "10",
		"IMSPROXY_STOCK_TIMEOUT", "5s",
		"IMSPROXY_STOCK_MAX_BODY_BYTES", "1000",
		"IMSPROXY_STOCK_SCOPES", "openid, AdobeID,,",
		"IMSPROXY_AUDIT_LOG", filepath.Join(t.TempDir(), "audit.log"),
	)).Routes[0]
	if r.Listen != "localhost:18080" || r.Upstream.String() != "http://127.0.0.1:7000/base" ||
		r.Product != "MyApp/2.0" || !r.AllowLicense || r.LicenseDailyLimit != 10 ||
		r.DownloadUpstream.Host != "127.0.0.1:7001" || r.Timeout != 5*time.Second || r.MaxBodyBytes != 1000 {
		t.Errorf("route = %+v", r)
	}
	if want := (Cache{Size: 0, TTL: 30 * time.Second, MaxBytes: 1024}); r.Cache != want {
		t.Errorf("cache = %+v, want %+v", r.Cache, want)
	}
	if !reflect.DeepEqual(r.Credentials.Scopes, []string{"openid", "AdobeID"}) {
		t.Errorf("scopes = %q", r.Credentials.Scopes)
	}
}

// Scopes copied as OAuth writes them, with spaces, are as good as Adobe's
// commas: as one scope "openid AdobeID", IMS refused them as invalid_scope.
func TestLoad_ScopesSeparatedBySpaces(t *testing.T) {
	for _, v := range []string{"openid AdobeID read_organizations", "openid,\tAdobeID\n read_organizations"} {
		r := mustLoad(t, with(oauthStock(), "IMSPROXY_STOCK_SCOPES", v)).Routes[0]
		if want := []string{"openid", "AdobeID", "read_organizations"}; !reflect.DeepEqual(r.Credentials.Scopes, want) {
			t.Errorf("SCOPES=%q: scopes %q, want %q", v, r.Credentials.Scopes, want)
		}
	}
}

func TestLoad_ProductDefaultFollowsVersion(t *testing.T) {
	cfg, err := load(environ(oauthStock()), func() time.Time { return testNow }, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Routes[0].Product; p != "imsproxy/1.2.3" {
		t.Errorf("product = %q, want imsproxy/1.2.3", p)
	}
}

func TestLoad_RouteInference(t *testing.T) {
	aem := map[string]string{"IMSPROXY_AEM_UPSTREAM": "https://a.example.com", "IMSPROXY_AEM_AUTH": "none"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"stock variables enable stock", oauthStock(), []string{"stock"}},
		{"aem variables enable aem", aem, []string{"aem"}},
		{"both, stock first", with(oauthStock(), "IMSPROXY_AEM_UPSTREAM", "https://a.example.com", "IMSPROXY_AEM_AUTH", "none"), []string{"stock", "aem"}},
		{"an empty variable does not enable", with(oauthStock(), "IMSPROXY_AEM_CLIENT_ID", ""), []string{"stock"}},
		{"IMSPROXY_ROUTES names and orders", with(oauthStock(), "IMSPROXY_ROUTES", " AEM ,stock,",
			"IMSPROXY_AEM_UPSTREAM", "https://a.example.com", "IMSPROXY_AEM_AUTH", "none"), []string{"aem", "stock"}},
		{"generic route, type from name", map[string]string{"IMSPROXY_ROUTES": "brand_portal",
			"IMSPROXY_BRAND_PORTAL_LISTEN": "127.0.0.1:8082", "IMSPROXY_BRAND_PORTAL_UPSTREAM": "https://bp.example.com",
			"IMSPROXY_BRAND_PORTAL_AUTH": "none"}, []string{"brand_portal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range mustLoad(t, tc.env).Routes {
				got = append(got, r.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("routes = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoad_ExplicitTypeOverridesName(t *testing.T) {
	c := mustLoad(t, map[string]string{
		"IMSPROXY_ROUTES":              "stock2",
		"IMSPROXY_STOCK2_TYPE":         "Stock",
		"IMSPROXY_STOCK2_LISTEN":       "127.0.0.1:8090",
		"IMSPROXY_STOCK2_ACCESS_TOKEN": "t",
	})
	r := c.Routes[0]
	if r.Type != TypeStock || r.Upstream.String() != "https://stock.adobe.io" || r.Cache.Size != 1024 {
		t.Errorf("stock-typed route = %+v", r)
	}
}

func TestLoad_AuthInference(t *testing.T) {
	key := writeFile(t, "key.pem", pkcs8PEM(t, rsaKey(0)))
	jwtVars := []string{"IMSPROXY_STOCK_ORG_ID", "O@AdobeOrg", "IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID", "T@techacct.adobe.com"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want AuthKind
	}{
		{"client id and secret: oauth", oauthStock(), AuthOAuth},
		{"client id and secret file: oauth", map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c", "IMSPROXY_STOCK_SCOPES": "openid",
			"IMSPROXY_STOCK_CLIENT_SECRET_FILE": writeFile(t, "secret", "s\n")}, AuthOAuth},
		{"private key file: jwt", with(oauthStock(), append(jwtVars, "IMSPROXY_STOCK_PRIVATE_KEY_FILE", key)...), AuthJWT},
		{"private key: jwt", with(oauthStock(), append(jwtVars, "IMSPROXY_STOCK_PRIVATE_KEY", pkcs8PEM(t, rsaKey(0)))...), AuthJWT},
		{"credentials file: jwt", map[string]string{"IMSPROXY_STOCK_CREDENTIALS_FILE": writeFile(t, "c.json", credentialsJSON(t, nil))}, AuthJWT},
		{"access token: token", map[string]string{"IMSPROXY_STOCK_ACCESS_TOKEN": "tok"}, AuthToken},
		{"access token with client id: token", with(map[string]string{"IMSPROXY_STOCK_ACCESS_TOKEN": "tok"}, "IMSPROXY_STOCK_CLIENT_ID", "c"), AuthToken},
		{"access token file: token", map[string]string{"IMSPROXY_STOCK_ACCESS_TOKEN_FILE": writeFile(t, "t", "tok\n")}, AuthToken},
		{"explicit AUTH wins", with(oauthStock(), "IMSPROXY_STOCK_AUTH", "none", "IMSPROXY_STOCK_ACCESS_TOKEN", "tok"), AuthNone},
		{"AUTH is case-insensitive", with(oauthStock(), "IMSPROXY_STOCK_AUTH", " OAuth "), AuthOAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustLoad(t, tc.env).Routes[0].Auth; got != tc.want {
				t.Errorf("auth = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoad_Problems(t *testing.T) {
	stockGeneric := map[string]string{"IMSPROXY_ROUTES": "bp", "IMSPROXY_BP_LISTEN": "127.0.0.1:8082",
		"IMSPROXY_BP_UPSTREAM": "https://bp.example.com"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"oauth without secret", map[string]string{"IMSPROXY_STOCK_CLIENT_ID": "c"},
			[]string{"IMSPROXY_STOCK_CLIENT_SECRET: required for AUTH=oauth (or set IMSPROXY_STOCK_CLIENT_SECRET_FILE or IMSPROXY_STOCK_CREDENTIALS_FILE)"}},
		{"explicit oauth without anything", map[string]string{"IMSPROXY_STOCK_AUTH": "oauth"}, []string{
			"IMSPROXY_STOCK_CLIENT_ID: required for AUTH=oauth (or set IMSPROXY_STOCK_CREDENTIALS_FILE)",
			"IMSPROXY_STOCK_CLIENT_SECRET: required for AUTH=oauth (or set IMSPROXY_STOCK_CLIENT_SECRET_FILE or IMSPROXY_STOCK_CREDENTIALS_FILE)"}},
		{"jwt with nothing but AUTH", map[string]string{"IMSPROXY_STOCK_AUTH": "jwt"}, []string{
			"IMSPROXY_STOCK_CLIENT_ID: required for AUTH=jwt (or set IMSPROXY_STOCK_CREDENTIALS_FILE)",
			"IMSPROXY_STOCK_CLIENT_SECRET: required for AUTH=jwt (or set IMSPROXY_STOCK_CLIENT_SECRET_FILE or IMSPROXY_STOCK_CREDENTIALS_FILE)",
			"IMSPROXY_STOCK_ORG_ID: required for AUTH=jwt (or set IMSPROXY_STOCK_CREDENTIALS_FILE or IMSPROXY_STOCK_JWT_PAYLOAD)",
			"IMSPROXY_STOCK_TECHNICAL_ACCOUNT_ID: required for AUTH=jwt (or set IMSPROXY_STOCK_CREDENTIALS_FILE or IMSPROXY_STOCK_JWT_PAYLOAD)",
			"IMSPROXY_STOCK_PRIVATE_KEY_FILE: required for AUTH=jwt (or set IMSPROXY_STOCK_PRIVATE_KEY or IMSPROXY_STOCK_CREDENTIALS_FILE)"}},
		{"jwt on a generic route needs metascopes", with(stockGeneric, "IMSPROXY_BP_AUTH", "jwt"), []string{
			"IMSPROXY_BP_METASCOPES: required for AUTH=jwt, e.g. ent_brand_portal_sdk for Brand Portal (or set IMSPROXY_BP_JWT_PAYLOAD)"}},
		{"token without token", map[string]string{"IMSPROXY_STOCK_AUTH": "token"},
			[]string{"IMSPROXY_STOCK_ACCESS_TOKEN: required for AUTH=token (or set IMSPROXY_STOCK_ACCESS_TOKEN_FILE)"}},
		{"nothing to infer auth from", map[string]string{"IMSPROXY_STOCK_LISTEN": "127.0.0.1:1"},
			[]string{"IMSPROXY_STOCK_AUTH: no credentials for route stock: set IMSPROXY_STOCK_CLIENT_ID and IMSPROXY_STOCK_CLIENT_SECRET or IMSPROXY_STOCK_CLIENT_SECRET_FILE (OAuth server-to-server), IMSPROXY_STOCK_CREDENTIALS_FILE (AEM service credentials), IMSPROXY_STOCK_PRIVATE_KEY_FILE with the other JWT variables, IMSPROXY_STOCK_ACCESS_TOKEN (a fixed token), or IMSPROXY_STOCK_AUTH=none"}},
		{"unknown AUTH", with(oauthStock(), "IMSPROXY_STOCK_AUTH", "basic"),
			[]string{"IMSPROXY_STOCK_AUTH: must be one of jwt, oauth, token, none"}},
		{"unknown TYPE", with(oauthStock(), "IMSPROXY_STOCK_TYPE", "video"),
			[]string{"IMSPROXY_STOCK_TYPE: must be stock, aem or generic"}},
		{"generic needs listen and upstream", map[string]string{"IMSPROXY_ROUTES": "bp", "IMSPROXY_BP_AUTH": "none"}, []string{
			"IMSPROXY_BP_LISTEN: required for this generic route: the address to listen on, e.g. 127.0.0.1:8082",
			"IMSPROXY_BP_UPSTREAM: required for this generic route: the base URL requests are forwarded to"}},
		{"aem needs upstream", map[string]string{"IMSPROXY_AEM_AUTH": "none"},
			[]string{"IMSPROXY_AEM_UPSTREAM: required for this aem route: the AEM URL, e.g. https://author-p12345-e67890.adobeaemcloud.com"}},
		{"bad values never echoed", with(oauthStock(),
			"IMSPROXY_SHUTDOWN_TIMEOUT", "soon",
			"IMSPROXY_ALLOW_REMOTE", "maybe",
			"IMSPROXY_STOCK_CACHE_SIZE", "many",
			"IMSPROXY_STOCK_CACHE_MAX_BYTES", "99999999999999999999999",
			"IMSPROXY_STOCK_TIMEOUT", "60"), []string{
			"IMSPROXY_SHUTDOWN_TIMEOUT: cannot be parsed: want a duration such as 15s, 5m or 1h",
			"IMSPROXY_ALLOW_REMOTE: cannot be parsed: want true or false",
			"IMSPROXY_STOCK_CACHE_SIZE: cannot be parsed: want a whole number",
			"IMSPROXY_STOCK_CACHE_MAX_BYTES: cannot be parsed: want a whole number",
			"IMSPROXY_STOCK_TIMEOUT: cannot be parsed: want a duration such as 15s, 5m or 1h"}},
		{"bad enums", with(oauthStock(), "IMSPROXY_LOG_LEVEL", "verbose", "IMSPROXY_LOG_FORMAT", "xml"), []string{
			"IMSPROXY_LOG_LEVEL: must be one of debug, info, warn, error",
			"IMSPROXY_LOG_FORMAT: must be text or json"}},
		{"bad URLs", with(oauthStock(),
			"IMSPROXY_IMS_URL", "ims-na1.adobelogin.com",
			"IMSPROXY_STOCK_UPSTREAM", "ftp://stock.adobe.io",
			"IMSPROXY_STOCK_IMS_URL", "https://",
			"IMSPROXY_STOCK_DOWNLOAD_UPSTREAM", "https://stock.adobe.com/?x=1"), []string{
			"IMSPROXY_IMS_URL: must be an absolute http or https URL (with the scheme, e.g. https://example.com)",
			"IMSPROXY_STOCK_UPSTREAM: must be an absolute http or https URL (with the scheme, e.g. https://example.com)",
			"IMSPROXY_STOCK_IMS_URL: must be an absolute http or https URL with a host",
			"IMSPROXY_STOCK_DOWNLOAD_UPSTREAM: must not have a query or a fragment"}},
		{"bad listen addresses", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "8080", "IMSPROXY_ADMIN_LISTEN", "127.0.0.1:99999"), []string{
			"IMSPROXY_STOCK_LISTEN: must be host:port, e.g. 127.0.0.1:8080",
			"IMSPROXY_ADMIN_LISTEN: must be host:port with a port number from 0 to 65535"}},
		{"out-of-range numbers", with(oauthStock(),
			"IMSPROXY_SHUTDOWN_TIMEOUT", "-1s",
			"IMSPROXY_STOCK_CACHE_SIZE", "-1",
			"IMSPROXY_STOCK_CACHE_STALE_IF_ERROR", "-1m",
			"IMSPROXY_STOCK_LICENSE_DAILY_LIMIT", "-5",
			"IMSPROXY_STOCK_TIMEOUT", "0s",
			"IMSPROXY_STOCK_MAX_BODY_BYTES", "0"), []string{
			"IMSPROXY_SHUTDOWN_TIMEOUT: must be 0 or more, e.g. 15s",
			"IMSPROXY_STOCK_CACHE_SIZE: must be 0 (no cache) or more",
			"IMSPROXY_STOCK_CACHE_STALE_IF_ERROR: must be 0 (disabled) or more",
			"IMSPROXY_STOCK_LICENSE_DAILY_LIMIT: must be 0 (no limit) or more",
			"IMSPROXY_STOCK_TIMEOUT: must be positive, e.g. 60s",
			"IMSPROXY_STOCK_MAX_BODY_BYTES: must be a positive number of bytes"}},
		{"cache enabled needs a TTL and a byte bound", with(oauthStock(), "IMSPROXY_STOCK_CACHE_TTL", "0s", "IMSPROXY_STOCK_CACHE_MAX_BYTES", "0"), []string{
			"IMSPROXY_STOCK_CACHE_TTL: must be positive (or set IMSPROXY_STOCK_CACHE_SIZE=0 to disable the cache)",
			"IMSPROXY_STOCK_CACHE_MAX_BYTES: must be positive (or set IMSPROXY_STOCK_CACHE_SIZE=0 to disable the cache)"}},
		{"product must be a header value", with(oauthStock(), "IMSPROXY_STOCK_PRODUCT", "My\x01App"),
			[]string{"IMSPROXY_STOCK_PRODUCT: must be printable text such as MyApp/1.0: it is sent as the X-Product header"}},
		{"stock options on an aem route", map[string]string{"IMSPROXY_AEM_UPSTREAM": "https://a.example.com", "IMSPROXY_AEM_AUTH": "none",
			"IMSPROXY_AEM_CACHE_SIZE": "10", "IMSPROXY_AEM_ALLOW_LICENSE": "true"}, []string{
			"IMSPROXY_AEM_CACHE_SIZE: applies only to stock routes, and this route's type is aem",
			"IMSPROXY_AEM_ALLOW_LICENSE: applies only to stock routes, and this route's type is aem"}},
		{"bad route names", map[string]string{"IMSPROXY_ROUTES": "stock,brand-portal,stock"}, []string{
			`IMSPROXY_ROUTES: route name "brand-portal" cannot be part of a variable name: use letters, digits and single underscores`,
			"IMSPROXY_ROUTES: route stock is listed twice"}},
		{"route names clashing with globals or each other", map[string]string{"IMSPROXY_ROUTES": "admin,x,x_download"}, []string{
			"IMSPROXY_ROUTES: route admin cannot be used: its variable IMSPROXY_ADMIN_LISTEN is also the global variable; choose another name",
			"IMSPROXY_ROUTES: route x_download cannot be used: its variable IMSPROXY_X_DOWNLOAD_UPSTREAM is also a variable of route x; choose another name"}},
		{"unreadable files", with(oauthStock(), "IMSPROXY_CALLERS_FILE", "/nonexistent/callers.json",
			"IMSPROXY_STOCK_CA_FILE", "/nonexistent/ca.pem"), []string{
			"IMSPROXY_CALLERS_FILE: cannot read /nonexistent/callers.json: no such file or directory",
			"IMSPROXY_STOCK_CA_FILE: cannot read /nonexistent/ca.pem: no such file or directory"}},
		{"CA file without certificates", with(oauthStock(), "IMSPROXY_STOCK_CA_FILE", writeFile(t, "ca.pem", "nothing")),
			[]string{"IMSPROXY_STOCK_CA_FILE: holds no PEM certificate (-----BEGIN CERTIFICATE-----)"}},
		{"bad metascopes", with(oauthStock(), "IMSPROXY_STOCK_METASCOPES", "ent user sdk"),
			[]string{"IMSPROXY_STOCK_METASCOPES: want comma-separated metascope names (ent_aem_cloud_api) or claim URLs (https://ims-na1.adobelogin.com/s/ent_aem_cloud_api)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblems(t, loadProblems(t, tc.env), tc.want...)
		})
	}
}

func TestLoad_NoConfiguration(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		{"IMSPROXY_LOG_LEVEL": "debug"},
		{"IMSPROXY_ROUTES": " , "},
		{"HOME": "/root", "IMSPROXY_STOCK_CLIENT_ID": ""},
	} {
		got := loadProblems(t, env)
		if len(got) != 1 {
			t.Errorf("%v: want exactly one problem, got %q", env, got)
			continue
		}
		for _, want := range []string{"IMSPROXY_ROUTES: no route is configured", "IMSPROXY_STOCK_CLIENT_ID",
			"IMSPROXY_STOCK_CLIENT_SECRET", "IMSPROXY_AEM_CREDENTIALS_FILE", "imsproxy sandbox"} {
			if !strings.Contains(got[0], want) {
				t.Errorf("%v: problem %q does not mention %q", env, got[0], want)
			}
		}
	}
}

func TestLoad_Listeners(t *testing.T) {
	callers := writeFile(t, "callers.json", "[]")
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // nil: loads
	}{
		{"loopback v4", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "127.0.0.2:8080"), nil},
		{"loopback v6", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "[::1]:8080"), nil},
		{"localhost", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "LocalHost:8080"), nil},
		{"all interfaces refused", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "0.0.0.0:8080"), []string{
			"IMSPROXY_STOCK_LISTEN: 0.0.0.0:8080 is not a loopback address: set IMSPROXY_CALLERS_FILE (who may call) or IMSPROXY_ALLOW_REMOTE=true to listen on it"}},
		{"empty host refused", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", ":8080"), []string{
			"IMSPROXY_STOCK_LISTEN: :8080 is not a loopback address: set IMSPROXY_CALLERS_FILE (who may call) or IMSPROXY_ALLOW_REMOTE=true to listen on it"}},
		{"a host name that does not resolve", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "proxy.invalid:8080"), []string{
			"IMSPROXY_STOCK_LISTEN: names host proxy.invalid, which does not resolve here: use an IP address of this machine, or 0.0.0.0"}},
		{"an address this machine does not have", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "192.0.2.1:8080", "IMSPROXY_ALLOW_REMOTE", "true"), []string{
			"IMSPROXY_STOCK_LISTEN: 192.0.2.1 is not an address of this machine: use one of its addresses, or 0.0.0.0 for all of them"}},
		{"allowed with a callers file", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "0.0.0.0:8080", "IMSPROXY_CALLERS_FILE", callers), nil},
		{"allowed with ALLOW_REMOTE", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "0.0.0.0:8080", "IMSPROXY_ALLOW_REMOTE", "true"), nil},
		{"same address twice", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "127.0.0.1:9090"), []string{
			"IMSPROXY_STOCK_LISTEN: 127.0.0.1:9090 clashes with IMSPROXY_ADMIN_LISTEN=127.0.0.1:9090: each listener needs its own address"}},
		{"wildcard clashes with a host on the same port", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", ":9090", "IMSPROXY_ALLOW_REMOTE", "true"), []string{
			"IMSPROXY_STOCK_LISTEN: :9090 clashes with IMSPROXY_ADMIN_LISTEN=127.0.0.1:9090: each listener needs its own address"}},
		{"two stock-typed routes on the default port", map[string]string{"IMSPROXY_ROUTES": "stock,stock2", "IMSPROXY_STOCK_AUTH": "none",
			"IMSPROXY_STOCK2_AUTH": "none", "IMSPROXY_STOCK2_TYPE": "stock"}, []string{
			"IMSPROXY_STOCK2_LISTEN: 127.0.0.1:8080 clashes with IMSPROXY_STOCK_LISTEN=127.0.0.1:8080: each listener needs its own address"}},
		{"port 0 never clashes", with(oauthStock(), "IMSPROXY_STOCK_LISTEN", "127.0.0.1:0", "IMSPROXY_ADMIN_LISTEN", "127.0.0.1:0"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				mustLoad(t, tc.env)
				return
			}
			wantProblems(t, loadProblems(t, tc.env), tc.want...)
		})
	}
}

// A misspelt variable leaves what it was meant to supply missing: the one
// line that says so is the "did you mean", not a second "required".
func TestLoad_AMisspeltVariableIsOneProblem(t *testing.T) {
	aem := map[string]string{"IMSPROXY_ROUTES": "aem", "IMSPROXY_AEM_UPSTREAM": "https://author-p1-e2.adobeaemcloud.com"}
	noSecret := with(oauthStock())
	delete(noSecret, "IMSPROXY_STOCK_CLIENT_SECRET")
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"a value's own variable", with(noSecret, "IMSPROXY_STOCK_CLIENT_SECRT", "s"),
			"IMSPROXY_STOCK_CLIENT_SECRT: unknown variable (did you mean IMSPROXY_STOCK_CLIENT_SECRET?)"},
		{"its file", with(noSecret, "IMSPROXY_STOCK_CLIENT_SECRET_FIL", "/run/secrets/s"),
			"IMSPROXY_STOCK_CLIENT_SECRET_FIL: unknown variable (did you mean IMSPROXY_STOCK_CLIENT_SECRET_FILE?)"},
		{"a credentials file that supplies several", with(aem, "IMSPROXY_AEM_CREDENTIAL_FILE", "/run/secrets/aem.json"),
			"IMSPROXY_AEM_CREDENTIAL_FILE: unknown variable (did you mean IMSPROXY_AEM_CREDENTIALS_FILE?)"},
		{"a JWT credential of a route whose other ones choose its auth", with(aem, "IMSPROXY_AEM_AUTH", "jwt",
			"IMSPROXY_AEM_CLIENT_ID", "c", "IMSPROXY_AEM_CLIENT_SECRET", "s", "IMSPROXY_AEM_ORG_ID", "o@AdobeOrg",
			"IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID", "t@techacct.adobe.com", "IMSPROXY_AEM_METASCOPES", "ent_aem_cloud_api",
			"IMSPROXY_AEM_PRIVATE_KEY_FIEL", "/run/secrets/key.pem"),
			"IMSPROXY_AEM_PRIVATE_KEY_FIEL: unknown variable (did you mean IMSPROXY_AEM_PRIVATE_KEY_FILE?)"},
		{"the upstream", map[string]string{"IMSPROXY_ROUTES": "aem", "IMSPROXY_AEM_AUTH": "none", "IMSPROXY_AEM_UPSTRAEM": "https://author-p1-e2.adobeaemcloud.com"},
			"IMSPROXY_AEM_UPSTRAEM: unknown variable (did you mean IMSPROXY_AEM_UPSTREAM?)"},
		{"the JWT material that chooses the auth kind", with(aem,
			"IMSPROXY_AEM_CLIENT_ID", "c", "IMSPROXY_AEM_CLIENT_SECRET", "s", "IMSPROXY_AEM_ORG_ID", "o@AdobeOrg",
			"IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID", "t@techacct.adobe.com", "IMSPROXY_AEM_METASCOPES", "ent_aem_cloud_api",
			"IMSPROXY_AEM_PRIVATE_KEY_FIEL", "/run/secrets/key.pem"),
			"IMSPROXY_AEM_PRIVATE_KEY_FIEL: unknown variable (did you mean IMSPROXY_AEM_PRIVATE_KEY_FILE?)"},
		{"the auth kind", with(aem, "IMSPROXY_AEM_AUHT", "none"),
			"IMSPROXY_AEM_AUHT: unknown variable (did you mean IMSPROXY_AEM_AUTH?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantOnly(t, loadProblems(t, tc.env), tc.want)
		})
	}
	// Of two names as near, the one not set is the likelier meant.
	bp := map[string]string{"IMSPROXY_ROUTES": "bp1,bp2", "IMSPROXY_BP1_AUTH": "none", "IMSPROXY_BP2_AUTH": "none",
		"IMSPROXY_BP1_LISTEN": "127.0.0.1:8091", "IMSPROXY_BP2_LISTEN": "127.0.0.1:8092", "IMSPROXY_BP1_UPSTREAM": "https://bp.example.com"}
	wantOnly(t, loadProblems(t, with(bp, "IMSPROXY_BP3_UPSTREAM", "https://bp.example.com")),
		"IMSPROXY_BP3_UPSTREAM: unknown variable (did you mean IMSPROXY_BP2_UPSTREAM?)")

	// What is missing for another reason is still said.
	got := loadProblems(t, with(noSecret, "IMSPROXY_STOCK_CLIENTID", "c"))
	wantProblems(t, got, "IMSPROXY_STOCK_CLIENT_SECRET: required for AUTH=oauth (or set IMSPROXY_STOCK_CLIENT_SECRET_FILE or IMSPROXY_STOCK_CREDENTIALS_FILE)")
	// Also when the misspelt variable is the one that chose the auth
	// kind: the other half of the credential is named, not hidden behind
	// the misspelling until it is fixed.
	// And a misspelt AUTH chooses the kind by its value.
	got = loadProblems(t, with(aem, "IMSPROXY_AEM_AUHT", "jwt"))
	wantProblems(t, got, "IMSPROXY_AEM_AUHT: unknown variable (did you mean IMSPROXY_AEM_AUTH?)",
		"IMSPROXY_AEM_PRIVATE_KEY_FILE: required for AUTH=jwt...", "IMSPROXY_AEM_TECHNICAL_ACCOUNT_ID: required for AUTH=jwt...")
	got = loadProblems(t, with(aem, "IMSPROXY_AEM_CLIENTID", "c"))
	wantProblems(t, got, "IMSPROXY_AEM_CLIENTID: unknown variable (did you mean IMSPROXY_AEM_CLIENT_ID?)",
		"IMSPROXY_AEM_CLIENT_SECRET: required for AUTH=oauth (or set IMSPROXY_AEM_CLIENT_SECRET_FILE or IMSPROXY_AEM_CREDENTIALS_FILE)",
		"IMSPROXY_AEM_SCOPES: required for AUTH=oauth...")
}

func TestLoad_UnknownVariables(t *testing.T) {
	got := loadProblems(t, with(oauthStock(),
		"IMSPROXY_STOCK_CLIENTID", "x",
		"IMSPROXY_STOCK_FOO", "x",
		"IMSPROXY_LOGLEVEL", "debug",
		"IMSPROXY_BP_LISTEN", "127.0.0.1:1",
		"IMSPROXY", "x",
		"OTHER_STOCK_FOO", "ignored",
		"imsproxy_stock_listen", "ignored",
	))
	wantProblems(t, got,
		"IMSPROXY_STOCK_CLIENTID: unknown variable (did you mean IMSPROXY_STOCK_CLIENT_ID?)",
		"IMSPROXY_STOCK_FOO: unknown variable",
		"IMSPROXY_LOGLEVEL: unknown variable (did you mean IMSPROXY_LOG_LEVEL?)",
		"IMSPROXY_BP_LISTEN: configures route bp, which is not enabled: IMSPROXY_ROUTES is unset, so only stock and aem are enabled: list your routes in it",
	)
	if len(got) != 4 {
		t.Errorf("want 4 problems, got %d:\n%s", len(got), strings.Join(got, "\n"))
	}
	got = loadProblems(t, with(oauthStock(), "IMSPROXY_ROUTES", "stock", "IMSPROXY_AEM_UPSTREAM", "https://a.example.com"))
	wantProblems(t, got, "IMSPROXY_AEM_UPSTREAM: configures route aem, which is not enabled: add aem to IMSPROXY_ROUTES")
}

// A variable of a route that is not enabled is a typo when it is near a
// variable of an enabled route, and says so; otherwise the route was left
// out of IMSPROXY_ROUTES, which is said once for all its variables.
func TestLoad_VariablesOfARouteNotEnabled(t *testing.T) {
	aem := map[string]string{
		"IMSPROXY_AEM_UPSTREAM": "https://author-p1-e2.adobeaemcloud.com", "IMSPROXY_AEM_CLIENT_ID": "c",
		"IMSPROXY_AEM_CLIENT_SECRET": "s", "IMSPROXY_AEM_ORG_ID": "o@AdobeOrg", "IMSPROXY_AEM_TIMEOUT": "10s",
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // every problem, in Error's order
	}{
		{"typo of an enabled route's variable", with(oauthStock(), "IMSPROXY_STOK_CLIENT_ID", "x", "IMSPROXY_STCOK_TIMEOUT", "1s"), []string{
			"IMSPROXY_STCOK_TIMEOUT: unknown variable (did you mean IMSPROXY_STOCK_TIMEOUT?)",
			"IMSPROXY_STOK_CLIENT_ID: unknown variable (did you mean IMSPROXY_STOCK_CLIENT_ID?)"}},
		{"typo of a default route's variable, alone", map[string]string{"IMSPROXY_STOK_CLIENT_ID": "x", "IMSPROXY_STOK_CLIENT_SECRET": "y"}, []string{
			"IMSPROXY_ROUTES: no route is configured: set IMSPROXY_STOCK_CLIENT_ID and IMSPROXY_STOCK_CLIENT_SECRET (Adobe Stock, OAuth server-to-server), or IMSPROXY_AEM_CREDENTIALS_FILE (AEM as a Cloud Service service credentials), or name your routes in IMSPROXY_ROUTES; `imsproxy sandbox` shows the proxy working without any credentials",
			"IMSPROXY_STOK_CLIENT_ID: unknown variable (did you mean IMSPROXY_STOCK_CLIENT_ID?)",
			"IMSPROXY_STOK_CLIENT_SECRET: unknown variable (did you mean IMSPROXY_STOCK_CLIENT_SECRET?)"}},
		{"typo of a route's name in IMSPROXY_ROUTES: one line naming it", with(oauthStock(), "IMSPROXY_ROUTES", "stok"), []string{
			"IMSPROXY_ROUTES: lists route stok, none of whose variables is set, while route stock, not listed, has 3 (IMSPROXY_STOCK_*): did you mean stock?"}},
		{"typo of a route's name in IMSPROXY_ROUTES and of one of its variables", with(oauthStock(), "IMSPROXY_ROUTES", "stok", "IMSPROXY_STOCK_TIMEOUTS", "5s"), []string{
			"IMSPROXY_ROUTES: lists route stok, none of whose variables is set, while route stock, not listed, has 3 (IMSPROXY_STOCK_*): did you mean stock?",
			"IMSPROXY_STOCK_TIMEOUTS: unknown variable (did you mean IMSPROXY_STOCK_TIMEOUT?)"}},
		{"typo of a route's name in IMSPROXY_ROUTES, its route complete in one variable", map[string]string{
			"IMSPROXY_ROUTES": "stok", "IMSPROXY_STOCK_ACCESS_TOKEN": "a-fixed-token"}, []string{
			"IMSPROXY_ROUTES: lists route stok, none of whose variables is set, while route stock, not listed, has 1 (IMSPROXY_STOCK_*): did you mean stock?"}},
		{"variables of a near name beside a listed aem are the typos", with(oauthStock(), "IMSPROXY_ROUTES", "stock,aem",
			"IMSPROXY_AEN_UPSTREAM", "https://author-p1-e2.adobeaemcloud.com", "IMSPROXY_AEN_AUTH", "none"), []string{
			"IMSPROXY_AEN_AUTH: unknown variable (did you mean IMSPROXY_AEM_AUTH?)",
			"IMSPROXY_AEN_UPSTREAM: unknown variable (did you mean IMSPROXY_AEM_UPSTREAM?)"}},
		{"one variable of a near name beside a listed route is the typo", with(oauthStock(), "IMSPROXY_ROUTES", "stock,aem",
			"IMSPROXY_AEN_UPSTREAM", "https://author-p1-e2.adobeaemcloud.com"), []string{
			"IMSPROXY_AEM_AUTH: no credentials for route aem: set IMSPROXY_AEM_CLIENT_ID and IMSPROXY_AEM_CLIENT_SECRET or IMSPROXY_AEM_CLIENT_SECRET_FILE (OAuth server-to-server), IMSPROXY_AEM_CREDENTIALS_FILE (AEM service credentials), IMSPROXY_AEM_PRIVATE_KEY_FILE with the other JWT variables, IMSPROXY_AEM_ACCESS_TOKEN (a fixed token), or IMSPROXY_AEM_AUTH=none",
			"IMSPROXY_AEN_UPSTREAM: unknown variable (did you mean IMSPROXY_AEM_UPSTREAM?)"}},
		{"typo of a variable of a route listed in IMSPROXY_ROUTES", with(with(oauthStock(), "IMSPROXY_ROUTES", "stock"), "IMSPROXY_STOK_TIMEOUT", "1s"), []string{
			"IMSPROXY_STOK_TIMEOUT: unknown variable (did you mean IMSPROXY_STOCK_TIMEOUT?)"}},
		{"typo of a variable of a route not enabled", with(oauthStock(), "IMSPROXY_BRAND_PORTAL_CLIENTID", "x", "IMSPROXY_BP_UPSTRAEM", "https://bp.example.com", "IMSPROXY_BP_FOO", "x"), []string{
			"IMSPROXY_BP_FOO: unknown variable",
			"IMSPROXY_BP_UPSTRAEM: unknown variable (did you mean IMSPROXY_BP_UPSTREAM?)",
			"IMSPROXY_BRAND_PORTAL_CLIENTID: unknown variable (did you mean IMSPROXY_BRAND_PORTAL_CLIENT_ID?)"}},
		{"IMSPROXY_ROUTES narrowed: one line for the route", with(with(oauthStock(), "IMSPROXY_ROUTES", "stock"), flatten(aem)...), []string{
			"IMSPROXY_ROUTES: route aem is not enabled, but 5 of its variables are set (IMSPROXY_AEM_*): add aem to IMSPROXY_ROUTES, or unset them"}},
		{"IMSPROXY_ROUTES unset: one line for the route", with(oauthStock(), "IMSPROXY_BP_UPSTREAM", "https://bp.example.com", "IMSPROXY_BP_AUTH", "none"), []string{
			"IMSPROXY_ROUTES: route bp is not enabled, but 2 of its variables are set (IMSPROXY_BP_*): IMSPROXY_ROUTES is unset, so only stock and aem are enabled: list your routes in it, or unset them"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantOnly(t, loadProblems(t, tc.env), tc.want...)
		})
	}
}

// flatten turns a map into with's name, value list.
func flatten(m map[string]string) []string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k, v)
	}
	return kv
}

func TestProblems_ErrorIsSortedOneLinePerProblem(t *testing.T) {
	ps := Problems{{Var: "IMSPROXY_B", Message: "two"}, {Var: "IMSPROXY_A", Message: "z"}, {Var: "IMSPROXY_A", Message: "a"}}
	want := "IMSPROXY_A: a\nIMSPROXY_A: z\nIMSPROXY_B: two"
	if got := ps.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if ps[0].Var != "IMSPROXY_B" {
		t.Errorf("Error() reordered its receiver")
	}
	if (Problems{}).err() != nil {
		t.Errorf("no problems must be a nil error")
	}
}

func TestLoad_ReturnsAllProblemsAtOnce(t *testing.T) {
	_, err := Load([]string{
		"IMSPROXY_LOG_LEVEL=loud",
		"IMSPROXY_STOCK_CLIENT_ID=c",
		"IMSPROXY_AEM_AUTH=token",
	})
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v (%T), want Problems", err, err)
	}
	vars := map[string]bool{}
	for _, p := range ps {
		vars[p.Var] = true
	}
	for _, v := range []string{"IMSPROXY_LOG_LEVEL", "IMSPROXY_STOCK_CLIENT_SECRET", "IMSPROXY_AEM_ACCESS_TOKEN", "IMSPROXY_AEM_UPSTREAM"} {
		if !vars[v] {
			t.Errorf("no problem for %s in:\n%v", v, err)
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(ps) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(ps))
	}
}

// TestLoad_ReadsOnlyItsArgument guards against env's fallback to the
// process environment, which it uses when handed a nil map.
func TestLoad_ReadsOnlyItsArgument(t *testing.T) {
	t.Setenv("IMSPROXY_STOCK_CLIENT_ID", "from-process")
	t.Setenv("IMSPROXY_STOCK_CLIENT_SECRET", "from-process")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "no route is configured") {
		t.Errorf("Load(nil) = %v, want the no-configuration problem", err)
	}
	r := mustLoad(t, map[string]string{"IMSPROXY_STOCK_ACCESS_TOKEN": "t"}).Routes[0]
	if r.Credentials.ClientID != "" {
		t.Errorf("client id %q came from the process environment", r.Credentials.ClientID)
	}
}

func TestLoad_URLsCarryNoPassword(t *testing.T) {
	for _, v := range []string{"IMSPROXY_STOCK_UPSTREAM", "IMSPROXY_IMS_URL", "IMSPROXY_STOCK_IMS_URL", "IMSPROXY_STOCK_DOWNLOAD_UPSTREAM"} {
		got := loadProblems(t, with(oauthStock(), v, "https://user:s3cret-pw@example.com"))
		wantProblems(t, got, v+": must not carry a user name or password: the proxy authenticates with the route's credentials")
		if out := strings.Join(got, "\n"); strings.Contains(out, "s3cret-pw") {
			t.Errorf("%s: the password is repeated:\n%s", v, out)
		}
	}
}
