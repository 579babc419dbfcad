package cache

import "sync/atomic"

// Limiter bounds the memory that answers being cached hold across all
// requests (an *inflight.Limiter). Reserve is asked before a body is
// captured (refused: the answer streams without being stored); Charge
// counts a body that is held already.
type Limiter interface {
	Reserve(n int) bool
	Charge(n int)
	Release(n int)
}

// SetLimiter bounds the memory held for answers on their way into and out
// of the cache with l; call it before the cache serves. Without it, only
// CACHE_MAX_BYTES bounds what the cache itself holds.
func (c *Cache) SetLimiter(l Limiter) { c.limiter = l }

// A body the cache holds (an entry's, or a fetched answer's that is not
// stored) is counted toward CACHE_MAX_BYTES while the cache holds it, and
// toward the Limiter while anyone else does: a caller being written to,
// however slowly it reads. Without the second count, callers that never
// read could pin any number of evicted entries in memory.
//
// pin keeps both counts in one word, so that a hit costs two atomic
// additions and no lock beyond the cache's own: the number of writers
// holding the body, and whether the cache holds it. The body is charged to
// the Limiter exactly while writers hold it and the cache does not; every
// change computes that from the word before and after. The cache evicts a
// held body only when the Limiter has room for it (add), so that only a
// purge can take the Limiter past its bound, by at most what the cache
// held.
type pin struct {
	state atomic.Int64
	size  int
	lim   Limiter // nil: nothing counted
}

// inCache is the bit of pin.state set while the cache holds the body;
// the bits below it count the writers.
const inCache = 1 << 40

func charged(state int64) bool { return state&inCache == 0 && state&(inCache-1) > 0 }

// add changes the state by delta (±1 writer, ±inCache) and charges or
// releases the body as the change requires.
func (p *pin) add(delta int64) {
	now := p.state.Add(delta)
	if p.lim == nil {
		return
	}
	switch was, is := charged(now-delta), charged(now); {
	case is && !was:
		p.lim.Charge(p.size)
	case was && !is:
		p.lim.Release(p.size)
	}
}

// acquire and release bracket a write of the body.
func (p *pin) acquire() { p.add(1) }
func (p *pin) release() { p.add(-1) }
