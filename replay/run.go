package replay

import (
	"errors"
	"io"
	"net/netip"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
)

// Frame is the verdict on one frame of a capture, with what the output of
// SPEC section 8 shows about it.
type Frame struct {
	Index   int       // 1-based position in the capture
	Time    time.Time // capture timestamp
	Verdict policy.Verdict
	Reason  policy.Reason
	// State is the flow's state before the packet (StateNone for no flow
	// and for anything that is not TCP).
	State conntrack.State
	// After is the flow's state after the packet: StateNone when no flow
	// is tracked for it (not TCP, untracked, or the packet was a reset
	// for a flow never seen). It is not part of the JSON lines; the flow
	// summary (FlowSummary.State) reports it.
	After conntrack.State

	// IP reports that the frame carries an IPv4 or IPv6 packet whose
	// addresses could be read: Src and Dst are valid (ports are 0 unless
	// TCP).
	IP bool
	// TCP reports a decoded TCP segment: the ports, Flags, Seq, Ack and
	// Len are valid.
	TCP      bool
	Src, Dst netip.AddrPort
	Flags    packet.Flags
	Seq, Ack uint32
	Len      uint32 // TCP payload length (from the IP length fields)

	// Window reports that WinLo and WinHi hold the range [WinLo, WinHi)
	// the engine checked a dropped reset against (policy.Detail's Checked
	// window): acknowledgement numbers for a reset answering a SYN
	// (syn_sent, RFC 9293 3.10.7.3), sequence numbers otherwise.
	Window       bool
	WinLo, WinHi uint32

	// Held reports a reset the engine held ([injection] mode "hold"):
	// Verdict and Reason are its final ones, given when its hold ended
	// (drop with rst_injected when a later frame of its purported sender
	// contradicted it, else accept with the reason it was held with), and
	// HeldNS is how long it was held, in capture time. Decide alone leaves
	// a held reset with Verdict policy.Hold; Run gives the final verdict.
	Held   bool
	HeldNS int64
	// Signals is the evidence of injection the decision reported
	// (policy.Decision.Signals; [injection] mode "log" or "hold"), and
	// Expected and Seen the values of its first signal. Signals is 0
	// otherwise.
	Signals        policy.Signals
	Signal         policy.Signal
	Expected, Seen uint32
}

// Summary counts what a replay saw.
type Summary struct {
	Frames int // frames read
	NonIP  int // frames without IPv4/IPv6 (never given to the engine)
	TCP    int // decoded TCP segments
	// FlowsCreated is the number of flows the engine created.
	FlowsCreated uint64
	// Reasons counts frames by reason, from the engine's counters; frames
	// that carry no IP at all are counted under not_tcp, as they are
	// printed. A held reset counts under the reason of its final verdict
	// (rst_injected, or the reason it was released with).
	Reasons [policy.NumReasons]uint64
	// Held counts the resets [injection] mode "hold" held; HeldDropped
	// those of them dropped as rst_injected (the others were released).
	Held, HeldDropped int
}

// Dropped returns the number of dropped frames.
func (s *Summary) Dropped() uint64 {
	var n uint64
	for r, c := range s.Reasons {
		if policy.Reason(r).Verdict() == policy.Drop {
			n += c
		}
	}
	return n
}

// Options are the settings of a replay that belong to the driver, not to
// the engine: the ones the daemon's queue worker has too.
type Options struct {
	// MaxHeld bounds the resets held at once in [injection] mode "hold"
	// ([injection] max_held); with that many held, the engine judges the
	// next valid reset at once (policy.HoldFull). 0 means DefaultMaxHeld.
	MaxHeld int
}

// DefaultMaxHeld is the default [injection] max_held (config's
// DefaultMaxHeld).
const DefaultMaxHeld = 1024

// Run reads the capture in r and hands every IP packet, with its wire
// length and capture time, to eng.Decide: the daemon's own entry point.
// emit, if not nil, gets each frame's verdict in capture order. A frame
// without IP is reported as not_tcp and accepted, as the daemon would never
// see it. Run returns what it counted even when the capture ends in an
// error (a truncated file), so the frames before it stay useful.
//
// In [injection] mode "hold" a reset the engine holds is emitted at its own
// position with its final verdict (see holdQueue): the frames after it wait
// until it has one, at most max_hold of capture time.
func Run(r io.Reader, eng *policy.Engine, emit func(Frame)) (Summary, error) {
	return RunOptions(r, eng, Options{}, emit)
}

// RunOptions is Run with the driver's options.
func RunOptions(r io.Reader, eng *policy.Engine, o Options, emit func(Frame)) (Summary, error) {
	rd, err := NewReader(r)
	if err != nil {
		return Summary{}, err
	}
	return RunReaderOptions(rd, eng, o, emit)
}

// RunReader is Run over an opened Reader.
func RunReader(rd *Reader, eng *policy.Engine, emit func(Frame)) (Summary, error) {
	return RunReaderOptions(rd, eng, Options{}, emit)
}

// RunReaderOptions is RunOptions over an opened Reader.
func RunReaderOptions(rd *Reader, eng *policy.Engine, o Options, emit func(Frame)) (Summary, error) {
	var sum Summary
	st := eng.Stats()
	var before [policy.NumReasons]uint64
	for i := range before {
		before[i] = st.Reasons[i].Load()
	}
	created0 := eng.Table().Stats().Created.Load()
	q := newHoldQueue(eng, o.MaxHeld, emit)
	var err error
	for {
		var pk Packet
		pk, err = rd.Next()
		if err != nil {
			break
		}
		sum.Frames++
		now := frameTime(&pk)
		// Holds whose max_hold has passed by this frame's time end
		// before it is decided, as the daemon's timer would have ended
		// them before the packet arrived.
		q.expire(now)
		q.room()
		f, d, h := decide(eng, &pk, now)
		if pk.IP == nil {
			sum.NonIP++
		}
		if f.TCP {
			sum.TCP++
		}
		q.add(&f, &d, &h, now)
	}
	// The capture ended: what is still held is released at its deadline.
	q.end()
	sum.Held, sum.HeldDropped = q.held, q.dropped
	for i := range sum.Reasons {
		sum.Reasons[i] = st.Reasons[i].Load() - before[i]
	}
	sum.Reasons[policy.ReasonNotTCP] += uint64(sum.NonIP)
	sum.FlowsCreated = eng.Table().Stats().Created.Load() - created0
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return sum, err
}

// Decide runs one frame through eng at the frame's capture time and
// describes the verdict. A reset the engine holds ([injection] mode
// "hold") comes back with Verdict policy.Hold: Run gives it its final one.
func Decide(eng *policy.Engine, pk *Packet) Frame {
	f, _, _ := decide(eng, pk, frameTime(pk))
	return f
}

// frameTime is pk's capture time as the engine's clock (0 for a frame
// without a timestamp).
func frameTime(pk *Packet) int64 {
	if pk.Time.IsZero() {
		return 0
	}
	return pk.Time.UnixNano()
}

// decide is Decide at time now, with the engine's decision and, for a held
// reset, what Engine.Release needs.
func decide(eng *policy.Engine, pk *Packet, now int64) (Frame, policy.Decision, policy.Held) {
	f := Frame{Index: pk.Index, Time: pk.Time, Verdict: policy.Accept, Reason: policy.ReasonNotTCP}
	if pk.IP == nil {
		return f, policy.Decision{Verdict: policy.Accept, Reason: policy.ReasonNotTCP}, policy.Held{}
	}
	var p packet.Parsed
	packet.Decode(pk.IP, pk.WireLen, &p)
	d := eng.Decide(&p, now)
	// The record is built as the daemon's event log builds its lines
	// (events.Record.Fill): one mapping from a packet and its decision.
	var r events.Record
	r.Fill(&p, &d, 0, now)
	f.Verdict, f.Reason, f.State = r.Verdict, r.Reason, r.State
	f.IP, f.TCP, f.Src, f.Dst, f.Flags = r.IP, r.TCP, r.Src, r.Dst, r.Flags
	f.Seq, f.Ack, f.Len = r.Seq, r.Ack, r.Len
	f.Window, f.WinLo, f.WinHi = r.Window, r.WinLo, r.WinHi
	f.Signals, f.Signal, f.Expected, f.Seen = d.Signals, d.Signal, d.Expected, d.Seen
	var h policy.Held
	if d.Verdict == policy.Hold {
		f.Held = true
		h = policy.HeldOf(&p, &d)
	}
	if f.TCP {
		// The state the decision left. Looking the flow up at the
		// packet's own time changes nothing: the engine's lookup at
		// this time found it live, and an accepted packet has just
		// refreshed it, so this lookup cannot expire it.
		k, _ := conntrack.MakeKey(&p)
		if s, ok := eng.Table().Lookup(&k, now); ok {
			f.After = eng.Table().Flow(s).State()
		}
	}
	return f, d, h
}
