package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// maxAnswerBytes bounds how much of an IMS answer is read: a token
	// answer is a few KB, anything much larger is not one.
	maxAnswerBytes = 1 << 20
	// maxLifetime is the longest lifetime believed. Tokens live 24 h; more
	// than a year means garbage or a unit mix-up, better reported than
	// cached for a century (and it keeps the Duration from overflowing).
	maxLifetime = 366 * 24 * time.Hour
	// maxDescription bounds the IMS text carried into errors and logs.
	maxDescription = 300
	redacted       = "[REDACTED]"
)

// exchange is one POST of a token request to an IMS endpoint.
type exchange struct {
	client   *http.Client // nil: http.DefaultClient
	endpoint string       // full URL
	form     url.Values
	// unit is what the answer's expires_in counts: milliseconds for the JWT
	// exchange, seconds for /ims/token/v3.
	unit time.Duration
	// jwt marks the JWT exchange (rather than OAuth client credentials):
	// some IMS errors mean different things for the two.
	jwt bool
	// secrets are the credentials in form; they are cut out of anything IMS
	// echoes back into an error.
	secrets []string
	now     func() time.Time
}

// answer holds the fields of both a token answer and an error answer: IMS has
// sent an error with status 200 (adobe/jwt-auth issue #6), so a 200 is checked
// for an error too. The error fields cover the OAuth shape (error,
// error_description) and the Adobe gateway shape (error_code, message).
type answer struct {
	AccessToken      string      `json:"access_token"`
	ExpiresIn        lenientInt  `json:"expires_in"`
	Error            looseString `json:"error"`
	ErrorDescription looseString `json:"error_description"`
	ErrorCode        looseString `json:"error_code"`
	Message          looseString `json:"message"`
}

// do sends the request and turns the answer into a Token or an *IMSError.
func (x exchange) do(ctx context.Context) (Token, error) {
	tok, err := x.send(ctx)
	var ie *IMSError
	if errors.As(err, &ie) {
		ie.JWTExchange = x.jwt
	}
	return tok, err
}

func (x exchange) send(ctx context.Context) (Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.endpoint, strings.NewReader(x.form.Encode()))
	if err != nil {
		// Only a malformed IMS URL gets here; the URL holds no credential.
		return Token{}, &IMSError{Code: CodeUnreachable, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cache-Control", "no-cache")

	client := http.DefaultClient
	if x.client != nil {
		client = x.client
	}
	// A copy that does not follow redirects: a 307 or 308 would replay the
	// body, client secret included, to whatever host the Location names.
	noRedirect := *client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	// Counting the lifetime from before the request errs on the safe side:
	// IMS starts the clock no earlier than it receives the request.
	obtained := x.now()
	resp, err := noRedirect.Do(req)
	if err != nil {
		// *url.Error names the URL but not the body, where the credentials are.
		return Token{}, &IMSError{Code: CodeUnreachable, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return Token{}, &IMSError{Code: CodeUnreachable, Err: err}
	}

	var a answer
	jsonErr := json.Unmarshal(body, &a)
	if a.AccessToken != "" {
		// A token sent beside an error is a secret too. Clip: never write
		// into the caller's array.
		x.secrets = append(slices.Clip(x.secrets), a.AccessToken)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &IMSError{StatusCode: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode)}
		if jsonErr != nil {
			e.Description = x.scrub(describeBody(resp, body))
		} else {
			e.Code, e.Description = x.errorFields(a, e.Code)
		}
		return Token{}, e
	}

	invalid := func(desc string) error {
		return &IMSError{StatusCode: resp.StatusCode, Code: CodeInvalidResponse, Description: desc}
	}
	switch {
	case jsonErr != nil:
		return Token{}, invalid(x.scrub(describeBody(resp, body)))
	case a.Error != "" || a.ErrorCode != "":
		code, desc := x.errorFields(a, CodeInvalidResponse)
		return Token{}, &IMSError{StatusCode: resp.StatusCode, Code: code, Description: desc}
	case a.AccessToken == "":
		return Token{}, invalid("the answer has no access_token")
	}

	t := Token{Value: a.AccessToken, Obtained: obtained}
	if life, ok := lifetime(a.ExpiresIn, x.unit); ok {
		t.Expiry = obtained.Add(life)
		return t, nil
	}
	// No usable expires_in: IMS access tokens are JWTs that carry their own
	// created_at and expires_in, so take the expiry from there.
	if _, expiry := tokenTimes(a.AccessToken); expiry.After(obtained) {
		t.Expiry = expiry
		return t, nil
	}
	return Token{}, invalid("the answer has no valid expires_in")
}

// errorFields picks the code and description of an error answer in either
// shape, scrubbed; fallback is the code when the answer names none.
func (x exchange) errorFields(a answer, fallback string) (code, desc string) {
	code = string(a.Error)
	if code == "" {
		code = string(a.ErrorCode)
	}
	if code == "" {
		code = fallback
	}
	desc = string(a.ErrorDescription)
	if desc == "" {
		desc = string(a.Message)
	}
	// The code goes into messages as is (ErrorCode bounds it for labels).
	code = x.scrub(code)
	if len(code) > 64 {
		code = code[:64]
	}
	return code, x.scrub(desc)
}

// describeBody says what a non-JSON answer was without quoting it: the body
// of a misbehaving server may echo the request.
func describeBody(resp *http.Response, body []byte) string {
	if len(body) == 0 {
		return "empty answer"
	}
	return "the answer is not JSON (Content-Type " + strconv.Quote(resp.Header.Get("Content-Type")) +
		", " + strconv.Itoa(len(body)) + " bytes)"
}

// scrub cuts every credential of the request out of s (raw and
// form-encoded, as a server may echo either), removes control characters and
// bounds its length.
func (x exchange) scrub(s string) string {
	for _, v := range x.secrets {
		if v == "" {
			continue
		}
		s = strings.ReplaceAll(s, v, redacted)
		if q := url.QueryEscape(v); q != v {
			s = strings.ReplaceAll(s, q, redacted)
		}
	}
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > maxDescription {
		s = strings.ToValidUTF8(s[:maxDescription], "") + "…"
	}
	return strings.TrimSpace(s)
}

// lifetime converts an expires_in counted in unit; false when it is missing,
// not positive or beyond maxLifetime.
func lifetime(n lenientInt, unit time.Duration) (time.Duration, bool) {
	if n <= 0 || int64(n) > int64(maxLifetime/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// lenientInt decodes an integer sent as a JSON number (integral or not) or as
// a string of one, as IMS does in its tokens' created_at and expires_in.
// Anything else decodes as 0 rather than failing the whole answer.
type lenientInt int64

// UnmarshalJSON implements json.Unmarshaler.
func (n *lenientInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if strings.HasPrefix(s, `"`) {
		if json.Unmarshal(b, &s) != nil {
			return nil
		}
		s = strings.TrimSpace(s)
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		*n = lenientInt(v)
		return nil
	}
	// NaN fails both comparisons; ±Inf and overflows fail one.
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > math.MinInt64 && f < math.MaxInt64 {
		*n = lenientInt(f)
	}
	return nil
}

// looseString decodes a JSON string or number as text, and anything else as
// "" (an "error" that is an object must not hide the rest of the answer).
type looseString string

// UnmarshalJSON implements json.Unmarshaler.
func (s *looseString) UnmarshalJSON(b []byte) error {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	switch v := v.(type) {
	case string:
		*s = looseString(v)
	case float64:
		*s = looseString(strings.TrimSpace(string(b)))
	}
	return nil
}

// baseURL is the IMS base URL without the trailing slash a user may add, so
// that paths and the aud and metascope claims are not built with "//".
func baseURL(ims string) string { return strings.TrimRight(ims, "/") }

// clock returns now, or time.Now when now is nil.
func clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}
