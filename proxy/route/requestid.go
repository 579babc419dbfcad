package route

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
)

// RequestIDHeader carries the request id, to the upstream and back.
const RequestIDHeader = "X-Request-Id"

// requestIDs makes ids unique across processes (a random prefix chosen at
// start) and cheap within one (a counter): Adobe support traces calls by
// them, so two proxies must not hand out the same id.
var requestIDs = newRequestIDGenerator()

type requestIDGenerator struct {
	prefix string
	next   atomic.Uint64
}

func newRequestIDGenerator() *requestIDGenerator {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &requestIDGenerator{prefix: "imsproxy-" + hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDGenerator) New() string {
	var buf [64]byte // the prefix is 26 bytes, the counter at most 13: one allocation, the string
	return string(strconv.AppendUint(append(buf[:0], g.prefix...), g.next.Add(1), 36))
}

// setRequestID keeps the caller's X-Request-Id when it is sane, else makes
// one, and puts it on the request (sent upstream) and the answer.
func setRequestID(w http.ResponseWriter, r *http.Request) string {
	ids := r.Header[RequestIDHeader]
	var id string
	if len(ids) == 1 && validRequestID(ids[0]) {
		id = ids[0]
	} else {
		id = requestIDs.New()
		ids = []string{id}
		r.Header[RequestIDHeader] = ids
	}
	w.Header()[RequestIDHeader] = ids
	return id
}

// validRequestID accepts up to 128 visible ASCII characters: enough for
// any tracing scheme, too little to flood logs.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
