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
	// TTLTolerance, the mark of a reset injected on the path (Weaver,
	// Sommer, Paxson, NDSS 2009). Counted, not acted on.
	TTLMismatch bool
}

// TTLTolerance is how far a side's TTL may drift from its baseline (a
// route change, a different path for a retransmission) before a reset
// claiming to come from it counts as a TTL mismatch.
const TTLTolerance = 4

// ttlMismatch reports whether ttl is outside the tolerance around the
// first and latest TTL of what side s sent (nothing seen: no baseline).
func ttlMismatch(s *conntrack.Peer, ttl uint8) bool {
	if s.Flags()&conntrack.PeerSeen == 0 {
		return false
	}
	first, last := s.TTL()
	near := func(b uint8) bool { return int(ttl) >= int(b)-TTLTolerance && int(ttl) <= int(b)+TTLTolerance }
	return !near(first) && !near(last)
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
	k, side := conntrack.MakeKey(p)
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
		// Judged against the flow as it is; an accepted reset closes it.
		r := ReasonRSTNotValidated
		if !e.set.noValidate {
			r = e.checkRST(f, d, p)
		}
		o := OutcomeDropped
		if r.Verdict() == Accept {
			o = OutcomeAccepted
			e.table.Reset(slot, d, p.Seq, now)
		}
		e.stats.Resets[st][o].Add(1)
		if ttlMismatch(f.Peer(d), p.TTL) {
			e.detail.TTLMismatch = true
			e.stats.TTLMismatch[o].Add(1)
		}
		return r
	}
	if p.Flags&packet.SYN != 0 {
		return e.handleSYN(f, slot, d, p, now)
	}
	return e.reason(e.table.Segment(slot, d, p, now))
}
