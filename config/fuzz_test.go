package config

import (
	"testing"
)

// FuzzCredentialsFile feeds arbitrary bytes to the service-credentials
// parser: whatever an operator points CREDENTIALS_FILE at, Load must report
// problems, never panic. Seeds are in testdata/fuzz/FuzzCredentialsFile.
func FuzzCredentialsFile(f *testing.F) {
	f.Add([]byte(`{"integration":{"imsEndpoint":"ims-na1.adobelogin.com","metascopes":"a, b","technicalAccount":{"clientId":"c","clientSecret":"s"},"id":"t","org":"o"}}`))
	f.Add([]byte(`{"integration":{"metascopes":["a",1],"technicalAccount":"x","privateKey":"-----BEGIN RSA PRIVATE KEY-----\r\nAA==\r\n-----END RSA PRIVATE KEY-----\r\n"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, ps := parseServiceCredentials("V", data)
		for _, p := range ps {
			if p.Var != "V" || p.Message == "" {
				t.Fatalf("malformed problem %+v", p)
			}
		}
		if !sc.loaded && (sc.ClientID != "" || sc.PrivateKey != nil || len(sc.Metascopes) > 0) {
			t.Fatalf("values from a file that did not load: %+v", sc)
		}
		if !sc.loaded && len(ps) != 1 {
			t.Fatalf("a file that did not load must be exactly one problem, got %v", ps)
		}
	})
}

// FuzzJWTPayload feeds arbitrary bytes to the JWT payload parser.
func FuzzJWTPayload(f *testing.F) {
	f.Add([]byte(consolePayload))
	f.Add([]byte(`{"exp":1,"jti":"x","https://ims/s/a":false}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _ := parseJWTPayload("V", data)
		if _, ok := p.Claims["exp"]; ok {
			t.Fatalf("exp kept")
		}
		if _, ok := p.Claims["jti"]; ok {
			t.Fatalf("jti kept")
		}
		for _, m := range p.Metascopes {
			if p.Claims[m] != true {
				t.Fatalf("metascope %q is not a true claim", m)
			}
		}
	})
}
