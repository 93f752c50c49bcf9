package conntrack

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

func testKey(i uint32) Key {
	var k Key
	k.A = [16]byte{10: 0xff, 11: 0xff, 12: 192, 13: 0, 14: 2, 15: 1}
	k.B = [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 51, 14: 100, 15: 1}
	binary.BigEndian.PutUint32(k.A[12:], 0xC0000200|i>>16)
	k.PortA = uint16(i)
	k.PortB = 443
	return k
}

func cfg(n int) Config {
	c := DefaultConfig()
	c.MaxFlows = n
	return c
}

func TestInsertLookupDelete(t *testing.T) {
	tb := NewTable(cfg(1000))
	now := int64(time.Second)
	slots := map[uint32]uint32{}
	for i := uint32(0); i < 1000; i++ {
		k := testKey(i)
		s, ok := tb.insert(&k, StateEstablished, now)
		if !ok {
			t.Fatalf("insert %d failed", i)
		}
		slots[i] = s
	}
	if tb.Len() != 1000 {
		t.Fatalf("len %d", tb.Len())
	}
	// Delete every third flow, then check every lookup.
	for i := uint32(0); i < 1000; i += 3 {
		tb.delete(slots[i])
	}
	for i := uint32(0); i < 1000; i++ {
		k := testKey(i)
		s, ok := tb.Lookup(&k, now)
		if want := i%3 != 0; ok != want {
			t.Fatalf("lookup %d: found=%v, want %v", i, ok, want)
		}
		if ok && (s != slots[i] || tb.Flow(s).Key() != k) {
			t.Fatalf("lookup %d: wrong slot", i)
		}
	}
	if got, want := tb.Stats().Flows[StateEstablished].Load(), int64(tb.Len()); got != want {
		t.Fatalf("gauge %d, len %d", got, want)
	}
}

// TestRandomOpsAgainstMap drives the table with random inserts, deletes and
// lookups and compares it with a map (the index's backward-shift deletion
// is the part worth checking).
func TestRandomOpsAgainstMap(t *testing.T) {
	tb := NewTable(cfg(512))
	ref := map[Key]uint32{}
	r := rand.New(rand.NewPCG(1, 2))
	now := int64(time.Second)
	for i := 0; i < 200000; i++ {
		k := testKey(uint32(r.IntN(2000)))
		s, ok := tb.Lookup(&k, now)
		rs, rok := ref[k]
		if ok != rok || (ok && s != rs) {
			t.Fatalf("op %d: lookup mismatch: table %v/%d, ref %v/%d", i, ok, s, rok, rs)
		}
		switch {
		case ok && r.IntN(2) == 0:
			tb.delete(s)
			delete(ref, k)
		case !ok && len(ref) < 512:
			s, ok := tb.insert(&k, StateEstablished, now)
			if !ok {
				t.Fatalf("insert failed with %d flows", len(ref))
			}
			ref[k] = s
		}
		if tb.Len() != len(ref) {
			t.Fatalf("len %d, ref %d", tb.Len(), len(ref))
		}
	}
}

// TestEvictionOrder: SPEC 3: when full, embryonic flows go first, then the
// least recently used; a flow seen in the last few seconds is not evicted
// and the new flow goes untracked instead.
func TestEvictionOrder(t *testing.T) {
	tb := NewTable(cfg(4))
	now := int64(100 * time.Second)
	ins := func(i uint32, st State) uint32 {
		k := testKey(i)
		s, ok := tb.insert(&k, st, now)
		if !ok {
			t.Fatalf("insert %d failed", i)
		}
		return s
	}
	has := func(i uint32) bool {
		k := testKey(i)
		_, ok := tb.Lookup(&k, now)
		return ok
	}
	ins(1, StateEstablished)
	now += int64(time.Second)
	ins(2, StateSynSent)
	now += int64(time.Second)
	ins(3, StateEstablished)
	now += int64(time.Second)
	ins(4, StateSynRecv)
	now += int64(time.Second)

	// Full: the oldest embryonic flow (2) goes first, then 4.
	ins(5, StateEstablished)
	if has(2) || !has(4) {
		t.Fatalf("embryonic eviction order wrong: has(2)=%v has(4)=%v", has(2), has(4))
	}
	ins(6, StateEstablished)
	if has(4) {
		t.Fatalf("flow 4 (syn_recv) not evicted")
	}
	if n := tb.Stats().Evicted[EvictEmbryonic].Load(); n != 2 {
		t.Fatalf("embryonic evictions %d, want 2", n)
	}
	// No embryonic flows left, everything recent: untracked.
	k := testKey(7)
	if _, ok := tb.insert(&k, StateSynSent, now); ok {
		t.Fatalf("evicted a live flow")
	}
	if tb.Stats().Untracked.Load() != 1 {
		t.Fatalf("untracked not counted")
	}
	// Ten seconds later, the least recently used (1) makes room.
	now += int64(10 * time.Second)
	tb.touch(mustLookup(t, tb, 3, now), StateEstablished, now)
	ins(7, StateSynSent)
	if has(1) || !has(3) {
		t.Fatalf("LRU eviction wrong: has(1)=%v has(3)=%v", has(1), has(3))
	}
	if tb.Len() != 4 {
		t.Fatalf("len %d, want 4", tb.Len())
	}
}

func mustLookup(t *testing.T, tb *Table, i uint32, now int64) uint32 {
	k := testKey(i)
	s, ok := tb.Lookup(&k, now)
	if !ok {
		t.Fatalf("flow %d missing", i)
	}
	return s
}

// TestReapExpires: Reap removes exactly the expired flows, oldest first,
// across states with different timeouts.
func TestReapExpires(t *testing.T) {
	c := cfg(100)
	c.Timeouts.Closed = 10 * time.Second
	c.Timeouts.Established = time.Hour
	tb := NewTable(c)
	now := int64(time.Second)
	for i := uint32(0); i < 10; i++ {
		k := testKey(i)
		st := StateEstablished
		if i%2 == 0 {
			st = StateClosed
		}
		tb.insert(&k, st, now)
	}
	now += int64(11 * time.Second)
	if n := tb.Reap(now, 100); n != 5 {
		t.Fatalf("reaped %d, want the 5 closed flows", n)
	}
	if tb.Len() != 5 || tb.Stats().Flows[StateClosed].Load() != 0 {
		t.Fatalf("len %d closed %d", tb.Len(), tb.Stats().Flows[StateClosed].Load())
	}
	now += int64(time.Hour)
	if n := tb.Reap(now, 3); n != 3 {
		t.Fatalf("budget not respected: %d", n)
	}
}

// TestReconfigureShrinks: a smaller max_flows on reload evicts down to it.
func TestReconfigureShrinks(t *testing.T) {
	tb := NewTable(cfg(100))
	now := int64(time.Second)
	for i := uint32(0); i < 100; i++ {
		k := testKey(i)
		tb.insert(&k, StateEstablished, now)
	}
	tb.Reconfigure(cfg(10), now)
	if tb.Len() != 10 {
		t.Fatalf("len %d after shrinking to 10", tb.Len())
	}
	tb.Reconfigure(cfg(100000), now) // grows the index, keeps the flows
	if tb.Len() != 10 {
		t.Fatalf("len %d after growing", tb.Len())
	}
	for i := uint32(90); i < 100; i++ {
		mustLookup(t, tb, i, now)
	}
}

func TestKeySymmetric(t *testing.T) {
	k := testKey(5)
	var a, b [16]byte = k.A, k.B
	if !less(&a, 1, &b, 2) || less(&b, 2, &a, 1) {
		t.Fatalf("less not antisymmetric")
	}
}

// TestWalkVisitsEveryLiveFlowInBoundedSteps: a walk in steps of 100 slots
// sees each live flow once, skips deleted and expired ones, and may delete
// the flow it is visiting.
func TestWalkVisitsEveryLiveFlowInBoundedSteps(t *testing.T) {
	tb := NewTable(cfg(5000))
	for j := uint32(0); j < 1000; j++ {
		k := testKey(j)
		s, ok := tb.insert(&k, StateEstablished, 1)
		if !ok {
			t.Fatal("insert")
		}
		if j%10 == 0 {
			tb.delete(s)
		}
	}
	k := testKey(5000)
	tb.insert(&k, StateSynSent, 1) // reuses a freed slot; expires first
	now := int64(1) + tb.tmo[StateSynSent] + 1
	seen := map[Key]bool{}
	steps := 0
	for next, done := uint32(0), false; !done; steps++ {
		next, done = tb.Walk(next, 100, now, func(slot uint32, f *Flow) {
			if seen[f.key] {
				t.Errorf("flow seen twice")
			}
			seen[f.key] = true
			if f.Created() != 1 {
				t.Errorf("created %d", f.Created())
			}
			if f.key == testKey(999) {
				tb.delete(slot)
			}
		})
	}
	if len(seen) != 900 || seen[testKey(5000)] || seen[testKey(10)] {
		t.Errorf("saw %d flows (want 900: 1000 less 100 deleted, the expired SYN-SENT one skipped)", len(seen))
	}
	if steps < 10 {
		t.Errorf("%d steps for 1000 slots of 100", steps)
	}
	if tb.Len() != 900 { // 901 live less the one deleted during the walk
		t.Errorf("len %d", tb.Len())
	}
}
