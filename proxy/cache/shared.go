package cache

import (
	"context"
	"encoding/binary"
	"time"
)

// Shared is a second cache level behind the local one, shared by the
// replicas of a fleet (fleet mode): a local miss asks it before the
// upstream, and an upstream answer is stored in both. It must never fail a
// search: when it cannot answer, it is a miss.
type Shared interface {
	// Available reports whether the level may be asked now: false while
	// it is known to be down, so that a search does not even encode an
	// answer for it.
	Available() bool
	// Get returns what Set stored under key, or nil.
	Get(ctx context.Context, key string) []byte
	// Generation names the level's current generation ("" when not
	// known), read before an answer is fetched: Set stores the answer
	// under it, so that an answer fetched before a purge is never found
	// after it.
	Generation() string
	// Set stores value under key in generation gen for ttl, without
	// making the caller wait. done, when not nil, runs once value is no
	// longer held (stored, or dropped).
	Set(gen, key string, value []byte, ttl time.Duration, done func())
	// Purge empties the level for every replica; each empties its own
	// local level when it hears of it (PurgeLocal).
	Purge(reason string)
}

// Share puts s behind the cache as its second level. Call it before the
// cache serves.
func (c *Cache) Share(s Shared) { c.shared = s }

// PurgeLocal empties this replica's level alone: another replica purged
// the shared level.
func (c *Cache) PurgeLocal(reason string) int { return c.purgeLocal(context.Background(), reason) }

// loadShared asks the shared level for key: a fresh entry, or one within
// its stale-if-error window (stale true), or nil. The entry is acquired
// for the fetch that asked, like one it made (newEntry): its bytes are
// reserved from the Limiter until the local level holds it, and when the
// Limiter has no room it is a miss.
func (c *Cache) loadShared(ctx context.Context, key string) (e *entry, stale bool) {
	if c.shared == nil || !c.shared.Available() {
		return nil, false
	}
	b := c.shared.Get(ctx, key)
	if b == nil {
		return nil, false
	}
	e = decodeEntry(key, b)
	if e == nil {
		return nil, false
	}
	switch age := c.now().Sub(e.stored); {
	case age < c.ttl:
	case age < c.ttl+c.stale:
		stale = true
	default:
		return nil, false
	}
	e.pin.size, e.pin.lim = cap(b), c.limiter
	if c.limiter != nil && !c.limiter.Reserve(e.pin.size) {
		return nil, false
	}
	e.pin.state.Store(1) // held by the fetch, reserved: charged
	return e, stale
}

// sharedGeneration is the shared level's generation before a fetch.
func (c *Cache) sharedGeneration() string {
	if c.shared == nil {
		return ""
	}
	return c.shared.Generation()
}

// storeShared hands a fresh entry, fetched in generation gen, to the
// shared level, to expire when its stale-if-error window ends. The copy
// it encodes is held until Redis has it: reserved from the Limiter
// meanwhile, and not made when there is no room (the next miss stores the
// answer).
func (c *Cache) storeShared(gen string, e *entry) {
	if c.shared == nil || gen == "" || !c.shared.Available() {
		return
	}
	ttl := c.ttl + c.stale - c.now().Sub(e.stored)
	if ttl <= 0 {
		return
	}
	n := encodedSize(e)
	var done func()
	if l := c.limiter; l != nil {
		if !l.Reserve(n) {
			return
		}
		done = func() { l.Release(n) }
	}
	c.shared.Set(gen, e.key, encodeEntry(e), ttl, done)
}

// entryFormat starts an encoded entry; another value is a miss.
const entryFormat = 1

// encodeEntry writes e for the shared level: the format, the time stored,
// the key (compared when read: the shared level may index by a hash), the
// decoded length of a gzip body, the header and the body.
func encodeEntry(e *entry) []byte {
	b := make([]byte, 0, encodedSize(e))
	b = append(b, entryFormat)
	b = binary.AppendVarint(b, e.stored.UnixNano())
	b = appendString(b, e.key)
	plain := ""
	if e.plainLength != nil {
		plain = e.plainLength[0]
	}
	b = appendString(b, plain)
	b = binary.AppendUvarint(b, uint64(len(e.header)))
	for _, f := range e.header {
		b = appendString(b, f.name)
		b = binary.AppendUvarint(b, uint64(len(f.values)))
		for _, v := range f.values {
			b = appendString(b, v)
		}
	}
	return append(b, e.body...)
}

// encodedSize is at least the length of e encoded.
func encodedSize(e *entry) int {
	n := 32 + len(e.key) + len(e.body)
	for _, f := range e.header {
		n += 8 + len(f.name)
		for _, v := range f.values {
			n += 4 + len(v)
		}
	}
	return n
}

// decodeEntry reads what encodeEntry wrote for key; nil when b is not that.
func decodeEntry(key string, b []byte) *entry {
	d := entryReader{b: b}
	if d.byte() != entryFormat {
		return nil
	}
	stored := d.varint()
	if d.string() != key {
		return nil
	}
	e := &entry{key: key, stored: time.Unix(0, stored)}
	if plain := d.string(); plain != "" {
		e.plainLength = []string{plain}
	}
	nh := d.uvarint()
	if nh > uint64(len(b)) {
		return nil
	}
	e.header = make([]headerField, 0, nh)
	for range nh {
		name := d.string()
		nv := d.uvarint()
		if nv > uint64(len(b)) {
			return nil
		}
		values := make([]string, nv)
		for i := range values {
			values[i] = d.string()
		}
		e.header = append(e.header, headerField{name, values})
	}
	if d.bad || len(d.b) > maxCachedBody {
		return nil
	}
	e.body = d.b
	e.size = int64(cap(b)+len(key)) + headerSize(e.header) + entryOverhead
	return e
}

// entryReader reads an encoded entry; bad is set on the first short read.
type entryReader struct {
	b   []byte
	bad bool
}

func (d *entryReader) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *entryReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *entryReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *entryReader) string() string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
