package policy

import (
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// unknownFlowRST handles a reset of no known flow. RFC 9293
// 3.10.7.1/3.10.7.2: a host with no connection (CLOSED or LISTEN) ignores
// a reset, so passing it harms nothing; the operator may choose to drop it
// (unknown_flow_rst = "drop").
func (e *Engine) unknownFlowRST() Reason {
	if e.set.dropUnknownRST {
		e.stats.Resets[conntrack.StateNone][OutcomeDropped].Add(1)
		return ReasonRSTUnknownFlow
	}
	e.stats.Resets[conntrack.StateNone][OutcomeAccepted].Add(1)
	return ReasonUnknownFlow
}

// checkWindow records in the decision the sequence numbers [lo, hi) a reset
// was checked against.
func (e *Engine) checkWindow(lo, hi seqnum.Value) {
	e.detail.Checked = true
	e.detail.WinLo, e.detail.WinHi = lo, hi
}

// checkRST decides a reset sent in direction d of flow f (SPEC section 4).
func (e *Engine) checkRST(f *conntrack.Flow, d conntrack.Dir, p *packet.Parsed) Reason {
	s, r := f.Peer(d), f.Peer(d^1)
	switch st := f.State(); {
	case st == conntrack.StateSynSent && d == conntrack.Reply:
		// RFC 9293 3.10.7.3 (SYN-SENT, first check): "If the ACK bit is
		// set: if SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset
		// (unless the RST bit is set, if so drop the segment)". Second
		// check: "If the ACK was acceptable then signal to the user
		// 'error: connection reset', drop the segment ... Otherwise (no
		// ACK), drop the segment."
		e.checkWindow(r.ISN().Add(1), r.End().Add(1))
		if p.Flags&packet.ACK == 0 {
			return ReasonRSTSynSentNoACK
		}
		if !p.Ack.InRange(r.ISN().Add(1), r.End().Add(1)) {
			return ReasonRSTSynSentBadACK
		}
		if f.Flags()&conntrack.FlowSYNFlagged != 0 {
			// RFC 3360 2: a reset answering a SYN that used ECN or
			// reserved bits may come from a middlebox that rejects them.
			e.detail.SYNFlags = f.SYNFlags()
			return ReasonRSTAnswersReservedSYN
		}
		return ReasonRSTValid

	case st == conntrack.StateSynSent:
		// The initiator abandons its own SYN: its reset carries its
		// SND.NXT (RFC 9293 3.10.7.4 applied at the responder's LISTEN is
		// moot; we accept only the initiator's exact next sequence).
		e.checkWindow(s.End(), s.End().Add(1))
		if p.Seq == s.End() {
			return ReasonRSTValid
		}
		return ReasonRSTOutOfWindow

	case st == conntrack.StateSynRecv:
		// RFC 9293 3.10.7.4 first check in SYN-RECEIVED: "If the RST bit
		// is set ... the sequence number is in the window". R's window is
		// the one announced by its SYN or SYN-ACK. From the responder, an
		// ACK that acknowledges the initiator's SYN is also accepted: the
		// initiator may still be in SYN-SENT, where that is its test
		// (3.10.7.3).
		w := f.RecvWindow(d ^ 1)
		e.checkWindow(w.Lo, w.Hi)
		if w.Contains(p.Seq) || p.Seq == s.End() {
			return ReasonRSTValid
		}
		if d == conntrack.Reply && p.Flags&packet.ACK != 0 && p.Ack.InRange(r.ISN().Add(1), r.End().Add(1)) {
			return ReasonRSTValid
		}
		return ReasonRSTOutOfWindow

	case st == conntrack.StateClosed:
		// SPEC 4: a retransmission of the reset we accepted (or the answer
		// to a straggler, which carries the same number), from the same
		// side, is valid.
		// Deviation, to keep legitimate teardowns out of the drop
		// counters: when both sides were synchronized, a reset at one of
		// the exact positions a RFC 5961 host accepts (the sender's
		// SND.NXT, the receiver's RCV.NXT...) is valid too. Linux sends
		// such second resets when both ends abort at once (seen on
		// iperf3's control connection); a blind forger cannot hit them.
		e.checkWindow(f.RSTSeq(), f.RSTSeq().Add(1))
		if p.Seq == f.RSTSeq() && d == f.RSTDir() {
			return ReasonRSTValid
		}
		// The sender's own next sequence number (its SND.NXT, the
		// position its peer's RCV.NXT waits at, RFC 9293 3.10.7.4), judged
		// with that side's numbers: after a refusal accepted in SYN-SENT
		// this is the initiator's reset at ISN+1.
		if s.Flags()&conntrack.PeerSeen != 0 && p.Seq == s.End() {
			return ReasonRSTValid
		}
		both := s.Flags() & r.Flags()
		if both&conntrack.PeerACK != 0 && both&conntrack.PeerSYN != 0 && exactRST(s, r, p.Seq) {
			return ReasonRSTValid
		}
		return ReasonRSTOutOfWindow
	}

	// Synchronized states: RFC 9293 3.10.7.4, first check: "In all states
	// except SYN-SENT, all reset (RST) segments are validated by checking
	// their SEQ fields. A reset is valid if its sequence number is in the
	// window." The ACK field and timestamps do not matter (RFC 7323 5.2).
	//
	// Linux (tcp_reset_check) also accepts RCV.NXT-1 once the receiver has
	// received a FIN (CLOSE-WAIT, LAST-ACK, CLOSING): a reset from a peer
	// that numbered it before its FIN. rstguard passes what the host
	// accepts.
	w := f.RecvWindow(d ^ 1)
	e.checkWindow(w.Lo, w.Hi)
	if !w.Contains(p.Seq) && p.Seq != s.End() && !(s.Flags()&conntrack.PeerFIN != 0 && p.Seq == w.Lo-1) {
		return ReasonRSTOutOfWindow
	}
	if e.set.rstMode == RSTModeExact && !exactRST(s, r, p.Seq) {
		return ReasonRSTNotExact
	}
	return ReasonRSTValid
}

// exactRST reports whether seq is a position where a RFC 5961 host accepts
// a reset from sender s to receiver r (RFC 5961 3.2: "If the RST bit is set
// and the sequence number exactly matches the next expected sequence number
// (RCV.NXT), then TCP MUST reset the connection"), as Linux
// tcp_validate_incoming and tcp_reset_check apply it:
//
//   - RCV.NXT of the receiver, estimated by the sender's End (everything
//     sent has arrived) or by the receiver's last ACK (nothing in flight);
//   - RCV.NXT - 1 once the receiver has received a FIN (CLOSE-WAIT,
//     LAST-ACK, CLOSING: tcp_reset_check);
//   - the right edge of the highest SACK block the receiver has sent
//     (tcp_validate_incoming's max_sack);
//   - the end of the sender's previous segment (a reset that closes a data
//     train the receiver has acknowledged only up to there).
func exactRST(s, r *conntrack.Peer, seq seqnum.Value) bool {
	if seq == s.End() || seq == s.PrevEnd() {
		return true
	}
	acked := r.Flags()&conntrack.PeerACK != 0
	if acked && seq == r.Ack() {
		return true
	}
	if s.Flags()&conntrack.PeerFIN != 0 && (seq == s.End()-1 || (acked && seq == r.Ack()-1)) {
		return true
	}
	return r.Flags()&conntrack.PeerSACKSeen != 0 && seq == r.SACKEdge()
}
