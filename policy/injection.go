package policy

import (
	"strconv"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// Resets injected by an observer on the path ([injection]).
//
// An on-path observer sees the sequence numbers and forges resets at the
// exact position, so no window check, RFC 5961's included, stops them.
// What gives them away is what the endpoints do (Weaver, Sommer, Paxson,
// "Detecting Forged TCP Reset Packets", NDSS 2009, section 4; Suricata's
// suspected_rst_inject in StreamTcpPacketCheckPostRst; Zeek's
// data_after_reset):
//
//   - the purported sender goes on after "its" reset: new data or an ACK
//     beyond its last one (a host that reset sends neither, RFC 9293
//     3.10.7.4: the connection is gone); in SYN-SENT, the responder's
//     genuine SYN-ACK after a refusal it never sent;
//   - the reset's IP TTL (hop limit) differs from the sender's other
//     packets: the injector is a different number of hops away;
//   - a second reset of the flow at another sequence number shortly after
//     (injectors send several, to be sure one lands).
//
// In mode "log" the engine checks every accepted reset against these after
// the fact and reports what it found (Decision.Signals). In mode "hold" a
// reset that passed every other check is held (VerdictHold) while its
// flow goes on unchanged: if the purported sender contradicts it, the
// reset is dropped (ReasonRSTInjected, Decision.Injected); otherwise the
// driver lets it through when the hold ends (Engine.Release). A TTL
// mismatch alone never drops a reset (routes change; anycast and load
// balancers put several hosts behind one address): it is evidence only.

// Signal is one kind of evidence that a reset was injected.
type Signal uint8

const (
	// SignalTalkedAfterReset: the purported sender of an accepted (or
	// held) reset sent new data or an advancing ACK afterwards.
	SignalTalkedAfterReset Signal = iota
	// SignalTTLMismatch: the reset's TTL is more than [injection]
	// ttl_tolerance from the claimed sender's first and latest packets.
	SignalTTLMismatch
	// SignalResetSeqChanged: a second reset from the same side at another
	// sequence number within ResetSeqWindow of the first.
	SignalResetSeqChanged
	// SignalSynAckAfterRefusal: in SYN-SENT, the responder's SYN-ACK
	// answering the SYN after a refusal (RST/ACK) was accepted or held.
	SignalSynAckAfterRefusal

	NumSignals
)

var signalNames = [NumSignals]string{
	SignalTalkedAfterReset:   "talked_after_reset",
	SignalTTLMismatch:        "ttl_mismatch",
	SignalResetSeqChanged:    "reset_seq_changed",
	SignalSynAckAfterRefusal: "synack_after_refusal",
}

func (s Signal) String() string {
	if s < NumSignals {
		return signalNames[s]
	}
	return "signal(" + strconv.Itoa(int(s)) + ")"
}

// Signals is a set of signals.
type Signals uint8

// Has reports whether s is in the set.
func (ss Signals) Has(s Signal) bool { return ss&(1<<s) != 0 }

// ResetSeqWindow is how soon after a flow's reset another reset at a
// different sequence number from the same side counts as evidence (2 s, in
// capture or monotonic nanoseconds).
const ResetSeqWindow = int64(2e9)

// signal records evidence s in the decision (the first one found names
// the expected and seen values of the log line) and counts it.
func (e *Engine) signal(s Signal, expected, seen uint32) {
	if e.detail.Signals == 0 {
		e.detail.Signal, e.detail.Expected, e.detail.Seen = s, expected, seen
	}
	e.detail.Signals |= 1 << s
	e.stats.Injection[s].Add(1)
}

// ttlMismatch reports whether ttl is outside tol around the first and the
// latest TTL of what side s sent (nothing seen: no baseline), and the
// baseline it is compared with.
func ttlMismatch(s *conntrack.Peer, ttl, tol uint8) (bool, uint8) {
	first, last := s.TTL()
	if s.Flags()&conntrack.PeerSeen == 0 {
		return false, first
	}
	near := func(b uint8) bool { return int(ttl) >= int(b)-int(tol) && int(ttl) <= int(b)+int(tol) }
	return !near(first) && !near(last), last
}

// HoldState tells the engine whether its driver can hold another packet.
type HoldState uint8

const (
	// HoldRoom: the driver has room; valid resets are held in mode "hold".
	HoldRoom HoldState = iota
	// HoldFull: the driver's held packets are at [injection] max_held:
	// valid resets are accepted at once and counted in Stats.HoldFull.
	HoldFull
	// HoldNever: the driver does not hold (monitor mode, drain).
	HoldNever
)

// SetHold tells the engine whether the driver can hold a packet now
// (owning goroutine only).
func (e *Engine) SetHold(s HoldState) { e.hold = s }

// Held is what a driver keeps of a held reset to release it.
type Held struct {
	Key    conntrack.Key
	Token  uint32
	Reason Reason // the reason it was accepted with, given at release
}

// HeldOf returns the Held of p, whose decision d is VerdictHold.
func HeldOf(p *packet.Parsed, d *Decision) Held {
	k, _ := conntrack.MakeKey(p)
	return Held{Key: k, Token: d.HoldToken, Reason: d.Reason}
}

// holdRST decides whether the valid reset p, from direction d of slot's
// flow f (state st), is held; if so it records the hold in the flow and
// the decision and returns true.
func (e *Engine) holdRST(f *conntrack.Flow, slot uint32, d conntrack.Dir, p *packet.Parsed, st conntrack.State) bool {
	if e.cfg.Injection.Mode != InjectionHold || st == conntrack.StateClosed || e.hold == HoldNever {
		return false
	}
	tok, _, hd, _ := f.Held()
	if tok != 0 && hd != d {
		// The other side resets too while one side's reset is held: it is
		// judged at once; the held ones are let through when they end.
		e.table.Unhold(slot)
		return false
	}
	if e.hold == HoldFull {
		e.stats.HoldFull.Add(1)
		return false
	}
	if tok == 0 {
		e.tokens++
		if e.tokens == 0 {
			e.tokens = 1
		}
		tok = e.tokens
	}
	e.table.Hold(slot, d, p.Seq, tok)
	e.detail.HoldToken = tok
	return true
}

// contradicts checks a packet accepted in direction d of slot's flow (its
// flags fl) against the flow's held resets: if d is the side they claim to
// come from and the packet continued its sequence space (new data or an
// advancing ACK: before are d's end and ack before the packet) or, in
// SYN-SENT, is the responder's SYN-ACK, the resets were not sent by it.
// They are dropped (Decision.Injected) and the hold ends. The initiator's
// SYN (no ACK) continues nothing: it retransmits the SYN or, with a new
// ISN, replaces the sequence space the reset was in (RFC 9293 3.10.7.3;
// Linux re-initialises), so a larger new ISN is no evidence.
func (e *Engine) contradicts(f *conntrack.Flow, slot uint32, d conntrack.Dir, st conntrack.State, endBefore, ackBefore seqnum.Value, fl packet.Flags) {
	tok, n, hd, seq := f.Held()
	if tok == 0 || hd != d {
		return
	}
	s := f.Peer(d)
	syn := fl&packet.SYN != 0
	switch {
	case syn && fl&packet.ACK == 0 && d == conntrack.Original:
		return
	case syn && st == conntrack.StateSynSent && f.State() != conntrack.StateSynSent:
		e.signal(SignalSynAckAfterRefusal, uint32(seq), uint32(s.ISN()))
	case endBefore.LessThan(s.End()):
		e.signal(SignalTalkedAfterReset, uint32(seq), uint32(s.End()))
	case s.Flags()&conntrack.PeerACK != 0 && ackBefore.LessThan(s.Ack()):
		e.signal(SignalTalkedAfterReset, uint32(ackBefore), uint32(s.Ack()))
	default:
		return
	}
	e.table.Unhold(slot)
	e.detail.Injected, e.detail.InjectedN = tok, n
	e.stats.Reasons[ReasonRSTInjected].Add(uint64(n))
	e.stats.Resets[st][OutcomeDropped].Add(uint64(n))
	e.stats.Held[OutcomeDropped].Add(uint64(n))
}

// Release gives the verdict of a held reset whose hold ended without its
// purported sender contradicting it: accepted, with the reason it was held
// with. The first release of a hold closes the flow at the first held
// reset (as an accepted reset does); a flow that has gone since (evicted,
// reaped, flushed) closes nothing. A reset dropped as rst_injected is
// never released: the driver dropped it when Decision.Injected named its
// token.
func (e *Engine) Release(h *Held, now int64) Decision {
	d := Decision{Verdict: Accept, Reason: h.Reason, State: conntrack.StateNone}
	if slot, ok := e.table.Lookup(&h.Key, now); ok {
		f := e.table.Flow(slot)
		d.State = f.State()
		if tok, _, dir, seq := f.Held(); tok == h.Token {
			d.Initiator = dir == conntrack.Original
			e.table.Reset(slot, dir, seq, now)
		}
	}
	e.stats.Reasons[h.Reason].Add(1)
	e.stats.Resets[d.State][OutcomeAccepted].Add(1)
	e.stats.Held[OutcomeAccepted].Add(1)
	return d
}

// AppendFields appends the evidence fields of a replay or event-log line,
// `,"signals":[...],"expected":n,"seen":n` (expected and seen: the first
// signal's values), or nothing for an empty set.
func (ss Signals) AppendFields(b []byte, expected, seen uint32) []byte {
	if ss == 0 {
		return b
	}
	b = append(b, `,"signals":`...)
	b = ss.AppendJSON(b)
	b = append(b, `,"expected":`...)
	b = strconv.AppendUint(b, uint64(expected), 10)
	b = append(b, `,"seen":`...)
	return strconv.AppendUint(b, uint64(seen), 10)
}

// AppendJSON appends ss as a JSON array of signal names in Signal order
// (`["talked_after_reset","ttl_mismatch"]`): the "signals" field of the
// replay and event-log lines.
func (ss Signals) AppendJSON(b []byte) []byte {
	b = append(b, '[')
	first := true
	for s := Signal(0); s < NumSignals; s++ {
		if !ss.Has(s) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, signalNames[s]...)
		b = append(b, '"')
	}
	return append(b, ']')
}
