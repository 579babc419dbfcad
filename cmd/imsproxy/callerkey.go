package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/imsproxy/imsproxy/config"
)

// callerKeyPrefix marks imsproxy caller keys, so that secret scanners and
// people recognise one in a file or a log.
const callerKeyPrefix = "imsp_"

// callerKey mints a caller key for IMSPROXY_CALLERS_FILE and prints it, its
// SHA-256 and the callers-file entry. The key is printed once and stored
// nowhere: the file holds only its hash.
func callerKey(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("caller-key", "usage: imsproxy caller-key [-name NAME] [-routes stock,aem] [-license]\n\n"+
		"Mints a random caller key and prints it with its SHA-256 and the entry to add to IMSPROXY_CALLERS_FILE.\n",
		stdout, stderr)
	name := fs.String("name", "my-app", "the caller's name (in logs and the audit log)")
	routes := fs.String("routes", "stock", "comma-separated routes the caller may use")
	license := fs.Bool("license", false, "allow the caller to license Stock content (spends credits)")
	if code, ok := fs.parse(args, 0); !ok {
		return code
	}
	var list []string
	for _, r := range strings.Split(*routes, ",") {
		if r = strings.ToLower(strings.TrimSpace(r)); r != "" {
			list = append(list, r)
		}
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		fmt.Fprintf(stderr, "imsproxy caller-key: %v\n", err)
		return 1
	}
	key := callerKeyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(key))
	entry, _ := json.Marshal(struct {
		Name      string   `json:"name"`
		KeySHA256 string   `json:"key_sha256"`
		Routes    []string `json:"routes"`
		License   bool     `json:"license"`
	}{*name, hex.EncodeToString(sum[:]), list, *license})
	// The entry is checked by the parser of the callers file itself, so
	// that nothing is printed that the proxy would refuse to load.
	if _, err := config.ParseCallers([]byte("["+string(entry)+"]"), nil); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			line = strings.TrimPrefix(strings.TrimPrefix(line, "caller 1 ("+*name+"): "), "caller 1: ")
			fmt.Fprintf(stderr, "imsproxy caller-key: %s\n", flagged(line))
		}
		fmt.Fprintf(stderr, "\n")
		fs.printUsage(stderr)
		return 2
	}
	fmt.Fprintf(stdout, "caller key (give it to the application; it is shown only now):\n  %s\n", key)
	fmt.Fprintf(stdout, "key_sha256:\n  %s\n", hex.EncodeToString(sum[:]))
	fmt.Fprintf(stdout, "entry for IMSPROXY_CALLERS_FILE (a JSON list of such entries):\n  %s\n", entry)
	return 0
}

// flagged names the flag a problem of the callers file's parser is about:
// its messages speak of the file's fields, name and routes.
func flagged(problem string) string {
	for field, flag := range map[string]string{"name ": "-name: ", "routes ": "-routes: ", "route ": "-routes: "} {
		if strings.HasPrefix(problem, field) {
			return flag + problem
		}
	}
	return problem
}
