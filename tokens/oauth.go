package tokens

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// OAuthSource obtains tokens by OAuth server-to-server credentials: a
// client_credentials grant at <IMSURL>/ims/token/v3. Fetch only reads the
// fields, so concurrent calls are safe as long as nobody changes them.
type OAuthSource struct {
	IMSURL       string // e.g. https://ims-na1.adobelogin.com; a trailing slash is ignored
	ClientID     string
	ClientSecret config.Secret
	Scopes       []string     // sent comma-separated, as IMS wants them
	HTTPClient   *http.Client // nil: http.DefaultClient

	now func() time.Time // nil: time.Now
}

// Fetch implements Source.
func (s *OAuthSource) Fetch(ctx context.Context) (Token, error) {
	scopes := make([]string, 0, len(s.Scopes))
	for _, sc := range s.Scopes {
		if sc = strings.TrimSpace(sc); sc != "" {
			scopes = append(scopes, sc)
		}
	}
	secret := s.ClientSecret.Reveal()
	tok, err := exchange{
		client:   s.HTTPClient,
		endpoint: baseURL(s.IMSURL) + "/ims/token/v3",
		// In the body, not the query string, which proxies and servers log.
		form: url.Values{
			"grant_type":    {"client_credentials"},
			"client_id":     {s.ClientID},
			"client_secret": {secret},
			"scope":         {strings.Join(scopes, ",")},
		},
		unit:    time.Second, // unlike the JWT exchange, /ims/token/v3 counts in seconds
		secrets: []string{secret},
		now:     clock(s.now),
	}.do(ctx)
	if err == nil {
		tok.ClientID = s.ClientID
	}
	return tok, err
}
