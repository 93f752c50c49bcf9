// Package policy is rstguard's pure decision engine: for one packet and the
// flow as it was before it, a verdict and a reason. It does no I/O, reads no
// clock and logs nothing; the daemon, the replay tool and the tests all run
// this same code.
//
// The TCP state machine (windows, handshake, closing, pickup) is
// conntrack's; policy reads the flow, applies the reset and SYN rules of
// RFC 9293, RFC 5961 and RFC 3360 and maps what conntrack made of a packet
// to a verdict and a reason. It writes no flow state itself. It imports
// conntrack, packet and seqnum, and nothing that imports it.
//
// Files: engine.go (the Engine, Decide), rst.go (reset rules), syn.go (SYN
// rules), segment.go (other segments: conntrack's results as reasons),
// reason.go (verdicts and reasons), stats.go (counters), config.go.
//
// It imports only conntrack, packet and seqnum (the engine stays pure: no config, nfq, replay, metrics or I/O).
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
	baseSet settings           // cfg's own settings
	ovr     []compiledOverride // cfg.Overrides, compiled
	set     settings           // the settings of the decision being made
	table   *conntrack.Table
	pending atomic.Pointer[pendingConfig]
	stats   Stats
	detail  Decision // the decision being made (owning goroutine only)
	packets uint32   // decisions since the last reap
	hold    HoldState
	tokens  uint32 // the last hold token given
}

type pendingConfig struct {
	policy Config
	table  conntrack.Config
}

// Decision is the engine's answer for one packet: the verdict, its reason,
// and what the decision looked at, for the log line and the replay record
// the drivers build from it and from the same packet.Parsed.
type Decision struct {
	Verdict Verdict
	Reason  Reason
	// State is the flow's state before the packet (StateNone: no flow).
	State conntrack.State
	// Initiator: the packet came from the side that sent the first SYN.
	Initiator bool
	// Checked is true when the packet was a reset whose sequence number
	// was checked; WinLo and WinHi then bound the sequence numbers it could
	// have had, [WinLo, WinHi).
	Checked      bool
	WinLo, WinHi seqnum.Value
	// SYNFlags are the ECN/reserved bits of the SYN a reset answered
	// (ReasonRSTAnswersReservedSYN).
	SYNFlags packet.Flags
	// TTLMismatch: the packet is a reset whose IP TTL (hop limit) differs
	// from the baseline of the side it claims to come from by more than
	// [injection] ttl_tolerance, the mark of a reset injected on the path
	// (Weaver, Sommer, Paxson, NDSS 2009). Evidence, never a verdict.
	TTLMismatch bool
	// Signals is the evidence of injection this packet gave ([injection]
	// mode "log" or "hold"): about itself (a reset's TTL, a second reset
	// at another number) or about the flow's earlier reset (its purported
	// sender went on). Signal is the first of them; Expected and Seen are
	// its values for the log line (sequence or acknowledgement numbers, or
	// TTLs).
	Signals        Signals
	Signal         Signal
	Expected, Seen uint32
	// HoldToken, when Verdict is Hold, identifies the hold (HeldOf).
	HoldToken uint32
	// Injected, when non-zero, is the token of a hold this packet
	// contradicted: the driver drops the InjectedN resets it holds under
	// it (rst_injected, already counted).
	Injected  uint32
	InjectedN uint8
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
	e := &Engine{table: conntrack.NewTable(tc)}
	e.setConfig(pc)
	return e
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
	return *e.DecideRef(p, now)
}

// DecideRef is Decide returning the engine's own copy of the decision,
// valid until the next call of the engine's (owning goroutine only): the
// daemon's per-packet path reads it in place. Copying the 44-byte decision
// out right after its byte fields were written costs a store-forwarding
// stall per copy, about a tenth of an established segment's time.
func (e *Engine) DecideRef(p *packet.Parsed, now int64) *Decision {
	if pc := e.pending.Load(); pc != nil {
		e.apply(pc, now)
	}
	e.detail = Decision{}
	r := e.decide(p, now)
	e.detail.Verdict, e.detail.Reason = r.Verdict(), r
	if e.detail.HoldToken != 0 {
		// Counted when it is released or dropped.
		e.detail.Verdict = Hold
	} else {
		e.stats.Reasons[r].Add(1)
	}
	if e.packets++; e.packets >= reapEvery {
		e.packets = 0
		e.table.Reap(now, reapBudget)
	}
	return &e.detail
}

func (e *Engine) apply(pc *pendingConfig, now int64) {
	if !e.pending.CompareAndSwap(pc, nil) {
		return // a newer one arrived; take it on the next packet
	}
	e.setConfig(pc.policy)
	e.table.Reconfigure(pc.table, now)
	e.stats.Reconfigured.Add(1)
}

func (e *Engine) setConfig(pc Config) {
	e.cfg, e.baseSet, e.ovr = pc, pc.base(), compile(&pc)
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
	var k conntrack.Key
	side := k.Set(p)
	slot, ok := e.table.Lookup(&k, now)
	if !ok {
		e.detail.State = conntrack.StateNone
		e.selectSettings(p, 0, false)
		if p.Flags&packet.RST != 0 {
			return e.unknownFlowRST()
		}
		return e.reason(e.table.Create(&k, side, p, now))
	}
	f := e.table.Flow(slot)
	d := f.DirOf(side)
	st := f.State()
	e.detail.State = st
	e.detail.Initiator = d == conntrack.Original
	e.selectSettings(p, d, true)
	if p.Flags&packet.RST != 0 {
		return e.handleRST(f, slot, d, p, st, now)
	}
	// What the sender had sent and acknowledged before p: the evidence
	// about the flow's reset, held or accepted, is what its purported
	// sender does next.
	s := f.Peer(d)
	end, ack := s.End(), s.Ack()
	var r Reason
	if p.Flags&packet.SYN != 0 {
		r = e.handleSYN(f, slot, d, p, now)
	} else {
		r = e.reason(e.table.Segment(slot, d, p, now))
	}
	if e.cfg.Injection.Mode == InjectionOff {
		return r
	}
	revived := st == conntrack.StateClosed && f.State() != conntrack.StateClosed && d == f.RSTDir()
	switch {
	case st == conntrack.StateClosed && p.Flags&(packet.SYN|packet.ACK) == packet.SYN:
		// A SYN after the reset retransmits the old one or opens a new
		// incarnation (conntrack's SYN deleted the closed flow and
		// created another, not necessarily in slot): no evidence about
		// the reset, and f may no longer be its flow.
	case revived && p.Flags&packet.SYN != 0:
		// The flow was revived by its reset's own sender (conntrack's
		// SYN and Segment), reported as contradicts reports a held
		// reset: the reset's number and what the sender sent, or its
		// last and new ACK.
		e.signal(SignalSynAckAfterRefusal, uint32(f.RSTSeq()), uint32(p.Seq))
	case revived && end.LessThan(s.End()):
		e.signal(SignalTalkedAfterReset, uint32(f.RSTSeq()), uint32(s.End()))
	case revived:
		e.signal(SignalTalkedAfterReset, uint32(ack), uint32(s.Ack()))
	case f.Holding() && r.Verdict() == Accept:
		e.contradicts(f, slot, d, st, end, ack, p.Flags)
	}
	return r
}

// handleRST judges a reset sent in direction d of slot's flow f (state st)
// against the flow as it is; an accepted reset closes it, a held one
// leaves it as it is.
func (e *Engine) handleRST(f *conntrack.Flow, slot uint32, d conntrack.Dir, p *packet.Parsed, st conntrack.State, now int64) Reason {
	r := ReasonRSTNotValidated
	if !e.set.noValidate {
		r = e.checkRST(f, d, p)
	}
	o := OutcomeDropped
	if r.Verdict() == Accept {
		o = OutcomeAccepted
	}
	mis, base := ttlMismatch(f.Peer(d), p.TTL, e.cfg.Injection.TTLTolerance)
	if mis {
		e.detail.TTLMismatch = true
		e.stats.TTLMismatch[o].Add(1)
	}
	if e.cfg.Injection.Mode != InjectionOff && o == OutcomeAccepted && r != ReasonRSTNotValidated {
		if mis {
			e.signal(SignalTTLMismatch, uint32(base), uint32(p.TTL))
		}
		if tok, _, hd, seq := f.Held(); tok != 0 && hd == d && seq != p.Seq {
			e.signal(SignalResetSeqChanged, uint32(seq), uint32(p.Seq))
		} else if st == conntrack.StateClosed && d == f.RSTDir() && p.Seq != f.RSTSeq() && now-f.RSTAt() < ResetSeqWindow {
			e.signal(SignalResetSeqChanged, uint32(f.RSTSeq()), uint32(p.Seq))
		}
		if e.holdRST(f, slot, d, p, st) {
			return r
		}
	}
	if o == OutcomeAccepted {
		e.table.Reset(slot, d, p.Seq, now)
	}
	e.stats.Resets[st][o].Add(1)
	return r
}
