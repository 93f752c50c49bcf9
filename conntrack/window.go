package conntrack

import (
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// MaxWindow is the largest window RFC 7323 allows (65535 << 14), the bound
// used when a window's scale is unknown (picked-up flows).
const MaxWindow = 1 << 30

// maxAckWindow is Linux's MAXACKWINDOW floor: how far behind the other
// side's end an ACK may be (delayed ACKs, reordering).
const maxAckWindow = 66000

// maxGap bounds how far ahead a segment may be and still count as a gap in
// what we saw rather than garbage: no window exceeds 2^30 (RFC 7323 2.3).
const maxGap = MaxWindow

// scaledWin returns the segment's advertised window in bytes. Windows of
// SYN segments are never scaled (RFC 7323 2.2).
func scaledWin(p *packet.Parsed, shift uint8) uint32 {
	if p.Flags&packet.SYN != 0 {
		return uint32(p.Window)
	}
	return uint32(p.Window) << shift
}

// Window describes the sequence numbers a receiver would accept.
type Window struct {
	Lo, Hi seqnum.Value // [Lo, Hi)
}

// Contains reports whether v is in [Lo, Hi).
func (w Window) Contains(v seqnum.Value) bool { return v.InRange(w.Lo, w.Hi) }

// RecvWindow estimates the receive window of side r (RFC 9293 3.3.1:
// RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND) for a segment sent by the other side
// s, from what r last acknowledged and advertised, with the tolerance needed
// for r's ACKs still in flight:
//
//   - Lo is r's highest ACK: its RCV.NXT can only be at or beyond it.
//   - Hi is the furthest right edge r may have: the highest ack+win it
//     advertised (maxEnd), or s's end plus r's last window if r has
//     received everything s sent and its ACK is still on the way.
//
// For a picked-up flow whose other direction has not been seen yet the
// window is unknown and may be up to 2^30 bytes (SPEC section 3): the
// window is centred on what was seen.
func (f *Flow) RecvWindow(r Dir) Window {
	rp, sp := &f.peers[r], &f.peers[r^1]
	if rp.flags&PeerACK == 0 {
		if f.flags&FlowPickedUp != 0 {
			// r never seen: its RCV.NXT is near what s has sent.
			return Window{Lo: sp.end.Sub(MaxWindow), Hi: sp.end.Add(MaxWindow)}
		}
		// r has not acknowledged anything yet (it is the initiator
		// before its first ACK): RCV.NXT is just past s's SYN.
		lo := sp.isn.Add(1)
		return Window{Lo: lo, Hi: seqnum.Max(sp.end, lo).Add(seqnum.Size(rp.maxWin) + 1)}
	}
	if sp.flags&PeerSeen == 0 {
		// Picked-up flow, s never seen: r's window scale is unknown.
		return Window{Lo: rp.ack, Hi: rp.ack.Add(MaxWindow)}
	}
	hi := seqnum.Max(rp.maxEnd, sp.end.Add(seqnum.Size(rp.win)))
	// SEG.SEQ = RCV.NXT is acceptable even with a zero window
	// (RFC 9293 3.10.7.4, first check, second row of the table).
	hi = seqnum.Max(hi, sp.end.Add(1))
	return Window{Lo: rp.ack, Hi: hi}
}

// inWindow applies van Rooij's four checks (Linux tcp_in_window) to a
// non-reset segment sent in direction d:
//
//	I.   SEG.SEQ      <= receiver's bound: the highest ack+win it advertised
//	II.  SEG.SEQ+LEN  >= sender's end - receiver's maxWin (not too old)
//	III. SEG.ACK      <= receiver's end (no ACK of unsent data)
//	IV.  SEG.ACK      >= receiver's end - max(sender's maxWin, 66000)
//
// It returns ok when all hold, and ahead when the only failures are a
// sequence or acknowledgement number ahead of what we saw, by less than
// 2^30: the mark of packets that reached the endpoints without us (a queue
// bypass), handled as a gap.
func (f *Flow) inWindow(p *packet.Parsed, d Dir) (ok, ahead bool) {
	sp, rp := &f.peers[d], &f.peers[d^1]
	if rp.flags&PeerSeen == 0 || sp.flags&PeerSeen == 0 {
		// One direction unseen (picked up, or only a SYN so far): nothing
		// to bound it by yet.
		return true, false
	}
	seq := p.Seq
	end := seq.Add(p.SegLen())
	okSeq, aheadSeq := true, false
	if rp.flags&PeerACK != 0 {
		// I.
		bound := rp.maxEnd
		if f.flags&FlowPickedUp != 0 {
			// Picked-up flow: the receiver's window scale is unknown, so
			// its window may be as large as its raw window allows at the
			// largest shift; update learns the shift from what it sees.
			bound = seqnum.Max(bound, rp.ack.Add(seqnum.Size(min(uint32(rp.rawWin)<<MaxShift, MaxWindow))))
		}
		if !seq.LessThanEq(bound) {
			okSeq = false
			aheadSeq = bound.Dist(seq) < maxGap
		}
	}
	// II.
	if okSeq || aheadSeq {
		floor := sp.end.Sub(seqnum.Size(max(rp.maxWin, 1)))
		if !floor.LessThanEq(end) {
			okSeq, aheadSeq = false, false
		}
	}
	okAck, aheadAck := true, false
	if p.Flags&packet.ACK != 0 && rp.flags&PeerSYN != 0 {
		// III.
		if !p.Ack.LessThanEq(rp.end) {
			okAck = false
			aheadAck = rp.end.Dist(p.Ack) < maxGap
		} else if !rp.end.Sub(seqnum.Size(max(sp.maxWin, maxAckWindow))).LessThanEq(p.Ack) {
			// IV.
			okAck = false
		}
	}
	if okSeq && okAck {
		return true, false
	}
	return false, (okSeq || aheadSeq) && (okAck || aheadAck)
}

// update records an accepted segment sent in direction d (Linux
// tcp_in_window's "update sender/receiver data"). Call it only for packets
// that are let through: a dropped packet never changes a flow.
func (f *Flow) update(p *packet.Parsed, d Dir) {
	sp, rp := &f.peers[d], &f.peers[d^1]
	if sp.flags&PeerSeen == 0 {
		sp.ttlFirst = p.TTL
	}
	sp.ttlLast = p.TTL
	sp.flags |= PeerSeen
	end := p.Seq.Add(p.SegLen())
	if p.Flags&packet.SYN != 0 && sp.flags&PeerSYN == 0 {
		sp.flags |= PeerSYN
		sp.isn = p.Seq
		sp.end, sp.prevEnd = end, p.Seq
		// The peer's SYN window bounds what we may send (RFC 9293 3.10.7.3).
	} else if sp.end.LessThan(end) {
		sp.prevEnd, sp.end = sp.end, end
	}
	win := scaledWin(p, sp.wscale)
	if p.Flags&packet.SYN == 0 {
		sp.rawWin = p.Window
	}
	if win > sp.maxWin {
		sp.maxWin = win
	}
	if p.Flags&packet.ACK != 0 {
		if sp.flags&PeerACK == 0 || sp.ack.LessThanEq(p.Ack) {
			sp.ack, sp.win = p.Ack, win
		}
		if sp.flags&PeerACK == 0 || sp.maxEnd.LessThan(p.Ack.Add(seqnum.Size(win))) {
			sp.maxEnd = p.Ack.Add(seqnum.Size(win))
			if win == 0 {
				sp.maxEnd++ // a zero window still admits a probe
			}
		}
		sp.flags |= PeerACK
		if rp.flags&PeerSYN != 0 && rp.isn.LessThan(p.Ack) {
			sp.flags |= PeerAckedSYN
		}
		if rp.flags&PeerFIN != 0 && rp.end.LessThanEq(p.Ack) {
			rp.flags |= PeerFINAcked
		}
		if rp.flags&PeerSYN == 0 && rp.flags&PeerSeen == 0 {
			// Picked-up flow: the other side is unseen; what s acks is
			// the best we know of what it has sent.
			rp.end, rp.prevEnd, rp.isn = p.Ack, p.Ack, p.Ack
		}
	}
	// Data beyond what the receiver advertised that was nevertheless
	// accepted widens the receiver's window (Linux: receiver->td_maxwin +=
	// end - sender->td_maxend). In a picked-up flow it also tells us the
	// receiver's window scale is larger than assumed.
	if rp.flags&PeerACK != 0 && rp.maxEnd.LessThan(end) {
		if f.flags&FlowPickedUp != 0 {
			rp.learnScale(end)
		}
		rp.maxWin += uint32(rp.maxEnd.Dist(end))
		rp.maxEnd = end
	}
	if p.Opts&packet.OptSACK != 0 {
		if sp.flags&PeerSACKSeen == 0 || sp.sackEdge.LessThan(p.SACKEdge) {
			sp.sackEdge = p.SACKEdge
		}
		sp.flags |= PeerSACKSeen
	}
	if p.Flags&packet.FIN != 0 {
		sp.flags |= PeerFIN
	}
}

// MaxShift is the largest window-scale shift (RFC 7323 2.3), the one
// packet clamps the option to.
const MaxShift = packet.MaxWScale

// learnScale raises the assumed window-scale shift of a picked-up flow's
// receiver until its last advertised window covers end: the sender never
// sends past the receiver's right edge, so data we saw there proves the
// shift is at least that large.
func (p *Peer) learnScale(end seqnum.Value) {
	for p.wscale < MaxShift && p.ack.Add(seqnum.Size(uint32(p.rawWin)<<p.wscale)).LessThan(end) {
		p.wscale++
	}
	p.win = uint32(p.rawWin) << p.wscale
	if p.maxWin < p.win {
		p.maxWin = p.win
	}
}

// resync accepts a segment that was ahead of what we saw (a gap: packets
// that bypassed us): the bounds it overran are moved to cover it, so the
// flow's tolerance widens for this flow only.
func (f *Flow) resync(p *packet.Parsed, d Dir) {
	sp, rp := &f.peers[d], &f.peers[d^1]
	end := p.Seq.Add(p.SegLen())
	if rp.maxEnd.LessThan(end) {
		rp.maxEnd = end
	}
	if p.Flags&packet.ACK != 0 && rp.end.LessThan(p.Ack) {
		rp.prevEnd, rp.end = rp.end, p.Ack
	}
	if sp.end.LessThan(p.Seq) {
		sp.prevEnd, sp.end = sp.end, p.Seq
	}
	f.flags |= FlowGap
	f.update(p, d)
}
