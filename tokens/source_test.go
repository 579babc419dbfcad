package tokens

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/imsproxy/imsproxy/config"
)

func TestNewSource_PicksTheSourceForAuth(t *testing.T) {
	client := &http.Client{}
	creds := config.Credentials{
		ClientID:           "cid",
		ClientSecret:       config.Secret("secret"),
		OrgID:              "ORG@AdobeOrg",
		TechnicalAccountID: "TA@techacct.adobe.com",
		PrivateKey:         config.NewPrivateKey(testKey()),
		Metascopes:         []string{"ent_aem_cloud_api"},
		Scopes:             []string{"openid"},
		AccessToken:        config.Secret("fixed"),
	}
	route := func(auth config.AuthKind) *config.Route {
		return &config.Route{Name: "aem", Auth: auth, IMSURL: "https://ims.example", Credentials: creds}
	}

	src, err := NewSource(route(config.AuthJWT), client)
	if j, ok := src.(*JWTSource); err != nil || !ok || j.HTTPClient != client || j.ClientID != "cid" ||
		j.OrgID != creds.OrgID || j.TechnicalAccountID != creds.TechnicalAccountID || j.PrivateKey.RSA() != testKey() ||
		j.IMSURL != "https://ims.example" || len(j.Metascopes) != 1 {
		t.Errorf("jwt: %#v, %v", src, err)
	}
	src, err = NewSource(route(config.AuthOAuth), client)
	if o, ok := src.(*OAuthSource); err != nil || !ok || o.HTTPClient != client || o.ClientSecret.Reveal() != "secret" ||
		len(o.Scopes) != 1 {
		t.Errorf("oauth: %#v, %v", src, err)
	}
	src, err = NewSource(route(config.AuthToken), client)
	if s, ok := src.(*StaticSource); err != nil || !ok || s.token.Value != "fixed" {
		t.Errorf("token: %#v, %v", src, err)
	}
	if src, err = NewSource(route(config.AuthNone), client); src != nil || err != nil {
		t.Errorf("none: %#v, %v; want nil, nil", src, err)
	}
	if _, err = NewSource(route("kerberos"), client); err == nil || !strings.Contains(err.Error(), "kerberos") {
		t.Errorf("unknown auth: %v", err)
	}
}

func TestNewSource_NamesEveryMissingCredential(t *testing.T) {
	tests := []struct {
		auth  config.AuthKind
		creds config.Credentials
		want  []string
	}{
		{config.AuthJWT, config.Credentials{}, []string{"IMS_URL", "CLIENT_ID", "CLIENT_SECRET", "PRIVATE_KEY", "ORG_ID", "TECHNICAL_ACCOUNT_ID", "METASCOPES"}},
		// A JWT payload supplies iss, sub and the metascopes.
		{config.AuthJWT, config.Credentials{JWTClaims: map[string]any{"iss": "x"}}, []string{"IMS_URL", "CLIENT_ID", "CLIENT_SECRET", "PRIVATE_KEY"}},
		{config.AuthOAuth, config.Credentials{}, []string{"IMS_URL", "CLIENT_ID", "CLIENT_SECRET", "SCOPES"}},
		{config.AuthToken, config.Credentials{}, []string{"ACCESS_TOKEN"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.auth), func(t *testing.T) {
			_, err := NewSource(&config.Route{Name: "brandportal", Auth: tt.auth, Credentials: tt.creds}, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, v := range tt.want {
				if !strings.Contains(err.Error(), "IMSPROXY_BRANDPORTAL_"+v) {
					t.Errorf("error %q does not name IMSPROXY_BRANDPORTAL_%s", err, v)
				}
			}
			if tt.creds.JWTClaims != nil && strings.Contains(err.Error(), "ORG_ID") {
				t.Errorf("error %q asks for ORG_ID though the payload supplies iss", err)
			}
		})
	}
}

func TestSources_TokenNamesTheClientItWasIssuedTo(t *testing.T) {
	ims := newFakeIMS(t, 200, `{"token_type":"bearer","access_token":"at","expires_in":86399}`)
	for name, src := range map[string]Source{
		"jwt":   testJWTSource(ims.URL),
		"oauth": testOAuthSource(ims.URL),
	} {
		tok, err := src.Fetch(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var want string
		switch s := src.(type) {
		case *JWTSource:
			want = s.ClientID
		case *OAuthSource:
			want = s.ClientID
		}
		if tok.ClientID != want {
			t.Errorf("%s: token ClientID = %q, want %q (the x-api-key that must travel with it)", name, tok.ClientID, want)
		}
	}
	src, err := NewSource(&config.Route{Name: "aem", Auth: config.AuthToken,
		Credentials: config.Credentials{ClientID: "console-client", AccessToken: config.Secret("fixed")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := src.Fetch(context.Background()); tok.ClientID != "console-client" {
		t.Errorf("fixed token ClientID = %q, want the configured client", tok.ClientID)
	}
}
