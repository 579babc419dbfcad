package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/stock"
)

// Trail appends audit records to the fleet's audit stream, <prefix>:audit:
// the records of attempts refused before they reserved a slot (a settled
// slot appends its own record in the settle script).
type Trail struct{ c *Client }

var _ stock.Auditor = Trail{}

// Trail returns the audit stream of the fleet.
func (c *Client) Trail() Trail { return Trail{c: c} }

// Write implements stock.Auditor.
func (t Trail) Write(rec audit.Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := t.c.ctx(context.Background(), t.c.timeout)
	defer cancel()
	return t.c.appendAudit(ctx, line)
}

func (c *Client) appendAudit(ctx context.Context, line []byte) error {
	if !c.stateUp() {
		// Known down (the license was refused for it, most likely): the
		// record is in the local audit log, and the refusal is not made
		// to wait for a second timeout.
		c.failed(OpAudit)
		return errDown
	}
	minID := strconv.FormatInt(time.Now().Add(-auditRetention).UnixMilli(), 10)
	err := c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: c.auditKey(), MinID: minID, Approx: true, Values: []any{"record", line}}).Err()
	if err != nil {
		c.fail(OpAudit, err)
		c.log.Error("could not append a licensing attempt to the audit stream in Redis; it is only in the local audit log",
			"error", err)
		return err
	}
	c.ok()
	return nil
}

// PrintAudit writes the audit stream's records since the time since as
// JSON lines to w, oldest first: what `imsproxy audit` prints.
func (c *Client) PrintAudit(ctx context.Context, since time.Time, w io.Writer) (int, error) {
	const page = 1000
	start := strconv.FormatInt(since.UnixMilli(), 10)
	n := 0
	for {
		opCtx, cancel := c.ctx(ctx, c.timeout)
		msgs, err := c.rdb.XRangeN(opCtx, c.auditKey(), start, "+", page).Result()
		cancel()
		if err != nil {
			return n, fmt.Errorf("read the audit stream %s: %w%s", c.auditKey(), err, tlsHint(c.rdb, err))
		}
		for _, m := range msgs {
			rec, _ := m.Values["record"].(string)
			if rec == "" {
				continue
			}
			if _, err := io.WriteString(w, rec+"\n"); err != nil {
				return n, err
			}
			n++
		}
		if len(msgs) < page {
			return n, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// Trail returns the fleet's audit stream.
func (r *Route) Trail() Trail { return r.c.Trail() }
