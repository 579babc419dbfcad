package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/imsproxy/imsproxy/tokens"
)

// The files keygen writes, and the longest validity it accepts:
// ten years, beyond which a number is more likely a typo than a policy.
const (
	keyFileName  = "private.key"
	certFileName = "certificate.crt"
	maxKeyDays   = 3650
)

// keyPair is a generated private key and its self-signed certificate.
type keyPair struct {
	KeyPEM  []byte
	CertPEM []byte
	Cert    *x509.Certificate
}

// keygen writes a new RSA key pair for a Service Account (JWT) credential:
// the private key the proxy signs with and the certificate to upload to the
// Developer Console.
func keygen(args []string, stdout, stderr io.Writer) int {
	fl := newFlags("keygen", "usage: imsproxy keygen -out DIR [-days 365] [-cn NAME]\n\n"+
		"Writes an RSA 2048 private key (PKCS#8 PEM, mode 0600) and a self-signed certificate to upload\n"+
		"to the Adobe Developer Console. Existing files are never overwritten.\n", stdout, stderr)
	out := fl.String("out", "", "directory to write "+keyFileName+" and "+certFileName+" to (created if missing)")
	days := fl.Int("days", 365, "days the certificate is valid")
	cn := fl.String("cn", "imsproxy", "common name of the certificate, to tell it apart in the Developer Console")
	if code, ok := fl.parse(args, 0); !ok {
		return code
	}
	var bad []string
	if *out == "" {
		bad = append(bad, "-out is required: the directory to write the key pair to")
	}
	if *days < 1 || *days > maxKeyDays {
		bad = append(bad, fmt.Sprintf("-days must be between 1 and %d", maxKeyDays))
	}
	if strings.TrimSpace(*cn) == "" || strings.ContainsFunc(*cn, unicode.IsControl) {
		bad = append(bad, "-cn must be a printable name")
	}
	if len(bad) > 0 {
		fmt.Fprintf(stderr, "imsproxy keygen: %s\n", strings.Join(bad, "; "))
		return 2
	}

	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintf(stderr, "imsproxy keygen: %v\n", err)
		return 1
	}
	keyPath, certPath := filepath.Join(dir, keyFileName), filepath.Join(dir, certFileName)
	if msg := checkOut(dir, keyPath, certPath); msg != "" {
		fmt.Fprintf(stderr, "imsproxy keygen: %s\n", msg)
		return 1
	}
	now := time.Now()
	kp, err := generateKeyPair(*cn, time.Duration(*days)*24*time.Hour, now)
	if err != nil {
		fmt.Fprintf(stderr, "imsproxy keygen: %v\n", err)
		return 1
	}
	if err := writeKeyPair(dir, keyPath, certPath, kp); err != nil {
		fmt.Fprintf(stderr, "imsproxy keygen: %v\n", err)
		return 1
	}
	printNextSteps(stdout, keyPath, certPath, kp.Cert, now)
	return 0
}

// checkOut says why the key pair cannot be written to dir, or "": a file
// there already (never overwritten), or a directory that cannot be, such
// as one under a file.
func checkOut(dir string, paths ...string) string {
	for _, p := range paths {
		_, err := os.Lstat(p)
		switch {
		case err == nil:
			return p + " already exists: refusing to overwrite it (a key in use would be lost); choose another -out"
		case errors.Is(err, fs.ErrNotExist):
			continue
		case errors.Is(err, syscall.ENOTDIR):
			return "-out " + dir + " cannot be created: " + notDirectory(dir) + " is not a directory"
		}
		return "cannot use -out " + dir + ": " + pathError(err)
	}
	return ""
}

// notDirectory returns the first existing ancestor of dir (or dir) that is
// not a directory.
func notDirectory(dir string) string {
	for p := dir; ; p = filepath.Dir(p) {
		if info, err := os.Stat(p); err == nil && !info.IsDir() {
			return p
		}
		if parent := filepath.Dir(p); parent == p {
			return dir
		}
	}
}

// pathError is err without the operation *fs.PathError prefixes ("lstat").
func pathError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// generateKeyPair makes an RSA 2048 key and a self-signed certificate for
// it, valid from a few minutes before now (clock skew) for validity.
func generateKeyPair(cn string, validity time.Duration, now time.Time) (keyPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return keyPair{}, fmt.Errorf("generate RSA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return keyPair{}, fmt.Errorf("certificate serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return keyPair{}, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyPair{}, fmt.Errorf("read back certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return keyPair{}, fmt.Errorf("encode private key: %w", err)
	}
	return keyPair{
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Cert:    cert,
	}, nil
}

// writeKeyPair creates dir and both files; O_EXCL makes sure a file that
// appeared since the check is not overwritten either. If the certificate
// cannot be written the new key is removed, leaving no half pair behind.
func writeKeyPair(dir, keyPath, certPath string, kp keyPair) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := createFile(keyPath, kp.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := createFile(certPath, kp.CertPEM, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return err
	}
	return nil
}

func createFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// The umask may have taken bits away; the mode is part of the promise.
	err = f.Chmod(mode)
	if _, werr := f.Write(data); err == nil {
		err = werr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// fingerprint is the certificate's SHA-256 in the form `openssl x509
// -noout -fingerprint -sha256` prints, to compare with what was uploaded.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func printNextSteps(w io.Writer, keyPath, certPath string, cert *x509.Certificate, now time.Time) {
	expiry := cert.NotAfter.UTC()
	warns := "the proxy warns from " + expiry.Add(-tokens.CertificateWarningPeriod).Format("2006-01-02") + " on"
	if tokens.CertificateWarning(expiry, now) != "" {
		warns = "the proxy warns about it from the start, as it expires within 30 days"
	}
	fmt.Fprintf(w, `wrote %s (RSA 2048, PKCS#8, mode 0600): keep it secret, never upload it
wrote %s (self-signed X.509, CN=%s)
  SHA-256 fingerprint: %s
  expires: %s

next steps:
  1. Adobe Developer Console: open the project, its Service Account (JWT) credential,
     and upload %s as a new public key certificate. Keep the old one for now.
  2. Give the proxy the new key (and the certificate, so its expiry is watched):
       IMSPROXY_<ROUTE>_PRIVATE_KEY_FILE=%s
       IMSPROXY_<ROUTE>_CERTIFICATE_FILE=%s
     A running proxy notices changed files (or SIGHUP) and switches only once the new key
     has obtained a token; requests keep flowing meanwhile.
  3. Run "imsproxy check": it must say "token retrieved successfully" for the route.
  4. Revoke and delete the old certificate in the Developer Console.
  Renew before %s; %s.
`, keyPath, certPath, cert.Subject.CommonName, fingerprint(cert), expiry.Format(time.RFC3339),
		filepath.Base(certPath), keyPath, certPath, expiry.Format("2006-01-02"), warns)
}
