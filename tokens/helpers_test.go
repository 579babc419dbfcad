package tokens

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/internal/testutil"

	"github.com/imsproxy/imsproxy/config"
)

// t0 is the instant the injected clocks stand at.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func fixedClock() time.Time { return t0 }

// testKey is made once per process.
func testKey() *rsa.PrivateKey { return testutil.RSA(0) }

// seenRequest is what the fake IMS received.
type seenRequest struct {
	Method, Path, RawQuery, ContentType string
	Form                                url.Values // the body's fields only
}

// fakeIMS answers every request with a fixed status and body, and records
// the requests, so tests check both what is sent and how answers are read.
type fakeIMS struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func newFakeIMS(t *testing.T, status int, body string) *fakeIMS {
	t.Helper()
	return newFakeIMSFunc(t, func(w http.ResponseWriter, _ *http.Request, _ url.Values) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})
}

// newFakeIMSFunc is newFakeIMS with a handler that also gets the parsed body
// form, for answers that depend on the request.
func newFakeIMSFunc(t *testing.T, answer func(http.ResponseWriter, *http.Request, url.Values)) *fakeIMS {
	t.Helper()
	f := &fakeIMS{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), r.PostForm})
		f.mu.Unlock()
		answer(w, r, r.PostForm)
	}))
	t.Cleanup(f.Close)
	return f
}

// last returns the last request received; it fails the test when none was.
func (f *fakeIMS) last(t *testing.T) seenRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		t.Fatal("IMS received no request")
	}
	return f.seen[len(f.seen)-1]
}

func (f *fakeIMS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

// closedURL returns the URL of a port that was bound and then closed: a
// connection to it is refused at once, the surest way to fake an IMS that
// cannot be reached.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

// unsignedJWT builds a token with the given payload and a dummy signature;
// only its payload is ever read.
func unsignedJWT(t *testing.T, payload map[string]any) string {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc.EncodeToString(b) + ".c2ln"
}

// testJWTSource returns a JWTSource for the IMS at imsURL with the test key
// and clock.
func testJWTSource(imsURL string) *JWTSource {
	return &JWTSource{
		IMSURL:             imsURL,
		ClientID:           "cm-p1-e2-integration",
		ClientSecret:       config.Secret("p8e-client-secret"),
		OrgID:              "907136ED5D35CBF50A495CD4@AdobeOrg",
		TechnicalAccountID: "D8E157165FC0EAE10A495E8C@techacct.adobe.com",
		PrivateKey:         config.NewPrivateKey(testKey()),
		Metascopes:         []string{"ent_aem_cloud_api"},
		now:                fixedClock,
	}
}

func testOAuthSource(imsURL string) *OAuthSource {
	return &OAuthSource{
		IMSURL:       imsURL,
		ClientID:     "oauth-client",
		ClientSecret: config.Secret("p8e-oauth-secret"),
		Scopes:       []string{"openid", "AdobeID", "read_organizations"},
		now:          fixedClock,
	}
}
