package aemlinks

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// sirenListing is a folder of n assets as the Assets HTTP API lists it:
// every link absolute on origin, plus one upload URL on blob storage.
func sirenListing(origin string, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"class":["assets/folder"],"properties":{"name":"adventures","dc:title":"Adventures","srn:paging":{"total":%d,"offset":0,"limit":20}},`, n)
	fmt.Fprintf(&b, `"links":[{"rel":["self"],"href":"%[1]s/api/assets/wknd/en/adventures.json"},{"rel":["parent"],"href":"%[1]s/api/assets/wknd/en.json"}],"entities":[`, origin)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"class":["assets/asset"],"rel":["child"],"properties":{"name":"asset-%[2]d.jpg","metadata":{"dc:title":"Asset %[2]d","dc:format":"image/jpeg","jcr:created":"2024-03-01T10:30:00Z","upload":"https://aemblob.blob.core.windows.net/container/asset-%[2]d?sig=abc"}},`, origin, i)
		fmt.Fprintf(&b, `"links":[{"rel":["self"],"href":"%[1]s/api/assets/wknd/en/adventures/asset-%[2]d.jpg.json"},{"rel":["content"],"href":"%[1]s/content/dam/wknd/en/adventures/asset-%[2]d.jpg"},{"rel":["thumbnail"],"href":"%[1]s/content/dam/wknd/en/adventures/asset-%[2]d.jpg/_jcr_content/renditions/cq5dam.thumbnail.319.319.png"}]}`, origin, i)
	}
	b.WriteString("]}\n")
	return []byte(b.String())
}

// jsonAnswer serves body as contentType, with a Content-Length or, when
// chunked, in two flushed writes of unknown length.
func jsonAnswer(contentType string, chunked bool, body func(origin string) []byte) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, origin string) {
		b := body(origin)
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Etag", `"v1"`)
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			_, _ = w.Write(b)
			return
		}
		_, _ = w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		_, _ = w.Write(b[len(b)/2:])
	}
}

func TestRewrite_JSONAnswers(t *testing.T) {
	listing := func(origin string) []byte { return sirenListing(origin, 3) }
	cases := []struct {
		name        string
		contentType string
		chunked     bool
		rewritten   bool
	}{
		{"Siren with a length", "application/vnd.siren+json; charset=utf-8", false, true},
		{"Siren chunked, of unknown length", "application/vnd.siren+json", true, true},
		{"application/json", "application/json", false, true},
		{"another +json type", "application/problem+json", false, true},
		{"JSON named in upper case", "Application/JSON;charset=UTF-8", true, true},
		{"HTML", "text/html; charset=utf-8", false, false},
		{"XML", "application/xml", true, false},
		{"a binary", "application/octet-stream", false, false},
		{"a type that only starts like JSON", "application/jsonl", false, false},
		{"no type", "", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := startChain(t, Options{}, jsonAnswer(c.contentType, c.chunked, listing))
			resp, body := ch.do(t, http.MethodGet, "/api/assets/wknd/en/adventures.json")
			want := listing(ch.up.URL)
			if c.rewritten {
				want = listing(ch.frontBase())
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("body:\n%s\nwant:\n%s", body, want)
			}
			if c.rewritten && resp.ContentLength != int64(len(body)) {
				t.Errorf("Content-Length %d for a body of %d", resp.ContentLength, len(body))
			}
			if c.rewritten != (resp.Header.Get("Etag") == `W/"v1"`) {
				t.Errorf("ETag %q; a rewritten body gets the upstream's tag made weak, another keeps it", resp.Header.Get("Etag"))
			}
			if !bytes.Contains(body, []byte("https://aemblob.blob.core.windows.net/container/asset-0?sig=abc")) {
				t.Error("the blob storage URL changed")
			}
		})
	}
}

func TestRewrite_AddressIsTheHostTheCallerUsed(t *testing.T) {
	ch := startChain(t, Options{}, jsonAnswer("application/json", false, func(origin string) []byte {
		return []byte(`{"href":"` + origin + `/api/assets.json"}`)
	}))
	_, body := ch.do(t, http.MethodGet, "/api/assets.json", "Host", "aem-proxy.internal:8081")
	if want := `{"href":"http://aem-proxy.internal:8081/api/assets.json"}`; string(body) != want {
		t.Fatalf("body %s, want %s", body, want)
	}
}

func TestRewrite_GzipAnswers(t *testing.T) {
	cases := []struct {
		name      string
		body      func(origin string) []byte
		rewritten bool
	}{
		{"with links: decoded and rewritten", func(origin string) []byte { return sirenListing(origin, 5) }, true},
		{"without links: passed as it came", func(string) []byte { return []byte(`{"links":[]}`) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sawEncoding := make(chan string, 1)
			ch := startChain(t, Options{}, func(w http.ResponseWriter, r *http.Request, origin string) {
				sawEncoding <- r.Header.Get("Accept-Encoding")
				z := gzipped(t, c.body(origin))
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Encoding", "gzip")
				w.Header().Set("Etag", `"gz1"`)
				w.Header().Set("Content-Md5", "not checked")
				_, _ = w.Write(z) // chunked, as a gateway compressing on the fly sends it
			})
			resp, body := ch.do(t, http.MethodGet, "/api/assets.json", "Accept-Encoding", "br, gzip;q=0.8")
			if got := <-sawEncoding; got != "gzip" {
				t.Errorf("upstream got Accept-Encoding %q, want gzip alone", got)
			}
			if !c.rewritten {
				if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Etag") != `"gz1"` ||
					!bytes.Equal(gunzipped(t, body), c.body(ch.up.URL)) {
					t.Fatalf("an answer without links changed: %v %q", resp.Header, body)
				}
				return
			}
			if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Md5") != "" {
				t.Errorf("Content-Encoding %q, Content-Md5 %q: want both gone", resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Md5"))
			}
			if want := c.body(ch.frontBase()); !bytes.Equal(body, want) {
				t.Fatalf("body:\n%s\nwant:\n%s", body, want)
			}
			if resp.ContentLength != int64(len(body)) || resp.Header.Get("Etag") != `W/"gz1"` {
				t.Errorf("Content-Length %d for %d bytes, ETag %q", resp.ContentLength, len(body), resp.Header.Get("Etag"))
			}
		})
	}
}

func TestRewrite_AcceptEncodingNarrowedToGzip(t *testing.T) {
	cases := []struct{ caller, upstream string }{
		{"gzip, deflate, br", "gzip"},
		{"br", ""},
		{"gzip;q=0, br", ""},
		{"*", "gzip"},
		{"identity", ""},
		{"", ""},
	}
	for _, c := range cases {
		t.Run(c.caller, func(t *testing.T) {
			seen := make(chan string, 1)
			ch := startChain(t, Options{}, func(w http.ResponseWriter, r *http.Request, _ string) {
				seen <- r.Header.Get("Accept-Encoding")
			})
			ch.do(t, http.MethodGet, "/content/dam/x.jpg", "Accept-Encoding", c.caller)
			if got := <-seen; got != c.upstream {
				t.Fatalf("caller sent %q, upstream got %q, want %q", c.caller, got, c.upstream)
			}
		})
	}
}

func TestRewrite_PassesUnchanged(t *testing.T) {
	big := func(origin string) []byte {
		// Valid JSON with a link, one byte over the limit.
		head := `["` + origin + `/api/assets.json","`
		return []byte(head + strings.Repeat("a", maxBody+1-len(head)-2) + `"]`)
	}
	cases := []struct {
		name     string
		upstream func(http.ResponseWriter, *http.Request, string)
	}{
		{"over 8 MiB with a length", jsonAnswer("application/json", false, big)},
		{"over 8 MiB, chunked", jsonAnswer("application/json", true, big)},
		{"not valid JSON", jsonAnswer("application/json", true, func(origin string) []byte {
			return []byte(`{"href":"` + origin + `/x",}`)
		})},
		{"a byte range", func(w http.ResponseWriter, _ *http.Request, origin string) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Range", "bytes 0-19/100")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write([]byte(`"` + origin + `"`))
		}},
		{"announcing trailers", func(w http.ResponseWriter, _ *http.Request, origin string) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Trailer", "X-Checksum")
			_, _ = w.Write([]byte(`"` + origin + `"`))
			w.Header().Set("X-Checksum", "1")
		}},
		{"encoded with br", func(w http.ResponseWriter, _ *http.Request, origin string) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "br")
			_, _ = w.Write([]byte(`"` + origin + `"`)) // not really br: it is never decoded
		}},
		{"not gzip after all", func(w http.ResponseWriter, _ *http.Request, origin string) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write([]byte(`"` + origin + `"`))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sentBody := make(chan []byte, 1)
			ch := startChain(t, Options{}, func(w http.ResponseWriter, r *http.Request, origin string) {
				rec := &capture{ResponseWriter: w}
				c.upstream(rec, r, origin)
				sentBody <- rec.body.Bytes()
			})
			_, body := ch.do(t, http.MethodGet, "/api/assets.json", "Accept-Encoding", "gzip")
			if sent := <-sentBody; !bytes.Equal(body, sent) {
				t.Fatalf("the answer changed (%d bytes sent, %d received)", len(sent), len(body))
			}
		})
	}
}

// capture keeps a copy of what an upstream handler writes.
type capture struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (c *capture) Write(b []byte) (int, error) { c.body.Write(b); return c.ResponseWriter.Write(b) }
func (c *capture) Flush()                      { c.ResponseWriter.(http.Flusher).Flush() }
