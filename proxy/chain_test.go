package proxy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// CONTRIBUTING.md shows a stock route's chain as the place to start
// reading: it must be the literal buildRoute has, comments aside.
func TestContributing_ShowsTheChainAsWritten(t *testing.T) {
	doc, err := os.ReadFile("../CONTRIBUTING.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("chain.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Architecture: the path of a request")
	if !ok {
		t.Fatal(`CONTRIBUTING.md has no "Architecture: the path of a request" section`)
	}
	block := regexp.MustCompile("(?s)```go\n(.*?)```").FindStringSubmatch(section)
	if block == nil {
		t.Fatal("the architecture section shows no Go block")
	}
	comments := regexp.MustCompile(`//[^\n]*`)
	squash := func(s string) string { return strings.Join(strings.Fields(comments.ReplaceAllString(s, "")), "") }
	if !strings.Contains(squash(string(code)), squash(block[1])) {
		t.Errorf("CONTRIBUTING.md's chain is not in proxy/chain.go:\n%s", block[1])
	}
}
