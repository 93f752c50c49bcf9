package conntrack

import (
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// Dir is a direction of a flow: Original is what the initiator (the side
// whose SYN was seen first) sends, Reply what the responder sends.
type Dir uint8

const (
	Original Dir = 0
	Reply    Dir = 1
)

// Peer is what the middlebox has seen one side send (van Rooij's window
// tracking, as in Linux nf_conntrack's ip_ct_tcp_state and gVisor's
// tcpconntrack stream). For the side d:
//
//   - ISN: d's initial sequence number (for picked-up flows, the first
//     sequence number seen).
//   - End: the highest SEG.SEQ+SEG.LEN d has sent (SYN and FIN count one):
//     d's SND.NXT as far as we know.
//   - PrevEnd: End before d's latest segment that advanced it.
//   - Ack: the highest acknowledgement d has sent, a lower bound of d's
//     RCV.NXT; Win: the window d advertised with it, already scaled.
//   - MaxEnd: the highest Ack+Win d has advertised. It bounds what the other
//     side may send (Linux keeps it on the other side as td_maxend).
//   - MaxWin: the largest window d has advertised (td_maxwin).
//   - SACKEdge: the highest right edge of the SACK blocks d has sent.
//   - WScale: d's window-scale shift, non-zero only when both SYNs carried
//     the option (RFC 7323 2.2), clamped to 14 at parse time.
type Peer struct {
	ISN      seqnum.Value
	End      seqnum.Value
	PrevEnd  seqnum.Value
	Ack      seqnum.Value
	MaxEnd   seqnum.Value
	SACKEdge seqnum.Value
	Win      uint32
	MaxWin   uint32
	RawWin   uint16 // the last window field as sent, unscaled
	WScale   uint8
	Flags    PeerFlags
}

// PeerFlags record what was seen from one side.
type PeerFlags uint16

const (
	PeerSeen       PeerFlags = 1 << iota // any packet from this side
	PeerSYN                              // its SYN was seen (ISN valid)
	PeerACK                              // it has sent an ACK (Ack, Win valid)
	PeerFIN                              // it has sent a FIN
	PeerFINAcked                         // its FIN was acknowledged by the other side
	PeerWScaleOpt                        // its SYN carried the window-scale option
	PeerSACKPerm                         // its SYN carried SACK-permitted
	PeerTimestamps                       // its SYN carried timestamps
	PeerSACKSeen                         // it has sent SACK blocks (SACKEdge valid)
	PeerAckedSYN                         // it has acknowledged the other side's SYN
)

// FlowFlags are per-flow facts.
type FlowFlags uint8

const (
	FlowPickedUp   FlowFlags = 1 << iota // created mid-stream: window scale unknown
	FlowSimOpen                          // simultaneous open
	FlowGap                              // packets were missed (resynchronised at least once)
	FlowSYNFlagged                       // the initiator's SYN carried ECN or reserved bits
)

// Flow is one tracked TCP connection.
type Flow struct {
	Key   Key
	Peers [2]Peer // indexed by Dir
	// RSTSeq is the sequence number of the reset that closed the flow.
	RSTSeq seqnum.Value
	// SYNFlags are the ECN/reserved bits of the initiator's SYN.
	SYNFlags packet.Flags
	State    State
	Flags    FlowFlags
	// InitSide is the Key side of the initiator.
	InitSide Side

	created    int64  // ns, when the flow was inserted
	lastSeen   int64  // ns, of the last accepted packet
	movedAt    int64  // ns, when the flow was last put at the head of its list
	prev, next uint32 // LRU links within the state's list (slot index+1, 0 = none)
}

// DirOf returns the direction of a packet sent by side s.
func (f *Flow) DirOf(s Side) Dir { return Dir(s ^ f.InitSide) }

// LastSeen returns the time of the last accepted packet.
func (f *Flow) LastSeen() int64 { return f.lastSeen }

// MaxWindow is the largest window RFC 7323 allows (65535 << 14), the bound
// used when a window's scale is unknown (picked-up flows).
const MaxWindow = 1 << 30

// maxAckWindow is Linux's MAXACKWINDOW floor: how far behind the other
// side's End an ACK may be (delayed ACKs, reordering).
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
//   - Hi is the furthest right edge r may have: the highest Ack+Win it
//     advertised (MaxEnd), or s's End plus r's last window if r has
//     received everything s sent and its ACK is still on the way.
//
// For a picked-up flow whose other direction has not been seen yet the
// window is unknown and may be up to 2^30 bytes (SPEC section 3): the
// window is centred on what was seen.
func (f *Flow) RecvWindow(r Dir) Window {
	rp, sp := &f.Peers[r], &f.Peers[r^1]
	if rp.Flags&PeerACK == 0 {
		if f.Flags&FlowPickedUp != 0 {
			// r never seen: its RCV.NXT is near what s has sent.
			return Window{Lo: sp.End.Sub(MaxWindow), Hi: sp.End.Add(MaxWindow)}
		}
		// r has not acknowledged anything yet (it is the initiator
		// before its first ACK): RCV.NXT is just past s's SYN.
		lo := sp.ISN.Add(1)
		return Window{Lo: lo, Hi: seqnum.Max(sp.End, lo).Add(seqnum.Size(rp.MaxWin) + 1)}
	}
	if sp.Flags&PeerSeen == 0 {
		// Picked-up flow, s never seen: r's window scale is unknown.
		return Window{Lo: rp.Ack, Hi: rp.Ack.Add(MaxWindow)}
	}
	hi := seqnum.Max(rp.MaxEnd, sp.End.Add(seqnum.Size(rp.Win)))
	// SEG.SEQ = RCV.NXT is acceptable even with a zero window
	// (RFC 9293 3.10.7.4, first check, second row of the table).
	hi = seqnum.Max(hi, sp.End.Add(1))
	return Window{Lo: rp.Ack, Hi: hi}
}

// InWindow applies van Rooij's four checks (Linux tcp_in_window) to a
// non-reset segment sent in direction d:
//
//	I.   SEG.SEQ      <= receiver's bound: the highest Ack+Win it advertised
//	II.  SEG.SEQ+LEN  >= sender's End - receiver's MaxWin (not too old)
//	III. SEG.ACK      <= receiver's End (no ACK of unsent data)
//	IV.  SEG.ACK      >= receiver's End - max(sender's MaxWin, 66000)
//
// It returns ok when all hold, and ahead when the only failures are a
// sequence or acknowledgement number ahead of what we saw, by less than
// 2^30: the mark of packets that reached the endpoints without us (a queue
// bypass), handled as a gap.
func (f *Flow) InWindow(p *packet.Parsed, d Dir) (ok, ahead bool) {
	sp, rp := &f.Peers[d], &f.Peers[d^1]
	if rp.Flags&PeerSeen == 0 || sp.Flags&PeerSeen == 0 {
		// One direction unseen (picked up, or only a SYN so far): nothing
		// to bound it by yet.
		return true, false
	}
	seq := p.Seq
	end := seq.Add(p.SegLen())
	okSeq, aheadSeq := true, false
	if rp.Flags&PeerACK != 0 {
		// I.
		bound := rp.MaxEnd
		if f.Flags&FlowPickedUp != 0 {
			// Picked-up flow: the receiver's window scale is unknown, so
			// its window may be as large as its raw window allows at the
			// largest shift; Update learns the shift from what it sees.
			bound = seqnum.Max(bound, rp.Ack.Add(seqnum.Size(min(uint32(rp.RawWin)<<MaxShift, MaxWindow))))
		}
		if !seq.LessThanEq(bound) {
			okSeq = false
			aheadSeq = bound.Dist(seq) < maxGap
		}
	}
	// II.
	if okSeq || aheadSeq {
		floor := sp.End.Sub(seqnum.Size(max(rp.MaxWin, 1)))
		if !floor.LessThanEq(end) {
			okSeq, aheadSeq = false, false
		}
	}
	okAck, aheadAck := true, false
	if p.Flags&packet.ACK != 0 && rp.Flags&PeerSYN != 0 {
		// III.
		if !p.Ack.LessThanEq(rp.End) {
			okAck = false
			aheadAck = rp.End.Dist(p.Ack) < maxGap
		} else if !rp.End.Sub(seqnum.Size(max(sp.MaxWin, maxAckWindow))).LessThanEq(p.Ack) {
			// IV.
			okAck = false
		}
	}
	if okSeq && okAck {
		return true, false
	}
	return false, (okSeq || aheadSeq) && (okAck || aheadAck)
}

// Update records an accepted segment sent in direction d (Linux
// tcp_in_window's "update sender/receiver data"). Call it only for packets
// that are let through: a dropped packet never changes a flow.
func (f *Flow) Update(p *packet.Parsed, d Dir) {
	sp, rp := &f.Peers[d], &f.Peers[d^1]
	sp.Flags |= PeerSeen
	end := p.Seq.Add(p.SegLen())
	if p.Flags&packet.SYN != 0 && sp.Flags&PeerSYN == 0 {
		sp.Flags |= PeerSYN
		sp.ISN = p.Seq
		sp.End, sp.PrevEnd = end, p.Seq
		// The peer's SYN window bounds what we may send (RFC 9293 3.10.7.3).
	} else if sp.End.LessThan(end) {
		sp.PrevEnd, sp.End = sp.End, end
	}
	win := scaledWin(p, sp.WScale)
	if p.Flags&packet.SYN == 0 {
		sp.RawWin = p.Window
	}
	if win > sp.MaxWin {
		sp.MaxWin = win
	}
	if p.Flags&packet.ACK != 0 {
		if sp.Flags&PeerACK == 0 || sp.Ack.LessThanEq(p.Ack) {
			sp.Ack, sp.Win = p.Ack, win
		}
		if sp.Flags&PeerACK == 0 || sp.MaxEnd.LessThan(p.Ack.Add(seqnum.Size(win))) {
			sp.MaxEnd = p.Ack.Add(seqnum.Size(win))
			if win == 0 {
				sp.MaxEnd++ // a zero window still admits a probe
			}
		}
		sp.Flags |= PeerACK
		if rp.Flags&PeerSYN != 0 && rp.ISN.LessThan(p.Ack) {
			sp.Flags |= PeerAckedSYN
		}
		if rp.Flags&PeerFIN != 0 && rp.End.LessThanEq(p.Ack) {
			rp.Flags |= PeerFINAcked
		}
		if rp.Flags&PeerSYN == 0 && rp.Flags&PeerSeen == 0 {
			// Picked-up flow: the other side is unseen; what s acks is
			// the best we know of what it has sent.
			rp.End, rp.PrevEnd, rp.ISN = p.Ack, p.Ack, p.Ack
		}
	}
	// Data beyond what the receiver advertised that was nevertheless
	// accepted widens the receiver's window (Linux: receiver->td_maxwin +=
	// end - sender->td_maxend). In a picked-up flow it also tells us the
	// receiver's window scale is larger than assumed.
	if rp.Flags&PeerACK != 0 && rp.MaxEnd.LessThan(end) {
		if f.Flags&FlowPickedUp != 0 {
			rp.learnScale(end)
		}
		rp.MaxWin += uint32(rp.MaxEnd.Dist(end))
		rp.MaxEnd = end
	}
	if p.Opts&packet.OptSACK != 0 {
		if sp.Flags&PeerSACKSeen == 0 || sp.SACKEdge.LessThan(p.SACKEdge) {
			sp.SACKEdge = p.SACKEdge
		}
		sp.Flags |= PeerSACKSeen
	}
	if p.Flags&packet.FIN != 0 {
		sp.Flags |= PeerFIN
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
	for p.WScale < MaxShift && p.Ack.Add(seqnum.Size(uint32(p.RawWin)<<p.WScale)).LessThan(end) {
		p.WScale++
	}
	p.Win = uint32(p.RawWin) << p.WScale
	if p.MaxWin < p.Win {
		p.MaxWin = p.Win
	}
}

// Resync accepts a segment that was ahead of what we saw (a gap: packets
// that bypassed us): the bounds it overran are moved to cover it, so the
// flow's tolerance widens for this flow only.
func (f *Flow) Resync(p *packet.Parsed, d Dir) {
	sp, rp := &f.Peers[d], &f.Peers[d^1]
	end := p.Seq.Add(p.SegLen())
	if rp.MaxEnd.LessThan(end) {
		rp.MaxEnd = end
	}
	if p.Flags&packet.ACK != 0 && rp.End.LessThan(p.Ack) {
		rp.PrevEnd, rp.End = rp.End, p.Ack
	}
	if sp.End.LessThan(p.Seq) {
		sp.PrevEnd, sp.End = sp.End, p.Seq
	}
	f.Flags |= FlowGap
	f.Update(p, d)
}

// ClosingState derives the state of a synchronized flow from its FIN flags
// (Linux names, see State).
func (f *Flow) ClosingState() State {
	o, r := f.Peers[Original].Flags, f.Peers[Reply].Flags
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
