package tokens

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/imsproxy/imsproxy/config"
)

// Interface guards.
var (
	_ Source = (*JWTSource)(nil)
	_ Source = (*OAuthSource)(nil)
	_ Source = (*StaticSource)(nil)
)

// NewSource returns the Source for route r's auth kind, sending its requests
// to IMS with client (nil: http.DefaultClient); (nil, nil) for AUTH=none. It
// reports every missing credential at once, naming the variables, though
// config.Load should have caught them already.
func NewSource(r *config.Route, client *http.Client) (Source, error) {
	if r == nil {
		return nil, errors.New("tokens: no route")
	}
	c := r.Credentials
	var missing []string
	need := func(ok bool, name string) {
		if !ok {
			missing = append(missing, r.Var(name))
		}
	}
	var src Source
	switch r.Auth {
	case config.AuthNone:
		return nil, nil
	case config.AuthJWT:
		need(r.IMSURL != "", "IMS_URL")
		need(c.ClientID != "", "CLIENT_ID")
		need(!c.ClientSecret.IsZero(), "CLIENT_SECRET")
		need(!c.PrivateKey.IsZero(), "PRIVATE_KEY")
		if c.JWTClaims == nil {
			need(c.OrgID != "", "ORG_ID")
			need(c.TechnicalAccountID != "", "TECHNICAL_ACCOUNT_ID")
			need(len(c.Metascopes) > 0, "METASCOPES")
		}
		src = &JWTSource{
			IMSURL: r.IMSURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
			OrgID: c.OrgID, TechnicalAccountID: c.TechnicalAccountID, PrivateKey: c.PrivateKey,
			Metascopes: c.Metascopes, Claims: c.JWTClaims, HTTPClient: client,
		}
	case config.AuthOAuth:
		need(r.IMSURL != "", "IMS_URL")
		need(c.ClientID != "", "CLIENT_ID")
		need(!c.ClientSecret.IsZero(), "CLIENT_SECRET")
		need(len(c.Scopes) > 0, "SCOPES")
		src = &OAuthSource{
			IMSURL: r.IMSURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
			Scopes: c.Scopes, HTTPClient: client,
		}
	case config.AuthToken:
		s, err := NewStaticSource(c.AccessToken)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Var("ACCESS_TOKEN"), err)
		}
		s.token.ClientID = c.ClientID // the client the operator says the token belongs to
		src = s
	default:
		return nil, fmt.Errorf("%s: unknown AUTH %q (want jwt, oauth, token or none)", r.Var("AUTH"), r.Auth)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("AUTH=%s needs %s", r.Auth, strings.Join(missing, ", "))
	}
	return src, nil
}
