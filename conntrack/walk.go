package conntrack

// Created returns when the flow was inserted (the engine's clock, ns).
func (f *Flow) Created() int64 { return f.created }

// Remove deletes the flow in slot s (the control socket's flush); the next
// packet of that connection is handled as one of a new flow.
func (t *Table) Remove(s uint32) { t.delete(s) }

// Walk visits the live flows in slots from, from+1, ... for at most max
// slots, in slot order, and calls fn with each (the pointer is valid during
// the call; fn may Remove that slot). Expired flows are skipped, not
// removed. It returns the slot to resume from and whether the walk reached
// the end of the slab. The bounded steps let a dump of a million flows run
// between packets (the control socket) without holding the table for long.
func (t *Table) Walk(from uint32, max int, now int64, fn func(slot uint32, f *Flow)) (next uint32, done bool) {
	s := from
	for n := 0; n < max && s < t.used; n, s = n+1, s+1 {
		f := t.Flow(s)
		if f.state == StateNone || now-f.lastSeen > t.tmo[f.state] {
			continue
		}
		fn(s, f)
	}
	return s, s >= t.used
}
