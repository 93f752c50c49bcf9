// Package events is the daemon's event log: one JSON line for every packet
// the policy dropped and for every reset it decided (accepted or dropped),
// unsampled, like Suricata's eve.json drop events or conntrack -E.
//
// The packet path only copies a fixed-size Record into a per-queue
// single-producer ring (Ring.Push: no lock, no allocation, never blocks; a
// full ring counts the event as lost). A Writer goroutine drains the rings,
// encodes the lines and writes them to a file it reopens on request (SIGHUP,
// for logrotate) and/or to standard output (the journal under systemd).
//
// The line has the field names and meanings of `rstguard replay --format
// jsonl` (replay.Frame.AppendJSON), so one set of tools reads both; the
// daemon's line has no "frame" and adds "queue" and "ttl":
//
//	time     wall-clock time of the decision, RFC 3339 with nanoseconds, UTC
//	queue    the NFQUEUE queue number
//	verdict  "accept" or "drop"
//	reason   the policy reason ("rst_valid", "rst_out_of_window", ...)
//	state    the flow's state before the packet, "none" for no flow
//	src, dst "addr:port" for TCP, the bare address for other IP packets
//	flags    TCP flags, e.g. "R", "RA"                    (TCP only)
//	seq, ack sequence and acknowledgement numbers        (TCP only)
//	len      TCP payload length                          (TCP only)
//	ttl      the IPv4 TTL or IPv6 hop limit it arrived with (IP only)
//	ttl_mismatch  true for a reset whose TTL is off the claimed sender's
//	         baseline by more than [injection] ttl_tolerance (absent otherwise)
//	window   {"lo": n, "hi": n}: for a dropped reset, the range it had to hit
//	held_ns  for a reset held by [injection] mode = "hold": how long it
//	         waited for its verdict (the line is written at the verdict)
//	signals  evidence of injection, e.g. ["talked_after_reset"] (absent
//	         when none), with "expected" and "seen": the first signal's
//	         values (sequence or acknowledgement numbers, or TTLs)
//
// The package imports the engine packages (policy, conntrack, packet) and
// the standard library; nfq and cmd import it.
package events

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
)

// Record is one event. It is a value of fixed size: the ring holds them
// inline.
type Record struct {
	Time    int64 // Unix nanoseconds
	Queue   uint16
	Verdict policy.Verdict
	Reason  policy.Reason
	State   conntrack.State
	// IP: Src, Dst and TTL are valid; TCP: the ports, Flags, Seq, Ack and
	// Len too (as replay.Frame).
	IP, TCP  bool
	TTL      uint8
	Src, Dst netip.AddrPort
	Flags    packet.Flags
	Seq, Ack uint32
	Len      uint32
	// Window: WinLo and WinHi hold the range a dropped reset was checked
	// against.
	Window       bool
	WinLo, WinHi uint32
	// TTLMismatch: a reset whose TTL is off the claimed sender's baseline
	// (policy.Decision.TTLMismatch).
	TTLMismatch bool
	// Signals is the evidence of injection (policy.Decision.Signals), with
	// the first signal's Expected and Seen values.
	Signals        policy.Signals
	Expected, Seen uint32
	// HeldNs is how long a held reset waited for its verdict (0: not
	// held).
	HeldNs int64
}

// Wanted reports whether a decision is logged: every drop, and every reset.
func Wanted(p *packet.Parsed, d *policy.Decision) bool {
	if d.Verdict == policy.Hold {
		return false // written when its verdict is given
	}
	return d.Verdict == policy.Drop || d.Signals != 0 || p.Kind == packet.KindTCP && p.Flags&packet.RST != 0
}

// Fill sets r from a packet and its decision, the way replay.Decide builds
// a Frame.
func (r *Record) Fill(p *packet.Parsed, d *policy.Decision, queue uint16, unixNano int64) {
	*r = Record{Time: unixNano, Queue: queue, Verdict: d.Verdict, Reason: d.Reason, State: d.State}
	if p.Kind == packet.KindTCP {
		r.IP, r.TCP = true, true
		r.Src, r.Dst = p.SrcAddrPort(), p.DstAddrPort()
		r.Flags = p.Flags
		r.Seq, r.Ack = uint32(p.Seq), uint32(p.Ack)
		r.Len = p.PayloadLen
	} else if p.HaveIP {
		r.IP = true
		r.Src, r.Dst = netip.AddrPortFrom(p.SrcAddrPort().Addr(), 0), netip.AddrPortFrom(p.DstAddrPort().Addr(), 0)
	}
	r.TTL = p.TTL
	r.TTLMismatch = d.TTLMismatch
	r.Signals, r.Expected, r.Seen = d.Signals, d.Expected, d.Seen
	if r.TCP && r.Verdict == policy.Drop && r.Flags&packet.RST != 0 && d.Checked {
		r.Window = true
		r.WinLo, r.WinHi = uint32(d.WinLo), uint32(d.WinHi)
	}
}

// AppendJSON appends r as one line of JSON, without the newline. Every
// value is a number or an ASCII string the engine or net/netip produced: no
// escaping is needed.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = time.Unix(0, r.Time).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","queue":`...)
	b = strconv.AppendUint(b, uint64(r.Queue), 10)
	b = append(b, `,"verdict":"`...)
	b = append(b, r.Verdict.String()...)
	b = append(b, `","reason":"`...)
	b = append(b, r.Reason.String()...)
	b = append(b, `","state":"`...)
	b = append(b, r.State.String()...)
	b = append(b, '"')
	if r.IP {
		b = append(b, `,"src":"`...)
		b = r.appendAddr(b, r.Src)
		b = append(b, `","dst":"`...)
		b = r.appendAddr(b, r.Dst)
		b = append(b, '"')
	}
	if r.TCP {
		b = append(b, `,"flags":"`...)
		b = append(b, r.Flags.String()...)
		b = append(b, `","seq":`...)
		b = strconv.AppendUint(b, uint64(r.Seq), 10)
		b = append(b, `,"ack":`...)
		b = strconv.AppendUint(b, uint64(r.Ack), 10)
		b = append(b, `,"len":`...)
		b = strconv.AppendUint(b, uint64(r.Len), 10)
	}
	if r.IP {
		b = append(b, `,"ttl":`...)
		b = strconv.AppendUint(b, uint64(r.TTL), 10)
	}
	if r.TTLMismatch {
		b = append(b, `,"ttl_mismatch":true`...)
	}
	if r.Window {
		b = append(b, `,"window":{"lo":`...)
		b = strconv.AppendUint(b, uint64(r.WinLo), 10)
		b = append(b, `,"hi":`...)
		b = strconv.AppendUint(b, uint64(r.WinHi), 10)
		b = append(b, '}')
	}
	if r.HeldNs > 0 {
		b = append(b, `,"held_ns":`...)
		b = strconv.AppendInt(b, r.HeldNs, 10)
	}
	b = r.Signals.AppendFields(b, r.Expected, r.Seen)
	return append(b, '}')
}

func (r *Record) appendAddr(b []byte, ap netip.AddrPort) []byte {
	if r.TCP {
		return ap.AppendTo(b)
	}
	return ap.Addr().AppendTo(b)
}

// Ring is a bounded single-producer single-consumer queue of Records: the
// queue's worker pushes, the Writer pops. Push never blocks and never
// allocates; when the ring is full the event is counted in Lost.
type Ring struct {
	buf  []Record
	mask uint64
	head atomic.Uint64 // next slot the producer writes
	tail atomic.Uint64 // next slot the consumer reads
	lost atomic.Uint64
}

// NewRing returns a ring of at least size records (rounded up to a power of
// two).
func NewRing(size int) *Ring {
	n := 1
	for n < size {
		n <<= 1
	}
	return &Ring{buf: make([]Record, n), mask: uint64(n - 1)}
}

// Slot returns the record the producer fills next, or nil (the event is
// counted lost) when the ring is full. Commit publishes it.
func (r *Ring) Slot() *Record {
	h := r.head.Load()
	if h-r.tail.Load() > r.mask {
		r.lost.Add(1)
		return nil
	}
	return &r.buf[h&r.mask]
}

// Commit publishes the record Slot returned.
func (r *Ring) Commit() { r.head.Add(1) }

// Pop copies the oldest record into e; false when the ring is empty.
func (r *Ring) Pop(e *Record) bool {
	t := r.tail.Load()
	if t == r.head.Load() {
		return false
	}
	*e = r.buf[t&r.mask]
	r.tail.Store(t + 1)
	return true
}

// Lost is the number of events dropped because the ring was full.
func (r *Ring) Lost() uint64 { return r.lost.Load() }
