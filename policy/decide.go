package policy

import (
	"sync/atomic"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// Engine decides packets for one shard of flows. One goroutine owns it
// (Decide, Table); Stats and Reconfigure are safe from any goroutine.
type Engine struct {
	cfg     Config
	table   *conntrack.Table
	pending atomic.Pointer[pendingConfig]
	stats   Stats
	detail  Decision // the decision being made (owning goroutine only)
	packets uint32   // decisions since the last reap
}

type pendingConfig struct {
	policy Config
	table  conntrack.Config
}

// Amortised reaping: every reapEvery packets the engine removes up to
// reapBudget expired flows (two per packet on average, more than the one
// flow a packet can create), so the table needs no timer goroutine and the
// per-packet cost stays flat.
const (
	reapEvery  = 32
	reapBudget = 2 * reapEvery
)

// NewEngine returns an engine with an empty table.
func NewEngine(pc Config, tc conntrack.Config) *Engine {
	return &Engine{cfg: pc, table: conntrack.NewTable(tc)}
}

// Reconfigure hands the engine a new configuration. The owning goroutine
// applies it before its next packet; the flow table is kept.
func (e *Engine) Reconfigure(pc Config, tc conntrack.Config) {
	e.pending.Store(&pendingConfig{policy: pc, table: tc})
}

// Config returns the policy in force (owning goroutine only).
func (e *Engine) Config() Config { return e.cfg }

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Table returns the engine's flow table (owning goroutine only, except its
// Stats).
func (e *Engine) Table() *conntrack.Table { return e.table }

// Decide gives the verdict for p at time now (nanoseconds on any monotonic
// clock; replay uses capture time), and updates p's flow if p is accepted.
// The decision uses the flow as it was before p (SPEC section 2, steps 4-5).
// The drivers decode the packet into a packet.Parsed they own (packet.Decode)
// and build their log lines and replay records from it and the Decision.
func (e *Engine) Decide(p *packet.Parsed, now int64) Decision {
	if pc := e.pending.Load(); pc != nil {
		e.apply(pc, now)
	}
	e.detail = Decision{}
	r := e.decide(p, now)
	e.stats.Reasons[r].Add(1)
	if e.packets++; e.packets >= reapEvery {
		e.packets = 0
		e.table.Reap(now, reapBudget)
	}
	e.detail.Verdict, e.detail.Reason = r.Verdict(), r
	return e.detail
}

func (e *Engine) apply(pc *pendingConfig, now int64) {
	if !e.pending.CompareAndSwap(pc, nil) {
		return // a newer one arrived; take it on the next packet
	}
	e.cfg = pc.policy
	e.table.Reconfigure(pc.table, now)
	e.stats.Reconfigured.Add(1)
}

func (e *Engine) decide(p *packet.Parsed, now int64) Reason {
	switch p.Kind {
	case packet.KindTCP:
	case packet.KindNotTCP:
		return ReasonNotTCP
	case packet.KindFragment:
		return ReasonFragment
	case packet.KindTruncated:
		return ReasonTruncated
	default:
		// SPEC 5: truncated header, data offset below 5 or past the
		// packet, option lengths that overrun.
		return ReasonMalformed
	}
	if p.Flags&packet.SYN != 0 {
		e.countFlaggedSYN(p.Flags)
	}
	k, side := conntrack.MakeKey(p)
	slot, ok := e.table.Lookup(&k, now)
	if !ok {
		e.detail.State = conntrack.StateNone
		return e.decideNew(p, &k, side, now)
	}
	f := e.table.Flow(slot)
	d := f.DirOf(side)
	st := f.State
	e.detail.State = st
	e.detail.Initiator = d == conntrack.Original
	if p.Flags&packet.RST != 0 {
		r := e.checkRST(f, d, p)
		if r.Verdict() == Accept {
			e.stats.Resets[st][OutcomeAccepted].Add(1)
			f.RSTSeq = p.Seq
			e.table.Touch(slot, conntrack.StateClosed, now)
		} else {
			e.stats.Resets[st][OutcomeDropped].Add(1)
		}
		return r
	}
	if p.Flags&packet.SYN != 0 {
		return e.handleSYN(f, slot, d, p, now)
	}
	return e.handleSegment(f, slot, d, p, now)
}

// countFlaggedSYN counts SYNs and SYN-ACKs that carry ECN or reserved bits.
// RFC 3360 (BCP 60) 2.1/3: a middlebox must not reset or drop a SYN because
// of these bits; rstguard never does, it only counts them.
func (e *Engine) countFlaggedSYN(fl packet.Flags) {
	if fl&packet.ECNReserved == 0 {
		return
	}
	if fl&packet.ECE != 0 {
		e.stats.FlaggedSYNs[SYNFlagECE].Add(1)
	}
	if fl&packet.CWR != 0 {
		e.stats.FlaggedSYNs[SYNFlagCWR].Add(1)
	}
	if fl&packet.AE != 0 {
		e.stats.FlaggedSYNs[SYNFlagAE].Add(1)
	}
	if fl&packet.Reserved != 0 {
		e.stats.FlaggedSYNs[SYNFlagReserved].Add(1)
	}
}

// decideNew handles a packet of no known flow.
//
//   - RST: RFC 9293 3.10.7.1/3.10.7.2: a host with no connection (CLOSED or
//     LISTEN) ignores a reset, so passing it harms nothing; the operator may
//     choose to drop it (unknown_flow_rst = "drop").
//   - SYN: a new flow in syn_sent, whatever its ECN or reserved bits
//     (RFC 3360), with any data it carries (TFO, RFC 7413).
//   - SYN-ACK: picked up in syn_recv (we restarted during a handshake).
//   - anything else with ACK: mid-stream pickup into established (SPEC 3).
func (e *Engine) decideNew(p *packet.Parsed, k *conntrack.Key, side conntrack.Side, now int64) Reason {
	if p.Flags&packet.RST != 0 {
		if e.cfg.DropUnknownFlowRST {
			e.stats.Resets[conntrack.StateNone][OutcomeDropped].Add(1)
			return ReasonRSTUnknownFlow
		}
		e.stats.Resets[conntrack.StateNone][OutcomeAccepted].Add(1)
		return ReasonUnknownFlow
	}
	syn := p.Flags&packet.SYN != 0
	ack := p.Flags&packet.ACK != 0
	var st conntrack.State
	switch {
	case syn && !ack:
		st = conntrack.StateSynSent
	case !e.table.Config().Pickup || !ack:
		// No pickup, or a segment no TCP sends without ACK (null/FIN
		// scans): not ours to judge, the endpoint answers it.
		return ReasonUnknownFlow
	case syn:
		st = conntrack.StateSynRecv
	default:
		st = conntrack.StateEstablished
	}
	slot, ok := e.table.Insert(k, st, now)
	if !ok {
		return ReasonUntrackedTableFull
	}
	f := e.table.Flow(slot)
	if syn && !ack {
		f.InitSide = side
		if fl := p.Flags & packet.ECNReserved; fl != 0 {
			f.Flags |= conntrack.FlowSYNFlagged
			f.SYNFlags = fl
		}
		initOptions(f, conntrack.Original, p)
		f.Update(p, conntrack.Original)
		return ReasonTracked
	}
	// Picked up: the sender of a SYN-ACK is the responder; otherwise we
	// call the first side we see the initiator. The window scale of a side
	// whose SYN we did not see is unknown; Update learns it.
	f.Flags |= conntrack.FlowPickedUp
	d := conntrack.Original
	if syn {
		f.InitSide = side ^ 1
		d = conntrack.Reply
		initOptions(f, d, p)
		// The SYN-ACK tells us the initiator's SYN: it acknowledges ISN+1
		// (or more, with TFO data).
		ip := &f.Peers[conntrack.Original]
		ip.Flags |= conntrack.PeerSYN
		ip.ISN, ip.End, ip.PrevEnd = p.Ack-1, p.Ack, p.Ack-1
	} else {
		f.InitSide = side
		sp := &f.Peers[d]
		sp.ISN, sp.End, sp.PrevEnd = p.Seq, p.Seq, p.Seq
	}
	f.Update(p, d)
	e.table.SetOneWay(slot, true)
	if !syn {
		e.table.Touch(slot, f.ClosingState(), now)
	}
	return ReasonPickup
}

// initOptions records the SYN options of side d.
func initOptions(f *conntrack.Flow, d conntrack.Dir, p *packet.Parsed) {
	pe := &f.Peers[d]
	if p.Opts&packet.OptWScale != 0 {
		pe.Flags |= conntrack.PeerWScaleOpt
		pe.WScale = p.WScale
	}
	if p.Opts&packet.OptSACKPerm != 0 {
		pe.Flags |= conntrack.PeerSACKPerm
	}
	if p.Opts&packet.OptTimestamp != 0 {
		pe.Flags |= conntrack.PeerTimestamps
	}
}

// handleSYN handles a SYN or SYN-ACK of a known flow.
func (e *Engine) handleSYN(f *conntrack.Flow, slot uint32, d conntrack.Dir, p *packet.Parsed, now int64) Reason {
	ack := p.Flags&packet.ACK != 0
	st := f.State
	init, resp := &f.Peers[conntrack.Original], &f.Peers[conntrack.Reply]
	switch {
	case st == conntrack.StateTimeWait || st == conntrack.StateClosed:
		// RFC 9293 3.10.7.4 / RFC 1122 4.2.2.13: a SYN may reopen a
		// connection in TIME-WAIT; after a reset the old incarnation is
		// gone. A new sequence number opens a new incarnation; the old
		// SYN retransmitted is just tracked.
		if ack || (f.Peers[d].Flags&conntrack.PeerSYN != 0 && p.Seq == f.Peers[d].ISN) {
			e.table.Touch(slot, st, now)
			return ReasonTracked
		}
		side := conntrack.Side(d) ^ f.InitSide
		key := f.Key
		e.table.Delete(slot)
		return e.decideNew(p, &key, side, now)

	case st == conntrack.StateSynSent && d == conntrack.Original && !ack:
		// A retransmitted SYN, or the initiator reinitialised with a new
		// ISN (RFC 9293 3.10.7.3; Linux re-inits the sender data when the
		// new SYN's end is after the old one).
		if p.Seq != init.ISN {
			*init = conntrack.Peer{}
			initOptions(f, d, p)
			f.SYNFlags = p.Flags & packet.ECNReserved
			f.Flags &^= conntrack.FlowSYNFlagged
			if f.SYNFlags != 0 {
				f.Flags |= conntrack.FlowSYNFlagged
			}
		}
		f.Update(p, d)
		e.table.Touch(slot, st, now)
		return ReasonTracked

	case st == conntrack.StateSynSent && d == conntrack.Reply:
		if !ack {
			// Simultaneous open (RFC 9293 3.5, figure 8): tracked.
			resp.Flags = 0
			initOptions(f, d, p)
			f.Flags |= conntrack.FlowSimOpen
			e.scale(f)
			f.Update(p, d)
			e.table.Touch(slot, conntrack.StateSynRecv, now)
			return ReasonTracked
		}
		// SYN-ACK: it must acknowledge the initiator's SYN and any data
		// on it: ISN < SEG.ACK =< end (RFC 9293 3.10.7.3; RFC 7413 lets
		// the server acknowledge only the SYN).
		if !p.Ack.InRange(init.ISN.Add(1), init.End.Add(1)) {
			return e.outOfWindow()
		}
		resp.Flags = 0
		initOptions(f, d, p)
		e.scale(f)
		f.Update(p, d)
		// The initiator's SYN window now bounds what the responder may
		// send: from the responder's ISN+1.
		init.MaxEnd = resp.End.Add(seqnum.Size(init.MaxWin))
		e.table.Touch(slot, conntrack.StateSynRecv, now)
		return ReasonTracked

	case st == conntrack.StateSynRecv:
		// Retransmitted SYN or SYN-ACK, or the second half of a
		// simultaneous open (a SYN-ACK from the initiator).
		if ack && f.Flags&conntrack.FlowSimOpen != 0 {
			f.Update(p, d)
			e.advanceHandshake(f, slot, now)
			return ReasonTracked
		}
		e.table.Touch(slot, st, now)
		return ReasonTracked

	default:
		// RFC 9293 3.10.7.4 (fourth check) and RFC 5961 4.2: a SYN in a
		// synchronized state is answered by the endpoint with a challenge
		// ACK; it is passed untouched and counted, and it changes nothing.
		//
		// rst_mode = "exact" protects endpoints that lack RFC 5961: an
		// RFC 793 stack resets a synchronized connection on a SYN inside
		// its window (RFC 793 p. 71, "If the SYN is in the window it is an
		// error, send a reset"), the blind SYN attack of RFC 5961 4.1, so
		// such a SYN is dropped. One outside the window passes: the
		// endpoint answers it with an ACK (a challenge ACK), which is what
		// lets a peer that rebooted and lost the connection recover: its
		// reset in answer to that ACK carries the exact sequence number and
		// closes the flow, and its next SYN opens a new incarnation. A
		// rebooted peer whose new ISN happens to fall inside the old window
		// recovers the same way once the surviving endpoint sends anything
		// (data, a keepalive): the peer answers with such a reset.
		if e.cfg.RSTMode == RSTModeExact && f.RecvWindow(d^1).Contains(p.Seq) {
			return ReasonSYNInWindow
		}
		e.table.Touch(slot, st, now)
		return ReasonSYNSynchronized
	}
}

// scale applies RFC 7323 2.2: window scaling is in effect only when both
// SYNs carried the option; otherwise both shifts are zero.
func (e *Engine) scale(f *conntrack.Flow) {
	i, r := &f.Peers[conntrack.Original], &f.Peers[conntrack.Reply]
	if i.Flags&conntrack.PeerWScaleOpt == 0 || r.Flags&conntrack.PeerWScaleOpt == 0 {
		i.WScale, r.WScale = 0, 0
	}
}

// advanceHandshake moves a syn_recv flow to established once both sides
// have acknowledged each other's SYN.
func (e *Engine) advanceHandshake(f *conntrack.Flow, slot uint32, now int64) {
	st := f.State
	if st == conntrack.StateSynRecv &&
		f.Peers[conntrack.Original].Flags&conntrack.PeerAckedSYN != 0 &&
		f.Peers[conntrack.Reply].Flags&conntrack.PeerAckedSYN != 0 {
		st = conntrack.StateEstablished
	}
	if st.Synchronized() {
		st = f.ClosingState()
	}
	e.table.Touch(slot, st, now)
}

func (e *Engine) outOfWindow() Reason {
	if e.cfg.DropOutOfWindow {
		return ReasonOutOfWindow
	}
	return ReasonOutOfWindowPassed
}

// handleSegment handles a segment without SYN or RST.
//
// SPEC 5: segments outside the window that are not resets are passed by
// default (the endpoint discards them itself, RFC 9293 3.10.7.4 first
// check) but never move the tracked windows; drop_out_of_window drops them.
// A segment ahead of the window whose other number is plausible marks a
// gap in what we saw (packets that bypassed the queue): the flow is
// resynchronised and counted, so a missed burst never makes a later
// legitimate reset look forged.
func (e *Engine) handleSegment(f *conntrack.Flow, slot uint32, d conntrack.Dir, p *packet.Parsed, now int64) Reason {
	st := f.State
	if st == conntrack.StateClosed {
		// The connection was reset; stragglers pass and change nothing.
		// But new data in the window after the reset proves the endpoint
		// did not honour it (a RFC 5961 host answers an inexact reset with
		// a challenge ACK and goes on): the flow is revived, so that its
		// later resets are judged against its real windows, not against
		// the ones frozen at the reset.
		ok, _ := f.InWindow(p, d)
		if ok && p.PayloadLen > 0 && f.Peers[d].End.LessThan(p.Seq.Add(p.SegLen())) &&
			f.Peers[d].Flags&f.Peers[d^1].Flags&conntrack.PeerACK != 0 {
			f.Update(p, d)
			e.table.Touch(slot, f.ClosingState(), now)
			return ReasonTracked
		}
		e.table.Touch(slot, st, now)
		return ReasonTracked
	}
	if st == conntrack.StateSynSent {
		if d == conntrack.Reply {
			// The responder has not sent its SYN: nothing it sends
			// before that is in any window (RFC 9293 3.10.7.3).
			return e.outOfWindow()
		}
		if p.Flags&packet.ACK == 0 {
			e.table.Touch(slot, st, now)
			return ReasonTracked
		}
	}
	ok, ahead := f.InWindow(p, d)
	r := ReasonTracked
	switch {
	case ok:
		f.Update(p, d)
	case ahead && st.Synchronized():
		f.Resync(p, d)
		e.table.Stats().Gaps.Add(1)
		r = ReasonGapResync
	default:
		return e.outOfWindow()
	}
	if f.Flags&conntrack.FlowPickedUp != 0 {
		e.table.SetOneWay(slot, f.Peers[d^1].Flags&conntrack.PeerSeen == 0)
	}
	e.advanceHandshake(f, slot, now)
	return r
}

// checkRST decides a reset sent in direction d of flow f (SPEC section 4).
func (e *Engine) checkRST(f *conntrack.Flow, d conntrack.Dir, p *packet.Parsed) Reason {
	s, r := &f.Peers[d], &f.Peers[d^1]
	switch st := f.State; {
	case st == conntrack.StateSynSent && d == conntrack.Reply:
		// RFC 9293 3.10.7.3 (SYN-SENT, first check): "If the ACK bit is
		// set: if SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset
		// (unless the RST bit is set, if so drop the segment)". Second
		// check: "If the ACK was acceptable then signal to the user
		// 'error: connection reset', drop the segment ... Otherwise (no
		// ACK), drop the segment."
		e.detail.Checked = true
		e.detail.WinLo, e.detail.WinHi = r.ISN.Add(1), r.End.Add(1)
		if p.Flags&packet.ACK == 0 {
			return ReasonRSTSynSentNoACK
		}
		if !p.Ack.InRange(r.ISN.Add(1), r.End.Add(1)) {
			return ReasonRSTSynSentBadACK
		}
		if f.Flags&conntrack.FlowSYNFlagged != 0 {
			// RFC 3360 2: a reset answering a SYN that used ECN or
			// reserved bits may come from a middlebox that rejects them.
			e.detail.SYNFlags = f.SYNFlags
			return ReasonRSTAnswersReservedSYN
		}
		return ReasonRSTValid

	case st == conntrack.StateSynSent:
		// The initiator abandons its own SYN: its reset carries its
		// SND.NXT (RFC 9293 3.10.7.4 applied at the responder's LISTEN is
		// moot; we accept only the initiator's exact next sequence).
		e.detail.Checked = true
		e.detail.WinLo, e.detail.WinHi = s.End, s.End.Add(1)
		if p.Seq == s.End {
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
		e.detail.Checked = true
		e.detail.WinLo, e.detail.WinHi = w.Lo, w.Hi
		if w.Contains(p.Seq) || p.Seq == s.End {
			return ReasonRSTValid
		}
		if d == conntrack.Reply && p.Flags&packet.ACK != 0 && p.Ack.InRange(r.ISN.Add(1), r.End.Add(1)) {
			return ReasonRSTValid
		}
		return ReasonRSTOutOfWindow

	case st == conntrack.StateClosed:
		// SPEC 4: a retransmission of the reset we accepted (or the answer
		// to a straggler, which carries the same number) is valid.
		// Deviation, to keep legitimate teardowns out of the drop
		// counters: when both sides were synchronized, a reset at one of
		// the exact positions a RFC 5961 host accepts (the sender's
		// SND.NXT, the receiver's RCV.NXT...) is valid too. Linux sends
		// such second resets when both ends abort at once (seen on
		// iperf3's control connection); a blind forger cannot hit them.
		e.detail.Checked = true
		e.detail.WinLo, e.detail.WinHi = f.RSTSeq, f.RSTSeq.Add(1)
		if p.Seq == f.RSTSeq {
			return ReasonRSTValid
		}
		if s.Flags&r.Flags&conntrack.PeerACK != 0 && s.Flags&r.Flags&conntrack.PeerSYN != 0 && exactRST(f, d, p.Seq) {
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
	e.detail.Checked = true
	e.detail.WinLo, e.detail.WinHi = w.Lo, w.Hi
	if !w.Contains(p.Seq) && p.Seq != s.End && !(s.Flags&conntrack.PeerFIN != 0 && p.Seq == w.Lo-1) {
		return ReasonRSTOutOfWindow
	}
	if e.cfg.RSTMode == RSTModeExact && !exactRST(f, d, p.Seq) {
		return ReasonRSTNotExact
	}
	return ReasonRSTValid
}

// exactRST reports whether seq is a position where a RFC 5961 host accepts
// a reset in direction d (RFC 5961 3.2: "If the RST bit is set and the
// sequence number exactly matches the next expected sequence number
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
func exactRST(f *conntrack.Flow, d conntrack.Dir, seq seqnum.Value) bool {
	s, r := &f.Peers[d], &f.Peers[d^1]
	if seq == s.End || seq == s.PrevEnd {
		return true
	}
	if r.Flags&conntrack.PeerACK != 0 && seq == r.Ack {
		return true
	}
	if s.Flags&conntrack.PeerFIN != 0 && (seq == s.End-1 || (r.Flags&conntrack.PeerACK != 0 && seq == r.Ack-1)) {
		return true
	}
	return r.Flags&conntrack.PeerSACKSeen != 0 && seq == r.SACKEdge
}
