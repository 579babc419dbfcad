package aemlinks

import "testing"

// rewriteJSON is how the writer rewrites a body: nil when nothing changes.
func rewriteJSON(o *origin, body []byte, base string) []byte {
	j := newJSONRewrite(o, base)
	size, urls := j.size(body)
	if urls == 0 {
		return nil
	}
	out := j.appendTo(make([]byte, 0, size), body)
	if len(out) != size {
		panic("size and appendTo disagree")
	}
	return out
}

func TestRewriteJSON_URLRules(t *testing.T) {
	for _, c := range urlCases {
		want := c.want
		if want == "" {
			want = c.in
		}
		spellings := map[string]func(string) string{"plain": func(s string) string { return s }, "escaped slashes": escapeSlashes}
		for spelling, spell := range spellings {
			t.Run(c.name+"/"+spelling, func(t *testing.T) {
				in := `{"href":"` + spell(c.in) + `"}`
				wantBody := `{"href":"` + spell(want) + `"}`
				got := rewriteJSON(mustOrigin(t, c.upstream), []byte(in), testBase)
				if got == nil {
					got = []byte(in)
				}
				if string(got) != wantBody {
					t.Fatalf("rewrite of %s\n = %s\nwant %s", in, got, wantBody)
				}
			})
		}
	}
}

func TestRewriteJSON_KeepsEveryOtherByte(t *testing.T) {
	const up = "https://author.example.com"
	cases := []struct{ name, in, want string }{
		{"a Siren listing, white space, key order and numbers as written",
			"{\n  \"properties\" : {\"srn:paging\":{\"total\":2, \"offset\":0}, \"ratio\": 1.50E+3},\n  \"links\":[ {\"rel\":[\"self\"],\"href\":\"" + up + "/api/assets/wknd.json\"} ]\n}\n",
			"{\n  \"properties\" : {\"srn:paging\":{\"total\":2, \"offset\":0}, \"ratio\": 1.50E+3},\n  \"links\":[ {\"rel\":[\"self\"],\"href\":\"" + testBase + "/api/assets/wknd.json\"} ]\n}\n"},
		{"object keys are not values", `{"` + up + `/x" : "` + up + `/y"}`, `{"` + up + `/x" : "` + testBase + `/y"}`},
		{"a top-level string", `"` + up + `/x"`, `"` + testBase + `/x"`},
		{"a value after a key with escapes", `{"a\"b":"` + up + `"}`, `{"a\"b":"` + testBase + `"}`},
		{"a string ending in an escaped backslash", `["x\\", "` + up + `/y"]`, `["x\\", "` + testBase + `/y"]`},
		{"the scheme spelt with \\u escapes", `["\u0068ttps:\/\/author.example.com\/x"]`, `["http:\/\/127.0.0.1:8081\/x"]`},
		{"an escaped host letter in upper case", `["https://\u0041uthor.example.com/x"]`, `["` + testBase + `/x"]`},
		{"the rest of the URL kept as spelt", `["` + up + `/caf\u00e9 \ud83d\ude00?q=\"a\""]`, `["` + testBase + `/caf\u00e9 \ud83d\ude00?q=\"a\""]`},
		{"mixed spellings of one URL", `["https:/\/author.example.com/x"]`, `["http:\/\/127.0.0.1:8081/x"]`},
		{"other origins untouched", `{"upload":"https://blob.example.net/x","self":"` + up + `/y"}`, `{"upload":"https://blob.example.net/x","self":"` + testBase + `/y"}`},
		{"nothing to rewrite", `{"links":[{"href":"/relative"}]}`, ``},
		{"not JSON", `{"href":"` + up + `/x"`, ``},
		{"a trailing value", `{"href":"` + up + `/x"} {}`, ``},
		{"a lone surrogate before the host", `["https://\ud800author.example.com/x"]`, ``},
		{"a non-ASCII lookalike of the host", `["https://author.e\u0445ample.com/x"]`, ``},
	}
	o := mustOrigin(t, up)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := rewriteJSON(o, []byte(c.in), testBase)
			if c.want == "" {
				if got != nil {
					t.Fatalf("rewrote %s\nto %s\nwant it unchanged", c.in, got)
				}
				return
			}
			if string(got) != c.want {
				t.Fatalf("rewrite of %s\n = %s\nwant %s", c.in, got, c.want)
			}
		})
	}
}
