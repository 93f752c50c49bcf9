package conntrack

import (
	"strconv"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// The TCP state machine (gVisor's tcpconntrack TCB.UpdateStateInbound):
// Create, SYN, Segment and Reset take a packet the caller has decoded and
// looked up, apply it to the flow if tracking accepts it, and say what they
// made of it in a Result. Resets are judged by the caller (policy) against
// the flow as it is; it calls Reset only for those it lets through.
// Whatever is not applied changes nothing: SPEC section 2, step 5.

// Result says what the state machine made of a packet.
type Result uint8

const (
	// ResultTracked: the packet was applied to its flow (or the flow was
	// created from a SYN).
	ResultTracked Result = iota
	// ResultResynced: the segment was ahead of what we saw (packets that
	// bypassed us); the flow was resynchronised to it and counted in
	// Stats.Gaps.
	ResultResynced
	// ResultPickedUp: a flow was created from a mid-stream packet.
	ResultPickedUp
	// ResultOutOfWindow: outside what the flow allows; nothing changed.
	ResultOutOfWindow
	// ResultSYNSynchronized: a SYN in a synchronized state; nothing
	// changed. Call Keep if it is let through.
	ResultSYNSynchronized
	// ResultUntracked: no flow was created: pickup is off, or the segment
	// is one no TCP sends without ACK (null/FIN scans).
	ResultUntracked
	// ResultTableFull: no flow was created: the table is full of live
	// flows (counted in Stats.Untracked).
	ResultTableFull
)

func (r Result) String() string {
	switch r {
	case ResultTracked:
		return "tracked"
	case ResultResynced:
		return "resynced"
	case ResultPickedUp:
		return "picked_up"
	case ResultOutOfWindow:
		return "out_of_window"
	case ResultSYNSynchronized:
		return "syn_synchronized"
	case ResultUntracked:
		return "untracked"
	case ResultTableFull:
		return "table_full"
	default:
		return "result(" + strconv.Itoa(int(r)) + ")"
	}
}

// Create starts tracking the flow of p, a non-reset packet of no known flow
// sent by side of k:
//
//   - SYN: a new flow in syn_sent, whatever its ECN or reserved bits
//     (RFC 3360), with any data it carries (TFO, RFC 7413).
//   - SYN-ACK: picked up in syn_recv (we restarted during a handshake).
//   - anything else with ACK: mid-stream pickup into established (SPEC 3).
func (t *Table) Create(k *Key, side Side, p *packet.Parsed, now int64) Result {
	syn := p.Flags&packet.SYN != 0
	ack := p.Flags&packet.ACK != 0
	var st State
	switch {
	case syn && !ack:
		st = StateSynSent
	case !t.cfg.Pickup || !ack:
		return ResultUntracked
	case syn:
		st = StateSynRecv
	default:
		st = StateEstablished
	}
	slot, ok := t.insert(k, st, now)
	if !ok {
		return ResultTableFull
	}
	f := t.Flow(slot)
	if syn && !ack {
		f.initSide = side
		if fl := p.Flags & packet.ECNReserved; fl != 0 {
			f.flags |= FlowSYNFlagged
			f.synFlags = fl
		}
		f.initOptions(Original, p)
		f.update(p, Original)
		return ResultTracked
	}
	// Picked up: the sender of a SYN-ACK is the responder; otherwise we
	// call the first side we see the initiator. The window scale of a side
	// whose SYN we did not see is unknown; update learns it.
	f.flags |= FlowPickedUp
	d := Original
	if syn {
		f.initSide = side ^ 1
		d = Reply
		f.initOptions(d, p)
		// The SYN-ACK tells us the initiator's SYN: it acknowledges ISN+1
		// (or more, with TFO data).
		ip := &f.peers[Original]
		ip.flags |= PeerSYN
		ip.isn, ip.end, ip.prevEnd = p.Ack-1, p.Ack, p.Ack-1
	} else {
		f.initSide = side
		sp := &f.peers[d]
		sp.isn, sp.end, sp.prevEnd = p.Seq, p.Seq, p.Seq
	}
	f.update(p, d)
	t.setOneWay(slot, true)
	if !syn {
		t.touch(slot, f.closingState(), now)
	}
	return ResultPickedUp
}

// initOptions records the SYN options of side d.
func (f *Flow) initOptions(d Dir, p *packet.Parsed) {
	pe := &f.peers[d]
	if p.Opts&packet.OptWScale != 0 {
		pe.flags |= PeerWScaleOpt
		pe.wscale = p.WScale
	}
	if p.Opts&packet.OptSACKPerm != 0 {
		pe.flags |= PeerSACKPerm
	}
	if p.Opts&packet.OptTimestamp != 0 {
		pe.flags |= PeerTimestamps
	}
}

// SYN applies a SYN or SYN-ACK (no RST) sent in direction d of slot's flow.
func (t *Table) SYN(slot uint32, d Dir, p *packet.Parsed, now int64) Result {
	f := t.Flow(slot)
	ack := p.Flags&packet.ACK != 0
	st := f.state
	init, resp := &f.peers[Original], &f.peers[Reply]
	switch {
	case st == StateClosed && f.rstState == StateSynSent && d == Reply && ack &&
		resp.flags&PeerSYN == 0 && p.Ack.InRange(init.isn.Add(1), init.end.Add(1)):
		// A refusal was accepted in SYN-SENT, and now the responder's
		// SYN-ACK answers the same SYN (RFC 9293 3.10.7.3: it
		// acknowledges ISS+1, or the SYN's data): the client did not
		// honour the refusal (it failed PAWS, or it was injected and lost
		// the race with the genuine answer). The flow goes on from
		// SYN-SENT with the real windows.
		resp.flags = 0
		f.initOptions(d, p)
		f.scale()
		f.update(p, d)
		init.maxEnd = resp.end.Add(seqnum.Size(init.maxWin))
		t.stats.Revived[StateSynSent].Add(1)
		t.touch(slot, StateSynRecv, now)
		return ResultTracked

	case st == StateTimeWait || st == StateClosed:
		// RFC 9293 3.10.7.4 / RFC 1122 4.2.2.13: a SYN may reopen a
		// connection in TIME-WAIT; after a reset the old incarnation is
		// gone. A new sequence number opens a new incarnation; the old
		// SYN retransmitted is just tracked.
		if ack || (f.peers[d].flags&PeerSYN != 0 && p.Seq == f.peers[d].isn) {
			t.touch(slot, st, now)
			return ResultTracked
		}
		side := Side(d) ^ f.initSide
		key := f.key
		t.delete(slot)
		return t.Create(&key, side, p, now)

	case st == StateSynSent && d == Original && !ack:
		// A retransmitted SYN, or the initiator reinitialised with a new
		// ISN (RFC 9293 3.10.7.3; Linux re-inits the sender data when the
		// new SYN's end is after the old one).
		if p.Seq != init.isn {
			*init = Peer{}
			f.initOptions(d, p)
			f.synFlags = p.Flags & packet.ECNReserved
			f.flags &^= FlowSYNFlagged
			if f.synFlags != 0 {
				f.flags |= FlowSYNFlagged
			}
		}
		f.update(p, d)
		t.touch(slot, st, now)
		return ResultTracked

	case st == StateSynSent && d == Reply:
		if !ack {
			// Simultaneous open (RFC 9293 3.5, figure 8): tracked.
			resp.flags = 0
			f.initOptions(d, p)
			f.flags |= FlowSimOpen
			f.scale()
			f.update(p, d)
			t.touch(slot, StateSynRecv, now)
			return ResultTracked
		}
		// SYN-ACK: it must acknowledge the initiator's SYN and any data
		// on it: ISN < SEG.ACK =< end (RFC 9293 3.10.7.3; RFC 7413 lets
		// the server acknowledge only the SYN).
		if !p.Ack.InRange(init.isn.Add(1), init.end.Add(1)) {
			return ResultOutOfWindow
		}
		resp.flags = 0
		f.initOptions(d, p)
		f.scale()
		f.update(p, d)
		// The initiator's SYN window now bounds what the responder may
		// send: from the responder's ISN+1.
		init.maxEnd = resp.end.Add(seqnum.Size(init.maxWin))
		t.touch(slot, StateSynRecv, now)
		return ResultTracked

	case st == StateSynRecv:
		// Retransmitted SYN or SYN-ACK, or the second half of a
		// simultaneous open (a SYN-ACK from the initiator).
		if ack && f.flags&FlowSimOpen != 0 {
			f.update(p, d)
			t.advanceHandshake(slot, now)
			return ResultTracked
		}
		t.touch(slot, st, now)
		return ResultTracked

	default:
		// A SYN in a synchronized state (or a SYN-ACK from the initiator
		// in syn_sent): RFC 9293 3.10.7.4 (fourth check) and RFC 5961 4.2,
		// the endpoint answers it with a challenge ACK. It changes
		// nothing; the caller decides whether it passes (Keep).
		return ResultSYNSynchronized
	}
}

// Keep records that a packet which changes nothing else in slot's flow was
// let through: the flow stays alive (ResultSYNSynchronized).
func (t *Table) Keep(slot uint32, now int64) {
	t.touch(slot, t.Flow(slot).state, now)
}

// scale applies RFC 7323 2.2: window scaling is in effect only when both
// SYNs carried the option; otherwise both shifts are zero.
func (f *Flow) scale() {
	i, r := &f.peers[Original], &f.peers[Reply]
	if i.flags&PeerWScaleOpt == 0 || r.flags&PeerWScaleOpt == 0 {
		i.wscale, r.wscale = 0, 0
	}
}

// advanceHandshake moves a syn_recv flow to established once both sides
// have acknowledged each other's SYN, and a synchronized flow to the state
// its FINs say.
func (t *Table) advanceHandshake(slot uint32, now int64) {
	f := t.Flow(slot)
	st := f.state
	if st == StateSynRecv &&
		f.peers[Original].flags&PeerAckedSYN != 0 &&
		f.peers[Reply].flags&PeerAckedSYN != 0 {
		st = StateEstablished
	}
	if st.Synchronized() {
		st = f.closingState()
	}
	t.touch(slot, st, now)
}

// Segment applies a segment without SYN or RST sent in direction d of
// slot's flow.
//
// SPEC 5: segments outside the window never move the tracked windows
// (ResultOutOfWindow; the endpoint discards them itself, RFC 9293 3.10.7.4
// first check). A segment ahead of the window whose other number is
// plausible marks a gap in what we saw (packets that bypassed the queue):
// the flow is resynchronised and counted (ResultResynced), so a missed
// burst never makes a later legitimate reset look forged.
func (t *Table) Segment(slot uint32, d Dir, p *packet.Parsed, now int64) Result {
	f := t.Flow(slot)
	st := f.state
	if st == StateClosed {
		// The connection was reset; stragglers pass and change nothing.
		// But a segment that continues the sequence space after the reset
		// proves the endpoints did not honour it (a RFC 5961 host answers
		// an inexact reset with a challenge ACK and goes on; a reset
		// injected on the path was never seen by its purported sender):
		// new data in the window, or an ACK beyond the sender's last one,
		// from a side that had acknowledged before. The flow is revived
		// with its real windows, in the state its handshake and FINs say,
		// so that its later resets are judged against them, not against
		// the ones frozen at the reset, and it keeps its state's timeout
		// instead of expiring into a pickup.
		if f.continues(p, d) {
			f.update(p, d)
			t.stats.Revived[f.rstState].Add(1)
			f.held, f.heldN = 0, 0
			if f.rstState == StateSynRecv {
				t.touch(slot, StateSynRecv, now)
				t.advanceHandshake(slot, now)
			} else {
				t.touch(slot, f.closingState(), now)
			}
			return ResultTracked
		}
		t.touch(slot, st, now)
		return ResultTracked
	}
	if st == StateSynSent {
		if d == Reply {
			// The responder has not sent its SYN: nothing it sends
			// before that is in any window (RFC 9293 3.10.7.3).
			return ResultOutOfWindow
		}
		if p.Flags&packet.ACK == 0 {
			t.touch(slot, st, now)
			return ResultTracked
		}
	}
	ok, ahead := f.inWindow(p, d)
	r := ResultTracked
	switch {
	case ok:
		f.update(p, d)
	case ahead && st.Synchronized():
		f.resync(p, d)
		t.stats.Gaps.Add(1)
		r = ResultResynced
	default:
		return ResultOutOfWindow
	}
	if f.flags&FlowPickedUp != 0 {
		t.setOneWay(slot, f.peers[d^1].flags&PeerSeen == 0)
	}
	t.advanceHandshake(slot, now)
	return r
}

// Reset records a reset the caller accepted, sent in direction d: slot's
// flow is closed, at the reset's sequence number seq. A hold of the flow's
// resets ends.
func (t *Table) Reset(slot uint32, d Dir, seq seqnum.Value, now int64) {
	f := t.Flow(slot)
	f.rstSeq, f.rstDir, f.rstAt = seq, d, now
	f.held, f.heldN = 0, 0
	if f.state != StateClosed {
		f.rstState = f.state
	}
	t.touch(slot, StateClosed, now)
}

// Hold records that a reset the caller judged valid, sent in direction d
// at sequence number seq, is held (not yet let through) under token: the
// flow is left as it is, as for a packet not let through. A further reset
// held in the same hold is counted (at most 255).
func (t *Table) Hold(slot uint32, d Dir, seq seqnum.Value, token uint32) {
	f := t.Flow(slot)
	if f.held != token {
		f.held, f.heldN, f.rstDir, f.rstSeq = token, 0, d, seq
	}
	if f.heldN < 255 {
		f.heldN++
	}
}

// Unhold ends the hold of slot's flow without closing it (its resets
// were dropped); it returns how many resets the hold had.
func (t *Table) Unhold(slot uint32) uint8 {
	f := t.Flow(slot)
	n := f.heldN
	f.held, f.heldN = 0, 0
	return n
}

// continues reports whether p, a segment without SYN or RST sent in
// direction d, continues d's sequence space: it is in the window and
// carries data beyond what d had sent, or acknowledges more than d had
// (d must have acknowledged before: a side's first ACK has no baseline).
func (f *Flow) continues(p *packet.Parsed, d Dir) bool {
	s := &f.peers[d]
	if s.flags&PeerACK == 0 || p.Flags&packet.ACK == 0 {
		return false
	}
	if ok, _ := f.inWindow(p, d); !ok {
		return false
	}
	if p.SegLen() > 0 && s.end.LessThan(p.Seq.Add(p.SegLen())) {
		return true
	}
	return s.ack.LessThan(p.Ack)
}

// closingState derives the state of a synchronized flow from its FIN flags
// (Linux names, see State).
func (f *Flow) closingState() State {
	o, r := f.peers[Original].flags, f.peers[Reply].flags
	fins := 0
	acked := 0
	if o&PeerFIN != 0 {
		fins++
		if o&PeerFINAcked != 0 {
			acked++
		}
	}
	if r&PeerFIN != 0 {
		fins++
		if r&PeerFINAcked != 0 {
			acked++
		}
	}
	switch {
	case fins == 0:
		return StateEstablished
	case fins == 1 && acked == 0:
		return StateFinWait
	case fins == 1:
		return StateCloseWait
	case acked < 2:
		return StateLastAck
	default:
		return StateTimeWait
	}
}
