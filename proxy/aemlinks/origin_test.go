package aemlinks

import (
	"net/url"
	"strings"
	"testing"
)

const testBase = "http://127.0.0.1:8081"

func mustOrigin(t testing.TB, upstream string) *origin {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	return newOrigin(u)
}

// urlCases are URLs as an upstream may write them and what the route's
// callers must get; "" means unchanged.
var urlCases = []struct {
	name, upstream, in, want string
}{
	{"a path", "https://author.example.com", "https://author.example.com/api/assets/wknd.json", testBase + "/api/assets/wknd.json"},
	{"the origin alone", "https://author.example.com", "https://author.example.com", testBase},
	{"a query", "https://author.example.com", "https://author.example.com?limit=5", testBase + "?limit=5"},
	{"a fragment", "https://author.example.com", "https://author.example.com#top", testBase + "#top"},
	{"scheme and host in upper case", "https://author.example.com", "HTTPS://Author.Example.COM/x", testBase + "/x"},
	{"an upstream written in upper case", "HTTPS://AUTHOR.example.com", "https://author.example.com/x", testBase + "/x"},
	{"the default port written", "https://author.example.com", "https://author.example.com:443/x", testBase + "/x"},
	{"an empty port", "https://author.example.com", "https://author.example.com:/x", testBase + "/x"},
	{"an upstream with its default port", "https://author.example.com:443", "https://author.example.com/x", testBase + "/x"},
	{"another port", "https://author.example.com", "https://author.example.com:8443/x", ""},
	{"a port that starts with the default", "https://author.example.com", "https://author.example.com:4430/x", ""},
	{"a longer host", "https://author.example.com", "https://author.example.com.evil.net/x", ""},
	{"a host that continues", "https://author.example.com", "https://author.example.comx/y", ""},
	{"user info naming another host", "https://author.example.com", "https://author.example.com@evil.net/x", ""},
	{"the other scheme", "https://author.example.com", "http://author.example.com/x", ""},
	{"blob storage of direct binary upload", "https://author.example.com", "https://aemblob.blob.core.windows.net/c/x?sig=s", ""},
	{"a CDN rendition", "https://author.example.com", "https://delivery-p1-e2.adobeaemcloud.com/adobe/dynamicmedia/deliver/x.jpg", ""},
	{"a relative reference", "https://author.example.com", "/api/assets/wknd.json", ""},
	{"the origin inside a text", "https://author.example.com", "see https://author.example.com/x", ""},
	{"an explicit port", "http://127.0.0.1:4502", "http://127.0.0.1:4502/content/dam/x.jpg", testBase + "/content/dam/x.jpg"},
	{"an explicit port missing", "http://127.0.0.1:4502", "http://127.0.0.1/x", ""},
	{"an explicit port continued", "http://127.0.0.1:4502", "http://127.0.0.1:45021/x", ""},
	{"an IPv6 upstream", "http://[::1]:4502", "http://[::1]:4502/x", testBase + "/x"},
	{"under the upstream's path", "https://author.example.com/aem/", "https://author.example.com/aem/api/x.json", testBase + "/api/x.json"},
	{"the upstream's path alone", "https://author.example.com/aem", "https://author.example.com/aem?x", testBase + "?x"},
	{"outside the upstream's path", "https://author.example.com/aem", "https://author.example.com/other/x", ""},
	{"a path that continues the upstream's", "https://author.example.com/aem", "https://author.example.com/aemx/y", ""},
}

func TestRewriteURL_OnlyTheUpstreamOrigin(t *testing.T) {
	for _, c := range urlCases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			if want == "" {
				want = c.in
			}
			got, changed := mustOrigin(t, c.upstream).rewriteURL(c.in, testBase)
			if got != want || changed != (c.want != "") {
				t.Fatalf("rewriteURL(%q) = %q, %v; want %q", c.in, got, changed, want)
			}
		})
	}
}

func TestRewriteLink_RewritesTargetsNotParameters(t *testing.T) {
	o := mustOrigin(t, "https://author.example.com")
	cases := []struct{ name, in, want string }{
		{"one target", `<https://author.example.com/api/assets.json?offset=20>; rel="next"`,
			`<` + testBase + `/api/assets.json?offset=20>; rel="next"`},
		{"several targets, one elsewhere", `<https://author.example.com/a>; rel="prev", <https://cdn.example.net/b>; rel=preload, <https://author.example.com/c>; rel=next`,
			`<` + testBase + `/a>; rel="prev", <https://cdn.example.net/b>; rel=preload, <` + testBase + `/c>; rel=next`},
		{"a quoted parameter holding a bracket", `</x>; title="<https://author.example.com/y>"`, ``},
		{"an unclosed bracket", `<https://author.example.com/a`, ``},
		{"another origin", `<https://author.example.com.evil.net/a>; rel=next`, ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			if want == "" {
				want = c.in
			}
			if got, _ := o.rewriteLink(c.in, testBase); got != want {
				t.Fatalf("rewriteLink(%q)\n = %q\nwant %q", c.in, got, want)
			}
		})
	}
}

// escapeSlashes spells s as PHP's json_encode does.
func escapeSlashes(s string) string { return strings.ReplaceAll(s, "/", `\/`) }
