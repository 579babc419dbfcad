package main

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsproxy/imsproxy/config"
	"github.com/imsproxy/imsproxy/integration/fakeadobe"
)

// readKeyPair parses the files keygen wrote in dir.
func readKeyPair(t *testing.T, dir string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	kb, err := os.ReadFile(filepath.Join(dir, "private.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(kb)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("private.key is not a PKCS#8 PEM block:\n%s", kb)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok || key.N.BitLen() != 2048 {
		t.Fatalf("private key is %T, want RSA 2048", k)
	}
	cb, err := os.ReadFile(filepath.Join(dir, "certificate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := fakeadobe.ParseCertificatePEM(cb)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func TestKeygen_WritesAKeyPairTheDeveloperConsoleAccepts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "keys")
	code, stdout, stderr := runCmd(t, nil, "keygen", "-out", dir, "-days", "90", "-cn", "imsproxy-prod-aem")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	key, cert := readKeyPair(t, dir)
	for name, want := range map[string]os.FileMode{"private.key": 0o600, "certificate.crt": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		t.Fatal("the certificate is not the key's")
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if cert.Subject.CommonName != "imsproxy-prod-aem" {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	if left := time.Until(cert.NotAfter); left < 89*24*time.Hour || left > 90*24*time.Hour {
		t.Errorf("valid for %v more, want 90 days", left)
	}
	if time.Now().Before(cert.NotBefore) {
		t.Errorf("not valid yet: NotBefore %v", cert.NotBefore)
	}
	sum := sha256.Sum256(cert.Raw)
	fp := strings.ToUpper(hex.EncodeToString(sum[:]))
	if printed := strings.ReplaceAll(stdout, ":", ""); !strings.Contains(printed, "SHA-256 fingerprint "+fp) {
		t.Errorf("stdout lacks the SHA-256 fingerprint %s:\n%s", fp, stdout)
	}
	for _, want := range []string{"expires: " + cert.NotAfter.UTC().Format(time.RFC3339), "next steps:",
		"IMSPROXY_<ROUTE>_PRIVATE_KEY_FILE=" + filepath.Join(dir, "private.key")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}

	// The proxy's own configuration accepts the pair (it checks that the
	// certificate belongs to the key), and so does IMS once the certificate
	// is uploaded.
	e := startEmulator(t)
	c := e.credentials(t, fakeadobe.CredentialOptions{})
	if err := e.AddCertificate(c.ClientID, cert); err != nil {
		t.Fatal(err)
	}
	env := replaceVar(e.jwtEnv(t, c), "IMSPROXY_AEM_PRIVATE_KEY_FILE", filepath.Join(dir, "private.key"))
	env = append(env, "IMSPROXY_AEM_CERTIFICATE_FILE="+filepath.Join(dir, "certificate.crt"))
	if _, err := config.Load(env); err != nil {
		t.Fatalf("config refuses the generated pair: %v", err)
	}
	code, stdout, stderr = runCmd(t, env, "token")
	if code != 0 {
		t.Fatalf("token with the generated key: exit %d, stderr %q", code, stderr)
	}
	if info := e.LookupToken(strings.TrimSpace(stdout)); info.Certificate != fakeadobe.Fingerprint(cert) {
		t.Errorf("token signed with certificate %q, want the generated one", info.Certificate)
	}
}

func TestKeygen_NeverOverwrites(t *testing.T) {
	for _, existing := range []string{"private.key", "certificate.crt"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			old := []byte("precious key in use\n")
			if err := os.WriteFile(filepath.Join(dir, existing), old, 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCmd(t, nil, "keygen", "-out", dir)
			if code != 1 || stdout != "" || !strings.Contains(stderr, "already exists: refusing to overwrite") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and a refusal", code, stdout, stderr)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, existing)); !bytes.Equal(b, old) {
				t.Errorf("%s was changed", existing)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("keygen left %d files, want only the existing one", len(entries))
			}
		})
	}
}

func TestKeygen_UsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"keygen"}, "-out is required"},
		{[]string{"keygen", "-out", dir, "-days", "0"}, "-days must be between 1 and 3650"},
		{[]string{"keygen", "-out", dir, "-days", "36500"}, "-days must be between 1 and 3650"},
		{[]string{"keygen", "-out", dir, "-cn", " "}, "-cn must be a printable name"},
		{[]string{"keygen", "-out", dir, "extra"}, `unexpected argument "extra"`},
		{[]string{"keygen", "-bits", "4096"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, nil, tt.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused keygen wrote %d files", len(entries))
	}
}

// An -out that cannot be a directory is reported as what it is, not as
// an existing key pair.
func TestKeygen_OutUnderAFileSaysWhatIsWrong(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{filepath.Join(file, "keys"), filepath.Join(file, "deeper", "keys"), "/dev/null/x"} {
		code, stdout, stderr := runCmd(t, nil, "keygen", "-out", out)
		notDir := file
		if strings.HasPrefix(out, "/dev/null") {
			notDir = "/dev/null"
		}
		want := "imsproxy keygen: -out " + out + " cannot be created: " + notDir + " is not a directory\n"
		if code != 1 || stdout != "" || stderr != want {
			t.Errorf("-out %s: exit %d, stdout %q, stderr %q; want 1 and %q", out, code, stdout, stderr, want)
		}
	}
}
