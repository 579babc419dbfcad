package route

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
)

// LogHandler wraps h so that a line logged with a request's context by
// code that knows nothing of routes (the token manager dropping a token an
// upstream refused) carries the request's id, as the lines the stages log
// through Log do.
func LogHandler(h slog.Handler) slog.Handler { return contextHandler{h} }

type contextHandler struct{ slog.Handler }

func (c contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if st := from(ctx); st != nil && !hasAttr(r, "request_id") {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", st.id))
	}
	return c.Handler.Handle(ctx, r)
}

func (c contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{c.Handler.WithAttrs(attrs)}
}

func (c contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{c.Handler.WithGroup(name)}
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// WatchBody has the request's error line report an upstream answer whose
// body breaks off (the reverse proxy then cuts the caller's answer, and
// its own log line would know nothing of the request). It wraps the body
// with a reader kept in the request's state, so the hot path allocates
// nothing for it. A protocol switch keeps its body: the reverse proxy
// needs it writable.
func WatchBody(resp *http.Response) {
	st := from(resp.Request.Context())
	if st == nil || resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	b := &st.body
	if b.ReadCloser != nil {
		b = &watchedBody{} // a second answer in one request: rare
	}
	b.ReadCloser, b.st = resp.Body, st
	resp.Body = b
}

// watchedBody notes a read error of an upstream answer other than its
// end.
type watchedBody struct {
	io.ReadCloser
	st *state
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		note(b.st, slog.LevelWarn, "the upstream's answer broke off; the caller's was cut", slog.Any("error", RedactURL(err)))
	}
	return n, err
}
