package conntrack

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"time"
	"unsafe"
)

// Stats are a table's counters, written by the owning goroutine with atomic
// operations and read by the metrics collector at scrape time.
type Stats struct {
	Flows     [NumStates]atomic.Int64 // flows currently tracked, by state
	Created   atomic.Uint64
	Expired   atomic.Uint64
	Evicted   [NumEvictCauses]atomic.Uint64
	Untracked atomic.Uint64 // packets of new flows that could not be tracked (table full)
	Gaps      atomic.Uint64 // resynchronisations after unseen packets
	// OneWay is the number of tracked flows whose other direction has not
	// been seen (picked-up flows; asymmetric routing shows up here).
	OneWay atomic.Int64
	// Revived counts flows brought back from closed because the endpoints
	// went on as if the accepted reset had not been (an ignored or
	// injected reset), by the state the reset was accepted in.
	Revived [NumStates]atomic.Uint64
}

// Table is a bounded flow table owned by one goroutine: one per NFQUEUE
// worker, so the packet path takes no lock (SPEC section 2, step 6).
//
// Layout: flows live in fixed-size chunks of a slab that is allocated on
// demand and never moves (a *Flow stays valid until the flow is deleted);
// an open-addressing index with linear probing maps the key's hash to the
// slot. Each index entry packs 32 bits of hash (to skip most key compares)
// with slot+1. Deletion shifts entries back instead of leaving tombstones.
//
// Every flow sits on the LRU list of its state, most recently moved first.
// Within one state the timeout is the same for all, so each list's tail is
// the next flow of that state to expire: expiry is O(1), checked exactly on
// lookup and by Reap, which the engine calls with a small budget per packet
// (amortised reaping, no timer goroutine). A packet moves its flow to the
// head only if the flow was last moved more than touchEvery ago: moving
// touches three flows (neighbours and head), which are cache misses in a
// large table. Reap puts a tail that was seen since it was moved back at
// the head, so the lists stay ordered to within touchEvery.
type Table struct {
	cfg   Config
	tmo   [NumStates]int64 // per-state timeouts, ns
	seed  uint64
	index []uint64 // hash<<32 | slot+1; 0 = empty
	mask  uint64

	chunks [][]Flow
	free   uint32 // head of the free list (slot+1), linked through Flow.next
	used   uint32 // slots handed out of the slab so far
	count  int

	heads, tails [NumStates]uint32 // slot+1 of each state's LRU list ends

	stats Stats
}

const chunkBits = 14 // 16384 flows per chunk (2.9 MB: at least one huge page)

// NewTable returns an empty table for cfg.MaxFlows flows.
func NewTable(cfg Config) *Table {
	t := &Table{seed: rand.Uint64() | 1}
	t.setConfig(cfg)
	return t
}

// Reconfigure applies new limits and timeouts, keeping every flow. A smaller
// MaxFlows evicts flows (embryonic first, then least recently used) until
// the table fits.
func (t *Table) Reconfigure(cfg Config, now int64) {
	t.setConfig(cfg)
	for t.count > t.cfg.MaxFlows {
		if !t.evictOne(now, true) {
			break
		}
	}
}

func (t *Table) setConfig(cfg Config) {
	if cfg.MaxFlows < 1 {
		cfg.MaxFlows = 1
	}
	t.cfg = cfg
	tm := cfg.Timeouts
	t.tmo = [NumStates]int64{
		StateNone:        int64(time.Second),
		StateSynSent:     int64(tm.SynSent),
		StateSynRecv:     int64(tm.SynRecv),
		StateEstablished: int64(tm.Established),
		StateFinWait:     int64(tm.FinWait),
		StateCloseWait:   int64(tm.CloseWait),
		StateLastAck:     int64(tm.LastAck),
		StateTimeWait:    int64(tm.TimeWait),
		StateClosed:      int64(tm.Closed),
	}
	// Keep the index at most half full; it only ever grows.
	want := 1 << bits.Len(uint(2*cfg.MaxFlows-1))
	if want < 16 {
		want = 16
	}
	if want > len(t.index) {
		old := t.index
		t.index = make([]uint64, want)
		adviseHuge(unsafe.Pointer(&t.index[0]), uintptr(want)*8)
		t.mask = uint64(want - 1)
		for _, e := range old {
			if e != 0 {
				t.place(e)
			}
		}
	}
}

// Config returns the table's configuration.
func (t *Table) Config() Config { return t.cfg }

// Stats returns the table's counters (safe from any goroutine).
func (t *Table) Stats() *Stats { return &t.stats }

// Len returns the number of tracked flows.
func (t *Table) Len() int { return t.count }

// Flow returns the flow in slot i (as returned by Lookup). The
// pointer is valid until that flow is deleted.
func (t *Table) Flow(i uint32) *Flow {
	return &t.chunks[i>>chunkBits][i&(1<<chunkBits-1)]
}

func (t *Table) place(e uint64) {
	for i := (e >> 32) & t.mask; ; i = (i + 1) & t.mask {
		if t.index[i] == 0 {
			t.index[i] = e
			return
		}
	}
}

// Lookup finds the flow of k. An expired flow is removed (counted as
// expired) and reported as absent.
func (t *Table) Lookup(k *Key, now int64) (slot uint32, ok bool) {
	h := k.hash(t.seed)
	tag := h >> 32
	for i := tag & t.mask; ; i = (i + 1) & t.mask {
		e := t.index[i]
		if e == 0 {
			return 0, false
		}
		if e>>32 != tag {
			continue
		}
		s := uint32(e) - 1
		f := t.Flow(s)
		if !f.key.equal(k) {
			continue
		}
		if now-f.lastSeen > t.tmo[f.state] {
			t.stats.Expired.Add(1)
			t.delete(s)
			return 0, false
		}
		return s, true
	}
}

// insert adds a flow for k in state st, making room if the table is full:
// expired flows first, then the least recently seen embryonic flow, then the
// least recently seen flow of any state. It reports false, and the packet
// goes untracked, only when no flow can be evicted.
func (t *Table) insert(k *Key, st State, now int64) (slot uint32, ok bool) {
	if t.count >= t.cfg.MaxFlows {
		t.Reap(now, 4)
		if t.count >= t.cfg.MaxFlows && !t.evictOne(now, false) {
			t.stats.Untracked.Add(1)
			return 0, false
		}
	}
	var s uint32
	if t.free != 0 {
		s = t.free - 1
		t.free = t.Flow(s).next
	} else {
		s = t.used
		if int(s>>chunkBits) == len(t.chunks) {
			c := make([]Flow, 1<<chunkBits)
			adviseHuge(unsafe.Pointer(&c[0]), uintptr(len(c))*unsafe.Sizeof(c[0]))
			t.chunks = append(t.chunks, c)
		}
		t.used++
	}
	f := t.Flow(s)
	*f = Flow{key: *k, state: st, created: now, lastSeen: now, movedAt: now}
	t.place(k.hash(t.seed)>>32<<32 | uint64(s+1))
	t.count++
	t.pushHead(s, st)
	t.stats.Flows[st].Add(1)
	t.stats.Created.Add(1)
	return s, true
}

// minEvictIdle protects live flows: a flow seen within this long is never
// evicted to make room for a new one (the new one goes untracked instead),
// so a flood of new flows cannot switch validation off for active ones.
// Embryonic flows are always evictable.
const minEvictIdle = int64(5 * time.Second)

func (t *Table) evictOne(now int64, force bool) bool {
	// Embryonic flows first, the least recently seen of the two lists.
	s, ok := t.oldestOf(now, StateSynSent, StateSynRecv)
	cause := EvictEmbryonic
	if !ok {
		s, ok = t.oldestOf(now, StateEstablished, StateClosed)
		cause = EvictLRU
		if ok && !force && now-t.Flow(s).lastSeen < minEvictIdle {
			return false
		}
	}
	if !ok {
		return false
	}
	t.stats.Evicted[cause].Add(1)
	t.delete(s)
	return true
}

// oldestOf returns the least recently seen flow among the states lo..hi.
func (t *Table) oldestOf(now int64, lo, hi State) (uint32, bool) {
	best, found := uint32(0), false
	var bestSeen int64
	for st := lo; st <= hi; st++ {
		if t.tails[st] == 0 {
			continue
		}
		s := t.tails[st] - 1
		if seen := t.Flow(s).lastSeen; !found || seen < bestSeen {
			best, bestSeen, found = s, seen, true
		}
	}
	return best, found
}

// Reap removes up to budget expired flows, taking each state's LRU tail
// (the next to expire) in turn. It returns how many it removed.
func (t *Table) Reap(now int64, budget int) int {
	n := 0
	for st := StateSynSent; st < NumStates && n < budget; st++ {
		for refreshed := 0; n < budget && t.tails[st] != 0; {
			s := t.tails[st] - 1
			f := t.Flow(s)
			if now-f.lastSeen <= t.tmo[st] {
				if now-f.movedAt <= t.tmo[st] || refreshed >= budget {
					break
				}
				// Seen since it was last moved: back to the head.
				refreshed++
				t.unlink(s, st)
				f.movedAt = f.lastSeen
				t.pushHead(s, st)
				continue
			}
			t.stats.Expired.Add(1)
			t.delete(s)
			n++
		}
	}
	return n
}

// touch records that slot s's flow was seen at now in state st (moving it
// between state lists when st changed).
func (t *Table) touch(s uint32, st State, now int64) {
	f := t.Flow(s)
	old := f.state
	f.lastSeen = now
	if old == st && (now-f.movedAt < touchEvery || t.heads[st] == s+1) {
		return
	}
	f.movedAt = now
	t.unlink(s, old)
	if old != st {
		t.stats.Flows[old].Add(-1)
		t.stats.Flows[st].Add(1)
		f.state = st
	}
	t.pushHead(s, st)
}

// touchEvery is how stale a flow's place in its LRU list may get before a
// packet moves it to the head.
const touchEvery = int64(time.Second)

func (t *Table) delete(s uint32) {
	f := t.Flow(s)
	t.unlink(s, f.state)
	t.stats.Flows[f.state].Add(-1)
	if f.flags&flowOneWayCounted != 0 {
		t.stats.OneWay.Add(-1)
	}
	// Remove from the index with backward-shift deletion.
	h := f.key.hash(t.seed)
	i := (h >> 32) & t.mask
	for uint32(t.index[i]) != s+1 {
		i = (i + 1) & t.mask
	}
	for j := (i + 1) & t.mask; ; j = (j + 1) & t.mask {
		e := t.index[j]
		if e == 0 {
			break
		}
		home := (e >> 32) & t.mask
		// Move e back to i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.index[i] = e
			i = j
		}
	}
	t.index[i] = 0
	*f = Flow{next: t.free}
	t.free = s + 1
	t.count--
}

func (t *Table) pushHead(s uint32, st State) {
	f := t.Flow(s)
	f.prev, f.next = 0, t.heads[st]
	if h := t.heads[st]; h != 0 {
		t.Flow(h - 1).prev = s + 1
	} else {
		t.tails[st] = s + 1
	}
	t.heads[st] = s + 1
}

func (t *Table) unlink(s uint32, st State) {
	f := t.Flow(s)
	if f.prev != 0 {
		t.Flow(f.prev - 1).next = f.next
	} else {
		t.heads[st] = f.next
	}
	if f.next != 0 {
		t.Flow(f.next - 1).prev = f.prev
	} else {
		t.tails[st] = f.prev
	}
	f.prev, f.next = 0, 0
}

// flowOneWayCounted marks a flow counted in Stats.OneWay.
const flowOneWayCounted FlowFlags = 1 << 7

// setOneWay updates the one-way accounting of slot s's flow.
func (t *Table) setOneWay(s uint32, oneWay bool) {
	f := t.Flow(s)
	counted := f.flags&flowOneWayCounted != 0
	switch {
	case oneWay && !counted:
		f.flags |= flowOneWayCounted
		t.stats.OneWay.Add(1)
	case !oneWay && counted:
		f.flags &^= flowOneWayCounted
		t.stats.OneWay.Add(-1)
	}
}
