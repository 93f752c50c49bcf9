package replay

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/rstguard/rstguard/policy"
)

// AppendJSON appends f as one line of JSON (without the newline), in the
// stable format of SPEC section 8. Keys come in a fixed order:
//
//	frame    1-based index in the capture
//	time     capture timestamp, RFC 3339 with nanoseconds, UTC
//	verdict  "accept" or "drop"
//	reason   policy.Reason's label ("tracked", "rst_valid", ...)
//	state    the flow's state before the packet, "none" for no flow
//	src, dst "addr:port" ("[v6]:port") for TCP; the bare address for
//	         other IP packets; absent for frames without IP
//	flags    TCP flags, e.g. "SA", "R", "RA"   (TCP only)
//	seq, ack sequence and acknowledgement numbers (TCP only)
//	len      TCP payload length                 (TCP only)
//	window   {"lo": n, "hi": n}, for a dropped reset only: the numbers
//	         [lo, hi) it had to hit, as policy.Detail reports them: the
//	         acknowledgement numbers that acknowledge the SYN for a
//	         reset answering one (syn_sent), else sequence numbers
//	held_ns  for a reset [injection] mode "hold" held only: how long it
//	         was held, in capture time (nanoseconds). Its verdict is the
//	         final one: "drop" with reason "rst_injected" when a later
//	         frame of its purported sender contradicted it within
//	         max_hold, else "accept" with the reason it was held with
//	signals  the evidence of injection the decision reported, only when
//	         there is some (policy.Signals.AppendJSON, e.g.
//	         ["talked_after_reset"]), with
//	expected, seen  the values of the first signal: sequence or
//	         acknowledgement numbers, or TTLs (policy.Decision)
//
// Keys are only ever added, at the end: a tool that reads the keys above
// keeps working.
//
// Every value is an ASCII string the engine or net/netip produced, or a
// number, so no escaping is needed.
func (f *Frame) AppendJSON(b []byte) []byte {
	b = append(b, `{"frame":`...)
	b = strconv.AppendInt(b, int64(f.Index), 10)
	b = append(b, `,"time":"`...)
	b = f.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","verdict":"`...)
	b = append(b, f.Verdict.String()...)
	b = append(b, `","reason":"`...)
	b = append(b, f.Reason.String()...)
	b = append(b, `","state":"`...)
	b = append(b, f.State.String()...)
	b = append(b, '"')
	if f.IP {
		b = append(b, `,"src":"`...)
		b = f.appendAddr(b, true)
		b = append(b, `","dst":"`...)
		b = f.appendAddr(b, false)
		b = append(b, '"')
	}
	if f.TCP {
		b = append(b, `,"flags":"`...)
		b = append(b, f.Flags.String()...)
		b = append(b, `","seq":`...)
		b = strconv.AppendUint(b, uint64(f.Seq), 10)
		b = append(b, `,"ack":`...)
		b = strconv.AppendUint(b, uint64(f.Ack), 10)
		b = append(b, `,"len":`...)
		b = strconv.AppendUint(b, uint64(f.Len), 10)
	}
	if f.Window {
		b = append(b, `,"window":{"lo":`...)
		b = strconv.AppendUint(b, uint64(f.WinLo), 10)
		b = append(b, `,"hi":`...)
		b = strconv.AppendUint(b, uint64(f.WinHi), 10)
		b = append(b, '}')
	}
	if f.Held {
		b = append(b, `,"held_ns":`...)
		b = strconv.AppendInt(b, f.HeldNS, 10)
	}
	b = f.Signals.AppendFields(b, f.Expected, f.Seen)
	return append(b, '}')
}

func (f *Frame) appendAddr(b []byte, src bool) []byte {
	ap := f.Dst
	if src {
		ap = f.Src
	}
	if f.TCP {
		return ap.AppendTo(b)
	}
	return ap.Addr().AppendTo(b)
}

// AppendText appends f as one aligned human-readable line (without the
// newline). The text format is for people; tools read the JSON lines.
func (f *Frame) AppendText(b []byte) []byte {
	b = fmt.Appendf(b, "%6d %s %-7s %-24s %-12s", f.Index, f.Time.UTC().Format("15:04:05.000000000"),
		f.Verdict, f.Reason, f.State)
	if !f.IP {
		return append(b, " (not IP)"...)
	}
	src, dst := f.appendAddr(nil, true), f.appendAddr(nil, false)
	if !f.TCP {
		return fmt.Appendf(b, " %22s > %s", src, dst)
	}
	b = fmt.Appendf(b, " %22s > %-22s %-3s seq=%d ack=%d len=%d", src, dst, f.Flags.String(), f.Seq, f.Ack, f.Len)
	if f.Window {
		b = fmt.Appendf(b, " window=[%d,%d)", f.WinLo, f.WinHi)
	}
	if f.Held {
		b = fmt.Appendf(b, " held=%s", time.Duration(f.HeldNS))
	}
	if f.Signals != 0 {
		b = append(b, " signals="...)
		for s := policy.Signal(0); s < policy.NumSignals; s++ {
			if f.Signals.Has(s) {
				if b[len(b)-1] != '=' {
					b = append(b, ',')
				}
				b = append(b, s.String()...)
			}
		}
		b = fmt.Appendf(b, " expected=%d seen=%d", f.Expected, f.Seen)
	}
	return b
}

// WriteSummary writes a human summary of a replay: the counts and a table
// of frames by verdict and reason.
func (s *Summary) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "frames: %d (TCP %d, not IP %d), flows created: %d, dropped: %d\n",
		s.Frames, s.TCP, s.NonIP, s.FlowsCreated, s.Dropped())
	if s.Held > 0 {
		// [injection] mode "hold"; the line is absent otherwise.
		fmt.Fprintf(tw, "resets held: %d (dropped as rst_injected: %d, released: %d)\n",
			s.Held, s.HeldDropped, s.Held-s.HeldDropped)
	}
	fmt.Fprintln(tw, "verdict\treason\tframes")
	for _, v := range []policy.Verdict{policy.Accept, policy.Drop} {
		for r, n := range s.Reasons {
			if n == 0 || policy.Reason(r).Verdict() != v {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", v, policy.Reason(r), n)
		}
	}
	return tw.Flush()
}
