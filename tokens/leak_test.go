package tokens

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
)

// Distinctive credentials: the client secret has characters that form
// encoding changes, so an echo of the encoded body is caught too.
const (
	leakSecret = "p8e-LEAKED-client+secret/=é"
	leakToken  = "LEAKED-access-token-0123456789"
)

// echo answers with status, putting everything the request carried into
// every field IMS might fill (raw, decoded, and each form value).
func echo(status int, shape string) func(http.ResponseWriter, *http.Request, url.Values) {
	return func(w http.ResponseWriter, r *http.Request, form url.Values) {
		all := form.Encode()
		for _, vs := range form {
			all += " " + strings.Join(vs, " ")
		}
		var body string
		switch shape {
		case "text":
			body = all
		case "signature":
			// A JWT is longer than the description kept, so its parts are
			// echoed alone.
			j := form.Get("jwt_token")
			b, _ := json.Marshal(map[string]string{"error": "invalid_signature",
				"error_description": "signature " + j[strings.LastIndex(j, ".")+1:] + " does not match " + form.Get("client_secret")})
			body = string(b)
		case "gateway":
			b, _ := json.Marshal(map[string]string{"error_code": all, "message": all})
			body = string(b)
		case "error-with-token":
			b, _ := json.Marshal(map[string]string{"error": "invalid_scope", "error_description": all + " " + leakToken, "access_token": leakToken})
			body = string(b)
		default:
			b, _ := json.Marshal(map[string]string{"error": all, "error_description": all})
			body = string(b)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func TestSources_ErrorsNeverCarryCredentials(t *testing.T) {
	key := testKey()
	der := x509.MarshalPKCS1PrivateKey(key)
	forbidden := []string{
		leakSecret, url.QueryEscape(leakSecret), leakToken,
		key.D.String(), key.D.Text(16), base64.StdEncoding.EncodeToString(der)[100:160],
	}
	var mu sync.Mutex
	// The JWTs the fake IMS received are credentials too; each is added
	// once seen, before the error is checked.
	addJWT := func(form url.Values) {
		if j := form.Get("jwt_token"); j != "" {
			mu.Lock()
			// The signature's start too: a description is cut short, and
			// part of a signature is already too much.
			forbidden = append(forbidden, j, j[strings.LastIndex(j, ".")+1:][:64])
			mu.Unlock()
		}
	}
	recording := func(h func(http.ResponseWriter, *http.Request, url.Values)) func(http.ResponseWriter, *http.Request, url.Values) {
		return func(w http.ResponseWriter, r *http.Request, form url.Values) {
			addJWT(form)
			h(w, r, form)
		}
	}

	jwtAt := func(u string) Source {
		s := testJWTSource(u)
		s.ClientSecret = config.Secret(leakSecret)
		return s
	}
	oauthAt := func(u string) Source {
		s := testOAuthSource(u)
		s.ClientSecret = config.Secret(leakSecret)
		return s
	}
	answering := func(status int, shape string) func(t *testing.T) string {
		return func(t *testing.T) string { return newFakeIMSFunc(t, recording(echo(status, shape))).URL }
	}
	fixed := func(status int, body string) func(t *testing.T) string {
		return func(t *testing.T) string {
			return newFakeIMSFunc(t, recording(func(w http.ResponseWriter, _ *http.Request, _ url.Values) {
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
			})).URL
		}
	}
	redirect := func(t *testing.T) string {
		return newFakeIMSFunc(t, recording(func(w http.ResponseWriter, r *http.Request, form url.Values) {
			http.Redirect(w, r, "/elsewhere?"+form.Encode(), http.StatusPermanentRedirect)
		})).URL
	}
	slow := func(t *testing.T) string {
		return newFakeIMSFunc(t, recording(func(w http.ResponseWriter, r *http.Request, _ url.Values) {
			<-r.Context().Done()
		})).URL
	}

	type fetchCase struct {
		name   string
		source func(string) Source
		ims    func(t *testing.T) string
	}
	var cases []fetchCase
	for _, src := range []struct {
		name string
		new  func(string) Source
	}{{"jwt", jwtAt}, {"oauth", oauthAt}} {
		cases = append(cases,
			fetchCase{src.name + " 400 echo in error and description", src.new, answering(400, "oauth")},
			fetchCase{src.name + " 401 echo as text", src.new, answering(401, "text")},
			fetchCase{src.name + " 400 echo of the JWT signature", src.new, answering(400, "signature")},
			fetchCase{src.name + " 403 echo in the gateway shape", src.new, answering(403, "gateway")},
			fetchCase{src.name + " 200 error with a token", src.new, answering(200, "error-with-token")},
			fetchCase{src.name + " 200 echo as text", src.new, answering(200, "text")},
			fetchCase{src.name + " 200 echo in the error", src.new, answering(200, "oauth")},
			fetchCase{src.name + " 200 token without lifetime", src.new, fixed(200, `{"access_token":"`+leakToken+`"}`)},
			fetchCase{src.name + " redirect", src.new, redirect},
			fetchCase{src.name + " timeout", src.new, slow},
			fetchCase{src.name + " unreachable", src.new, closedURL},
		)
	}
	cases = append(cases, fetchCase{"jwt without private key", func(u string) Source {
		s := jwtAt(u).(*JWTSource)
		s.PrivateKey = config.PrivateKey{}
		return s
	}, fixed(200, okJWTAnswer)})

	var errs []error
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := c.source(c.ims(t)).Fetch(ctx)
			if err == nil {
				t.Fatal("no error")
			}
			errs = append(errs, err)
		})
	}

	expired := unsignedJWT(t, map[string]any{"exp": 1, "secret": leakToken})
	forbidden = append(forbidden, expired)
	s, err := newStaticSource(config.Secret(expired), fixedClock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Fetch(context.Background())
	errs = append(errs, err)

	creds := config.Credentials{ClientSecret: config.Secret(leakSecret), AccessToken: config.Secret(leakToken), PrivateKey: config.NewPrivateKey(key)}
	for _, auth := range []config.AuthKind{config.AuthJWT, config.AuthOAuth, "bogus"} {
		_, err := NewSource(&config.Route{Name: "stock", Auth: auth, Credentials: creds}, nil)
		errs = append(errs, err)
	}

	for _, err := range errs {
		if err == nil {
			t.Error("a case produced no error")
			continue
		}
		texts := []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
		var ie *IMSError
		if errors.As(err, &ie) {
			texts = append(texts, ie.Hint(), ie.Description, ie.Code, fmt.Sprintf("%#v", *ie))
		}
		for _, text := range texts {
			for _, f := range forbidden {
				if strings.Contains(text, f) {
					t.Errorf("error text %q contains the credential %q", text, f)
				}
			}
		}
	}
}
