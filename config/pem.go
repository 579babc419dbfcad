package config

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"strings"
	"unicode"
)

// The parsers below return a message instead of an error: a phrase such as
// "is not PEM: ..." that the caller puts after the variable or the JSON field
// it came from. None of them includes key material or an underlying parser
// error, whose text could quote the input.

// readFile reads a file a variable names. The message names the path (a
// path is not a secret) and the reason, without the Go error prefix.
func readFile(path string) ([]byte, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "cannot read " + path + ": " + readError(err)
	}
	return b, ""
}

// readSecretFile reads a file that holds a secret (CLIENT_SECRET_FILE,
// PRIVATE_KEY_FILE, CREDENTIALS_FILE...). Its message repeats the value only
// when it looks like a path: the secret itself, put in the _FILE variable by
// mistake, is a "file" that cannot be read, and must not be printed then.
func readSecretFile(path string) ([]byte, string) {
	if looksLikePath(path) {
		return readFile(path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "cannot read the file it names: " + readError(err) +
			" (the value is not repeated: it does not look like a path, and may be the secret itself)"
	}
	return b, ""
}

// readError is why a file could not be read, without the path that
// *fs.PathError repeats.
func readError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err.Error()
}

// looksLikePath reports whether s may be repeated as a file path: it has a
// slash, and none of what a secret pasted whole carries and a path does not
// (white space and control characters, quotes, braces, backslashes, and
// base64's + and =), nor "://". A client secret or an access token has no
// slash; a PEM key or a JSON document has spaces, line breaks or quotes; a
// URL may carry a password.
func looksLikePath(s string) bool {
	return strings.Contains(s, "/") && !strings.Contains(s, "://") && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`"{}\+=`, r)
	})
}

// normalizePEM turns the literal two-character escapes \n and \r\n into line
// breaks. A key pasted into an environment variable or a .env file often
// arrives that way (it was copied out of a JSON string), and PEM text never
// contains a backslash, so the replacement cannot damage a valid PEM.
func normalizePEM(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\`)) {
		return b
	}
	b = bytes.ReplaceAll(b, []byte(`\r`), nil)
	return bytes.ReplaceAll(b, []byte(`\n`), []byte("\n"))
}

// pemBlocks decodes every PEM block in data. pem.Decode accepts \r\n line
// endings, as AEM service credentials have inside their JSON strings.
func pemBlocks(data []byte) []*pem.Block {
	var blocks []*pem.Block
	rest := normalizePEM(data)
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			return blocks
		}
		blocks = append(blocks, b)
		rest = r
	}
}

// parsePrivateKey parses an RSA private key from PEM: PKCS#1 ("RSA PRIVATE
// KEY", as in AEM service credentials) or PKCS#8 ("PRIVATE KEY", as modern
// openssl writes). IMS signs with RS256 only, so any other key is refused.
func parsePrivateKey(data []byte) (*rsa.PrivateKey, string) {
	blocks := pemBlocks(data)
	if len(blocks) == 0 {
		return nil, "is not PEM: want a block starting -----BEGIN PRIVATE KEY----- (PKCS#8) or -----BEGIN RSA PRIVATE KEY----- (PKCS#1)"
	}
	var b *pem.Block
	for _, c := range blocks {
		// openssl may put an "EC PARAMETERS" block before the key.
		if strings.HasSuffix(c.Type, "PRIVATE KEY") {
			b = c
			break
		}
	}
	switch {
	case b == nil:
		return nil, "holds a " + blocks[0].Type + " block, not a private key"
	case b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED"):
		return nil, "is an encrypted key: give it unencrypted (openssl pkey -in key.pem -out plain.pem)"
	case b.Type == "EC PRIVATE KEY":
		return nil, "is an EC key, not RSA: IMS signs the JWT with RS256, which needs an RSA key"
	case b.Type != "RSA PRIVATE KEY" && b.Type != "PRIVATE KEY":
		return nil, "holds a " + b.Type + " block: want PRIVATE KEY (PKCS#8) or RSA PRIVATE KEY (PKCS#1)"
	}
	// Try both encodings whatever the label says: mislabelled keys exist
	// and the content is unambiguous.
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, ""
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, "does not parse as a PKCS#1 or PKCS#8 private key (is the PEM block complete?)"
	}
	if rk, ok := k.(*rsa.PrivateKey); ok {
		return rk, ""
	}
	return nil, "is " + keyKind(k) + " key, not RSA: IMS signs the JWT with RS256, which needs an RSA key"
}

// keyKind names a non-RSA key type with its article.
func keyKind(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey, *ecdh.PrivateKey:
		return "an EC"
	case ed25519.PrivateKey:
		return "an Ed25519"
	}
	return "a non-RSA"
}

// parseCertificate parses the first X.509 certificate in PEM data.
func parseCertificate(data []byte) (*x509.Certificate, string) {
	blocks := pemBlocks(data)
	if len(blocks) == 0 {
		return nil, "is not PEM: want a block starting -----BEGIN CERTIFICATE-----"
	}
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, "does not parse as an X.509 certificate"
		}
		return c, ""
	}
	return nil, "holds a " + blocks[0].Type + " block, not a CERTIFICATE"
}

// matchesKey reports whether the certificate was made for the private key.
// A mismatch means IMS will answer invalid_signature, so it is caught here.
func matchesKey(c *x509.Certificate, k *rsa.PrivateKey) bool {
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	return ok && pub.Equal(&k.PublicKey)
}
