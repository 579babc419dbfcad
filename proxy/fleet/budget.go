package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/imsproxy/imsproxy/proxy/audit"
	"github.com/imsproxy/imsproxy/proxy/stock"
)

// auditRetention is how long the audit stream keeps a record.
const auditRetention = 30 * 24 * time.Hour

// dayKeyRetention is how long a day's count and reservations are kept: the
// day itself, and the next, for a license that settles after midnight.
const dayKeyRetention = 2 * 24 * time.Hour

// luaPrelude is shared by the scripts: the UTC day and the time of Redis
// (TIME, so that the replicas' clocks cannot disagree on the day), and the
// sweep that counts reservations whose replica died.
const luaPrelude = `
local t = redis.call('TIME')
local secs = tonumber(t[1])
local now = secs * 1000 + math.floor(tonumber(t[2]) / 1000)
-- the civil date of a day number (days since 1970-01-01), H. Hinnant's algorithm
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end
local today = civil(math.floor(secs / 86400))
local yesterday = civil(math.floor(secs / 86400) - 1)
local function iso(ms)
  local s = math.floor(ms / 1000)
  local r = s % 86400
  return civil(math.floor(s / 86400)) .. string.format('T%02d:%02d:%02d.%03dZ', math.floor(r / 3600), math.floor(r % 3600 / 60), r % 60, ms % 1000)
end
local function audit(stream, record, retention)
  redis.call('XADD', stream, 'MINID', '~', tostring(now - retention), '*', 'record', record)
end
-- Reservations whose lease ended belong to replicas that died mid-license:
-- the license may have been made, so each counts, audited as unknown.
local function sweep(base, day, stream, route, retention, keep)
  local held = base .. ':' .. day .. ':held'
  local expired = redis.call('ZRANGEBYSCORE', held, '-inf', now)
  if #expired == 0 then return end
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
  local count = base .. ':' .. day .. ':count'
  redis.call('INCRBY', count, #expired)
  redis.call('EXPIRE', count, keep)
  for _, member in ipairs(expired) do
    -- "<random> j <record>" carries the attempt's record (caller,
    -- content, license); "<random> <request id>" only its id
    local record = string.match(member, '^%S+ j (.*)$')
    local ok, rec = pcall(cjson.decode, record or '')
    if not record or not ok or type(rec) ~= 'table' then
      rec = {request_id = string.match(member, '^%S+ (.*)$') or ''}
    end
    rec.time, rec.route, rec.outcome, rec.reason = iso(now), route, 'unknown', 'lease_expired'
    rec.status, rec.upstream_status = 0, 0
    audit(stream, cjson.encode(rec), retention)
  end
end
`

// reserveScript takes a slot when the day's count and the reservations
// held leave room. KEYS: base, stream. ARGV: member, lease ms, limit,
// route, audit retention ms, key retention s. It returns {1, day} or {0,
// day, seconds to midnight UTC}.
var reserveScript = redis.NewScript(luaPrelude + `
local base, stream = KEYS[1], KEYS[2]
local member, lease, limit, route = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local retention, keep = tonumber(ARGV[5]), tonumber(ARGV[6])
sweep(base, today, stream, route, retention, keep)
-- a replica that died around midnight: its license is audited too
sweep(base, yesterday, stream, route, retention, keep)
local held = base .. ':' .. today .. ':held'
local count = tonumber(redis.call('GET', base .. ':' .. today .. ':count') or '0')
if count + redis.call('ZCARD', held) >= limit then
  return {0, today, 86400 - secs % 86400}
end
redis.call('ZADD', held, now + lease, member)
redis.call('EXPIRE', held, keep)
return {1, today}
`)

// settleScript ends a reservation: counted (1) adds a license to the day
// it was reserved on, unless its lease ended and a sweep counted it
// already; the audit record is appended in the same step. KEYS: base,
// stream. ARGV: member, day, counted, record, route, audit retention ms,
// key retention s.
var settleScript = redis.NewScript(luaPrelude + `
local base, stream = KEYS[1], KEYS[2]
local member, day, counted, record, route = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local retention, keep = tonumber(ARGV[6]), tonumber(ARGV[7])
sweep(base, day, stream, route, retention, keep)
local removed = redis.call('ZREM', base .. ':' .. day .. ':held', member)
if removed == 1 and counted == '1' then
  local count = base .. ':' .. day .. ':count'
  redis.call('INCR', count)
  redis.call('EXPIRE', count, keep)
end
audit(stream, record, retention)
return removed
`)

// Budget is a route's LICENSE_DAILY_LIMIT kept in Redis, exact across the
// replicas: a license reserves a slot (count + held reservations < limit)
// in one script before it is forwarded, and settles it after. It also
// appends every settled attempt to the audit stream. A zero limit keeps no
// count: slots then only append to the stream.
type Budget struct {
	r     *Route
	limit int
	// lease is how long a reservation holds its slot: longer than a
	// license can take (the editorial lookup and the license, each up to
	// TIMEOUT), so that only a dead replica's reservation expires, and
	// then counts.
	lease time.Duration
}

var _ stock.Budget = (*Budget)(nil)

// Budget returns the license budget of the route: at most limit licenses a
// UTC day (0: no limit, only the audit trail), each reservation leased
// for lease.
func (r *Route) Budget(limit int, lease time.Duration) *Budget {
	return &Budget{r: r, limit: limit, lease: lease}
}

// Lease is the reservation lease for a route whose upstream TIMEOUT is
// timeout, and whose requests wait up to tokenWait for a token
// (IMSPROXY_TOKEN_WAIT): the editorial lookup may wait for a token and
// then take timeout, the license itself timeout and up to 30 s more for
// its answer to arrive once its headers have. A reservation still held
// after that belongs to a replica that died.
func Lease(timeout, tokenWait time.Duration) time.Duration {
	return 2*timeout + tokenWait + 30*time.Second
}

// Reserve implements stock.Budget. Redis unreachable or slower than
// IMSPROXY_REDIS_TIMEOUT is an error: the license is refused, never
// counted locally instead.
func (b *Budget) Reserve(ctx context.Context, rec audit.Record) (stock.Slot, error) {
	member := newMember(rec)
	if b.limit <= 0 {
		return &slot{b: b, member: member}, nil
	}
	c := b.r.c
	ctx, cancel := c.ctx(ctx, c.timeout)
	defer cancel()
	res, err := reserveScript.Run(ctx, c.rdb, []string{b.r.key("license"), c.auditKey()},
		member, b.lease.Milliseconds(), b.limit, b.r.name, auditRetention.Milliseconds(), int(dayKeyRetention/time.Second)).Slice()
	if err == nil && len(res) < 2 {
		err = fmt.Errorf("unexpected answer %v", res)
	}
	if err != nil {
		c.fail(OpReserve, err)
		return nil, fmt.Errorf("reserve a license in Redis: %w", err)
	}
	c.ok()
	day, _ := res[1].(string)
	if granted, _ := res[0].(int64); granted != 1 {
		secs, _ := res[2].(int64)
		return nil, &stock.SpentError{Limit: b.limit, RetryAfter: time.Duration(secs) * time.Second}
	}
	return &slot{b: b, member: member, day: day}, nil
}

// newMember names a reservation: random, then "j" and the attempt's
// record, from which a lease that expires is audited. A request id has no
// space, so a member of the earlier form, "<random> <request id>", cannot
// be read as a record.
func newMember(rec audit.Record) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	line, _ := json.Marshal(rec) // a Record always encodes
	return hex.EncodeToString(b[:]) + " j " + string(line)
}

// slot is one reservation.
type slot struct {
	b      *Budget
	member string
	day    string // "" without a count (no limit)
}

// Settle implements stock.Slot: it counts the license when counted and
// appends rec to the audit stream, in one script. When Redis cannot be
// reached the reservation stays held until its lease ends, and then
// counts: the budget never under-counts.
func (s *slot) Settle(ctx context.Context, counted bool, rec audit.Record) bool {
	c := s.b.r.c
	line, err := json.Marshal(rec)
	if err != nil {
		return false
	}
	ctx, cancel := c.ctx(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	if s.day == "" {
		return c.appendAudit(ctx, line) == nil
	}
	flag := "0"
	if counted {
		flag = "1"
	}
	err = settleScript.Run(ctx, c.rdb, []string{s.b.r.key("license"), c.auditKey()},
		s.member, s.day, flag, line, s.b.r.name, auditRetention.Milliseconds(), int(dayKeyRetention/time.Second)).Err()
	if err != nil {
		c.fail(OpSettle, err)
		c.log.Error("could not settle a license in Redis: its reservation counts when its lease ends, and its audit record is only in the local audit log",
			"route", rec.Route, "request_id", rec.RequestID, "outcome", rec.Outcome, "error", err)
		return false
	}
	c.ok()
	return true
}

// Remaining returns the license budget left today and the limit, as
// Redis holds them (ok false when Redis cannot say).
func (b *Budget) Remaining(ctx context.Context) (remaining int, ok bool) {
	c := b.r.c
	if b.limit <= 0 || !c.stateUp() {
		return 0, false
	}
	ctx, cancel := c.ctx(ctx, c.timeout)
	defer cancel()
	res, err := remainingScript.Run(ctx, c.rdb, []string{b.r.key("license")}).Slice()
	if err != nil || len(res) < 2 {
		if err == nil {
			err = errors.New("unexpected answer")
		}
		c.fail(OpReserve, err)
		return 0, false
	}
	count, _ := res[0].(int64)
	held, _ := res[1].(int64)
	return max(b.limit-int(count)-int(held), 0), true
}

// remainingScript reads today's count and reservations.
var remainingScript = redis.NewScript(luaPrelude + `
local count = tonumber(redis.call('GET', KEYS[1] .. ':' .. today .. ':count') or '0')
return {count, redis.call('ZCARD', KEYS[1] .. ':' .. today .. ':held')}
`)
