package aemlinks

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRewrite_Headers(t *testing.T) {
	cases := []struct {
		name   string
		method string
		status int
		header map[string]string // {origin} stands for the upstream's origin
		want   map[string]string // {front} for the route's address; absent: unchanged
	}{
		{"Location of a 201", http.MethodPost, http.StatusCreated,
			map[string]string{"Location": "{origin}/api/assets/wknd/new-folder.json"},
			map[string]string{"Location": "{front}/api/assets/wknd/new-folder.json"}},
		{"Location of a redirect", http.MethodGet, http.StatusFound,
			map[string]string{"Location": "{origin}/libs/granite/core/content/login.html?resource=%2F"},
			map[string]string{"Location": "{front}/libs/granite/core/content/login.html?resource=%2F"}},
		{"Content-Location", http.MethodGet, http.StatusOK,
			map[string]string{"Content-Location": "{origin}/content/dam/x.jpg", "Content-Type": "image/jpeg"},
			map[string]string{"Content-Location": "{front}/content/dam/x.jpg"}},
		{"Link", http.MethodGet, http.StatusOK,
			map[string]string{"Link": `<{origin}/api/assets.json?offset=20>; rel="next", <https://cdn.example.net/x.css>; rel=preload`},
			map[string]string{"Link": `<{front}/api/assets.json?offset=20>; rel="next", <https://cdn.example.net/x.css>; rel=preload`}},
		{"a Location elsewhere", http.MethodPost, http.StatusCreated,
			map[string]string{"Location": "https://aemblob.blob.core.windows.net/c/x?sig=s"}, nil},
		{"a relative Location", http.MethodPost, http.StatusCreated,
			map[string]string{"Location": "/api/assets/wknd/new-folder.json"}, nil},
		{"HEAD of JSON: links rewritten, no length the GET may not have", http.MethodHead, http.StatusOK,
			map[string]string{"Content-Type": "application/json", "Content-Length": "120", "Link": "<{origin}/a>; rel=self"},
			map[string]string{"Link": "<{front}/a>; rel=self", "Content-Length": ""}},
		{"HEAD of a binary keeps its length", http.MethodHead, http.StatusOK,
			map[string]string{"Content-Type": "image/jpeg", "Content-Length": "120", "Content-Location": "{origin}/x.jpg"},
			map[string]string{"Content-Location": "{front}/x.jpg"}},
		{"304 with Content-Location", http.MethodGet, http.StatusNotModified,
			map[string]string{"Content-Location": "{origin}/api/assets.json", "Etag": `"v1"`},
			map[string]string{"Content-Location": "{front}/api/assets.json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := startChain(t, Options{}, func(w http.ResponseWriter, r *http.Request, origin string) {
				for k, v := range c.header {
					w.Header().Set(k, strings.ReplaceAll(v, "{origin}", origin))
				}
				w.WriteHeader(c.status)
			})
			resp, body := ch.do(t, c.method, "/api/assets/wknd/new-folder")
			if resp.StatusCode != c.status || len(body) != 0 {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			for k, v := range c.header {
				want, ok := c.want[k]
				if !ok {
					want = strings.ReplaceAll(v, "{origin}", ch.up.URL)
				}
				want = strings.ReplaceAll(want, "{front}", ch.frontBase())
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
		})
	}
}

// A rewritten answer carries W/"tag"; the caller revalidates with it, the
// upstream (comparing weakly) answers 304 with its strong "tag", and the
// caller must see the tag it holds.
func TestRewrite_NotModifiedAnswersTheTagTheCallerHolds(t *testing.T) {
	ch := startChain(t, Options{}, func(w http.ResponseWriter, r *http.Request, origin string) {
		w.Header().Set("Etag", `"v7"`)
		if r.Header.Get("If-None-Match") != "" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"href":"`+origin+`/a.json"}`)
	})
	resp, _ := ch.do(t, http.MethodGet, "/a.json")
	tag := resp.Header.Get("Etag")
	if tag != `W/"v7"` {
		t.Fatalf("rewritten answer's ETag %q, want W/\"v7\"", tag)
	}
	cases := []struct{ ifNoneMatch, want string }{
		{tag, tag},
		{`"other", ` + tag, tag},
		{`"v7"`, `"v7"`}, // the caller holds an unrewritten copy
	}
	for _, c := range cases {
		resp, _ := ch.do(t, http.MethodGet, "/a.json", "If-None-Match", c.ifNoneMatch)
		if resp.StatusCode != http.StatusNotModified || resp.Header.Get("Etag") != c.want {
			t.Errorf("If-None-Match %s: %d with ETag %q, want 304 with %s", c.ifNoneMatch, resp.StatusCode, resp.Header.Get("Etag"), c.want)
		}
	}
}

// 103 Early Hints carries Link: rewritten, and not repeated on the final
// answer.
func TestRewrite_EarlyHintsLink(t *testing.T) {
	ch := startChain(t, Options{}, func(w http.ResponseWriter, r *http.Request, origin string) {
		w.Header().Set("Link", "<"+origin+"/etc.clientlibs/site.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html></html>")
	})
	var mu sync.Mutex
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		hints = append(hints, strconv.Itoa(code)+" "+h.Get("Link"))
		return nil
	}}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(context.Background(), trace), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ch.front.URL+"/page.html", nil)
	resp, err := ch.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	want := "103 <" + ch.frontBase() + "/etc.clientlibs/site.css>; rel=preload; as=style"
	if len(hints) != 1 || hints[0] != want {
		t.Fatalf("early hints %q, want [%q]", hints, want)
	}
	if l := resp.Header.Get("Link"); l != "" {
		t.Errorf("the final answer repeats the hint's Link %q", l)
	}
}
