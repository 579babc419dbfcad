package cache

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func mustKey(t testing.TB, route, path, rawQuery string, lang, product []string) string {
	t.Helper()
	k, ok := cacheKey(route, path, rawQuery, lang, product)
	if !ok {
		t.Fatalf("cacheKey(%q) refused the query", rawQuery)
	}
	return k
}

func TestCacheKey_SameSearchSameKey(t *testing.T) {
	const base = "search_parameters[words]=cat&search_parameters[limit]=3&result_columns[]=id&result_columns[]=title"
	same := []string{
		"search_parameters[limit]=3&result_columns[]=id&search_parameters[words]=cat&result_columns[]=title",
		"result_columns[]=id&result_columns[]=title&search_parameters[limit]=3&search_parameters[words]=cat",
		// The PHP SDK escapes brackets; curl does not.
		"search_parameters%5Bwords%5D=cat&search_parameters%5blimit%5d=3&result_columns%5B%5D=id&result_columns%5B%5D=title",
		"search_parameters[words]=cat&&search_parameters[limit]=3&result_columns[]=id&result_columns[]=title&",
	}
	want := mustKey(t, "stock", pathSearchFiles, base, nil, nil)
	for _, q := range same {
		if got := mustKey(t, "stock", pathSearchFiles, q, nil, nil); got != want {
			t.Errorf("%q has another key than %q", q, base)
		}
	}
	if mustKey(t, "stock", pathSearchFiles, "words=cat+dog", nil, nil) != mustKey(t, "stock", pathSearchFiles, "words=cat%20dog", nil, nil) {
		t.Error("+ and %20 (both a space) have different keys")
	}
}

func TestCacheKey_DifferentSearchDifferentKey(t *testing.T) {
	lang, product := []string{"fr-FR"}, []string{"App/1"}
	base := mustKey(t, "stock", pathSearchFiles, "a=1&b=2", lang, product)
	others := []struct {
		name                  string
		route, path, rawQuery string
		lang, product         []string
	}{
		{"another route", "stock2", pathSearchFiles, "a=1&b=2", lang, product},
		{"another path", "stock", pathSearchCategory, "a=1&b=2", lang, product},
		{"another value", "stock", pathSearchFiles, "a=1&b=3", lang, product},
		{"another parameter", "stock", pathSearchFiles, "a=1&b=2&c=3", lang, product},
		{"value order of a repeated parameter", "stock", pathSearchFiles, "b=2&a=1&a=0", lang, product},
		{"separator inside a value", "stock", pathSearchFiles, "a=1%26b%3D2", lang, product},
		{"another language", "stock", pathSearchFiles, "a=1&b=2", []string{"de-DE"}, product},
		{"no language", "stock", pathSearchFiles, "a=1&b=2", nil, product},
		{"another X-Product", "stock", pathSearchFiles, "a=1&b=2", lang, []string{"App/2"}},
		{"no X-Product", "stock", pathSearchFiles, "a=1&b=2", lang, nil},
		{"language moved to X-Product", "stock", pathSearchFiles, "a=1&b=2", nil, []string{"fr-FR", "App/1"}},
	}
	seen := map[string]string{base: "base"}
	if mustKey(t, "stock", pathSearchFiles, "b=2&a=1&a=0", lang, product) == mustKey(t, "stock", pathSearchFiles, "a=0&a=1&b=2", lang, product) {
		t.Error("repeated values in another order share a key")
	}
	for _, o := range others {
		k := mustKey(t, o.route, o.path, o.rawQuery, o.lang, o.product)
		if prev, dup := seen[k]; dup {
			t.Errorf("%s: same key as %s", o.name, prev)
		}
		seen[k] = o.name
	}
}

func TestSearchKey_BypassesWhatTheKeyCannotCover(t *testing.T) {
	cases := []struct {
		name   string
		method string
		target string
		header []string
	}{
		{"POST (similar image upload)", "POST", "/Rest/Media/1/Search/Files?a=1", nil},
		{"HEAD", "HEAD", "/Rest/Media/1/Search/Files?a=1", nil},
		{"caller's no-store", "GET", "/Rest/Media/1/Search/Files?a=1", []string{"Cache-Control", "no-store"}},
		{"range", "GET", "/Rest/Media/1/Search/Files?a=1", []string{"Range", "bytes=0-10"}},
		{"conditional", "GET", "/Rest/Media/1/Search/Files?a=1", []string{"If-None-Match", `"x"`}},
		{"undecodable query", "GET", "/Rest/Media/1/Search/Files?a=%zz", nil},
		{"semicolon", "GET", "/Rest/Media/1/Search/Files?a=1;b=2", nil},
		{"escaped path", "GET", "/Rest/Media/1/Search%2FFiles?a=1", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.target, nil)
			for i := 0; i+1 < len(c.header); i += 2 {
				r.Header.Set(c.header[i], c.header[i+1])
			}
			if k, ok := searchKey("stock", r); ok {
				t.Errorf("cacheable, key %q", k)
			}
		})
	}
	if _, ok := searchKey("stock", httptest.NewRequest("GET", "/Rest/Media/1/Search/Files?a=1", nil)); !ok {
		t.Error("a plain search is not cacheable")
	}
}

func TestHasDirective(t *testing.T) {
	h := http.Header{"Cache-Control": {"max-age=0, No-Cache", "private"}}
	if !hasDirective(h["Cache-Control"], "no-cache") || !hasDirective(h["Cache-Control"], "max-age") {
		t.Error("missed a directive")
	}
	if hasDirective(h["Cache-Control"], "no-store") || hasDirective(nil, "no-cache") {
		t.Error("found a directive that is not there")
	}
}

// FuzzCacheKey checks the two promises of the key: two queries that differ
// only in the order of their parameters (repeated values keeping theirs)
// share one key, and two requests whose parameters, Accept-Language or
// X-Product differ never do. Seeds: testdata/fuzz/FuzzCacheKey.
func FuzzCacheKey(f *testing.F) {
	f.Add("search_parameters[words]=cat&result_columns[]=id&result_columns[]=title", "a=1", "en-US", "App/1", "en-US", "App/1", uint64(1))
	f.Add("b=2&a=1&a=0", "a=0&a=1&b=2", "", "", "", "", uint64(7))
	f.Fuzz(func(t *testing.T, q1, q2, lang1, product1, lang2, product2 string, seed uint64) {
		p1, ok1 := canonicalQuery(nil, q1)
		k1, kok1 := cacheKey("stock", pathSearchFiles, q1, []string{lang1}, []string{product1})
		if ok1 != kok1 {
			t.Fatalf("canonicalQuery and cacheKey disagree on %q", q1)
		}
		if !ok1 {
			return
		}
		if want := referenceParams(q1); !slices.Equal(decodedParams(p1), want) {
			t.Fatalf("parameters of %q = %v, want %v", q1, p1, want)
		}
		// Shuffle the parameters but keep each name's values in order.
		reordered := strings.Join(shuffleKeepingValueOrder(rawSegments(q1), rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))), "&")
		if k, ok := cacheKey("stock", pathSearchFiles, reordered, []string{lang1}, []string{product1}); !ok || k != k1 {
			t.Fatalf("%q and its reordering %q have different keys", q1, reordered)
		}
		p2, ok2 := canonicalQuery(nil, q2)
		if !ok2 {
			return
		}
		k2, _ := cacheKey("stock", pathSearchFiles, q2, []string{lang2}, []string{product2})
		same := slices.Equal(decodedParams(p1), decodedParams(p2)) && lang1 == lang2 && product1 == product2
		if (k1 == k2) != same {
			t.Fatalf("(%q %q %q) and (%q %q %q): same key = %v, same request = %v",
				q1, lang1, product1, q2, lang2, product2, k1 == k2, same)
		}
	})
}

func rawSegments(q string) []string {
	var out []string
	for _, s := range strings.Split(q, "&") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// shuffleKeepingValueOrder deals the segments grouped by decoded name in a
// random order of names, each name's segments in their original order.
func shuffleKeepingValueOrder(segs []string, rng *rand.Rand) []string {
	groups := map[string][]string{}
	var names []string
	for _, s := range segs {
		raw, _, _ := strings.Cut(s, "=")
		name, _ := url.QueryUnescape(raw)
		if _, ok := groups[name]; !ok {
			names = append(names, name)
		}
		groups[name] = append(groups[name], s)
	}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	// Interleave: take the next segment of a random name until all are dealt.
	var out []string
	for len(names) > 0 {
		i := rng.IntN(len(names))
		n := names[i]
		out = append(out, groups[n][0])
		if groups[n] = groups[n][1:]; len(groups[n]) == 0 {
			names = append(names[:i], names[i+1:]...)
		}
	}
	return out
}

// decodedParams decodes the parameters of canonicalQuery with
// url.QueryUnescape, to compare them with referenceParams.
func decodedParams(params []queryParam) []queryParam {
	out := make([]queryParam, 0, len(params))
	for _, p := range params {
		name, err1 := url.QueryUnescape(p.rawName)
		value, err2 := url.QueryUnescape(p.rawValue)
		if err1 != nil || err2 != nil {
			panic("canonicalQuery accepted what url.QueryUnescape refuses: " + p.rawName + "=" + p.rawValue)
		}
		out = append(out, queryParam{name, value})
	}
	return out
}

// referenceParams is the key's notion of "the same parameters", written
// independently with url.ParseQuery: per name, the values in order.
func referenceParams(q string) []queryParam {
	vals, err := url.ParseQuery(q)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []queryParam
	for _, n := range names {
		for _, v := range vals[n] {
			out = append(out, queryParam{n, v})
		}
	}
	return out
}
