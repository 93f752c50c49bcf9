package replay

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

// FlowSummary is what a replay saw of one TCP flow.
type FlowSummary struct {
	// Index is the flow's 1-based position, in the order of the flows'
	// first frames.
	Index int
	// Src and Dst are the endpoints as the flow's first frame had them
	// (the client's SYN when the capture holds the handshake).
	Src, Dst netip.AddrPort
	// FirstFrame and LastFrame are the indexes of the flow's first and last
	// frame; First and Last their timestamps.
	FirstFrame, LastFrame int
	First, Last           time.Time
	// Packets counts the flow's TCP frames, Accepted and Dropped them by
	// verdict; Drops the dropped ones by reason.
	Packets, Accepted, Dropped uint64
	Drops                      [policy.NumReasons]uint64
	// State is the flow's state after its last frame (conntrack's names;
	// "none" when the engine tracked no flow for it, as for a reset of a
	// flow it never saw).
	State conntrack.State

	tracked bool // the engine has tracked a flow for it
}

// flowID is the direction-free 5-tuple of a TCP frame: the endpoints in
// canonical order (the protocol is always TCP).
type flowID struct{ a, b netip.AddrPort }

func makeFlowID(src, dst netip.AddrPort) flowID {
	if src.Compare(dst) <= 0 {
		return flowID{src, dst}
	}
	return flowID{dst, src}
}

// FlowTracker gathers FlowSummary values from the frames of a replay.
// A 5-tuple that the engine starts tracking again after its flow had gone
// (expired, or a new connection after the old one ended) starts a new
// summary, as the engine saw a new flow. The zero FlowTracker is ready to
// use.
type FlowTracker struct {
	cur   map[flowID]int // the summary in flows each 5-tuple adds to now
	flows []FlowSummary
}

// Add counts frame f. Frames that are not TCP belong to no flow and are
// ignored.
func (t *FlowTracker) Add(f *Frame) {
	if !f.TCP {
		return
	}
	if t.cur == nil {
		t.cur = make(map[flowID]int)
	}
	id := makeFlowID(f.Src, f.Dst)
	i, ok := t.cur[id]
	created := f.State == conntrack.StateNone && f.After != conntrack.StateNone
	if !ok || (created && t.flows[i].tracked) {
		t.flows = append(t.flows, FlowSummary{Index: len(t.flows) + 1, Src: f.Src, Dst: f.Dst, FirstFrame: f.Index, First: f.Time})
		i = len(t.flows) - 1
		t.cur[id] = i
	}
	s := &t.flows[i]
	s.LastFrame, s.Last = f.Index, f.Time
	s.Packets++
	if f.Verdict == policy.Drop {
		s.Dropped++
		s.Drops[f.Reason]++
	} else {
		s.Accepted++
	}
	s.State = f.After
	if f.After != conntrack.StateNone {
		s.tracked = true
	}
}

// Flows returns the summaries in the order of the flows' first frames.
// The slice is the tracker's own.
func (t *FlowTracker) Flows() []FlowSummary { return t.flows }

// AppendJSON appends s as one line of JSON (without the newline). Keys, in
// this order:
//
//	flow         1-based index, in the order of the flows' first frames
//	src, dst     "addr:port" as the flow's first frame had them
//	first_frame, last_frame   frame indexes (the "frame" of the JSON lines)
//	first, last  their timestamps, RFC 3339 with nanoseconds, UTC
//	packets      TCP frames of the flow
//	accepted, dropped         of them, by verdict
//	drops        {"reason": n, ...}: the dropped frames by reason (may be {})
//	final_state  the flow's state after its last frame ("none": untracked)
func (s *FlowSummary) AppendJSON(b []byte) []byte {
	b = append(b, `{"flow":`...)
	b = strconv.AppendInt(b, int64(s.Index), 10)
	b = append(b, `,"src":"`...)
	b = s.Src.AppendTo(b)
	b = append(b, `","dst":"`...)
	b = s.Dst.AppendTo(b)
	b = append(b, `","first_frame":`...)
	b = strconv.AppendInt(b, int64(s.FirstFrame), 10)
	b = append(b, `,"last_frame":`...)
	b = strconv.AppendInt(b, int64(s.LastFrame), 10)
	b = append(b, `,"first":"`...)
	b = s.First.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","last":"`...)
	b = s.Last.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","packets":`...)
	b = strconv.AppendUint(b, s.Packets, 10)
	b = append(b, `,"accepted":`...)
	b = strconv.AppendUint(b, s.Accepted, 10)
	b = append(b, `,"dropped":`...)
	b = strconv.AppendUint(b, s.Dropped, 10)
	b = append(b, `,"drops":{`...)
	first := true
	for r, n := range s.Drops {
		if n == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, policy.Reason(r).String()...)
		b = append(b, `":`...)
		b = strconv.AppendUint(b, n, 10)
	}
	b = append(b, `},"final_state":"`...)
	b = append(b, s.State.String()...)
	return append(b, `"}`...)
}

// dropText lists the drops by reason as "reason n, reason n", or "-".
func (s *FlowSummary) dropText() string {
	var b []byte
	for r, n := range s.Drops {
		if n == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%s %d", policy.Reason(r), n)
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// WriteFlowsText writes flows as an aligned table for people.
func WriteFlowsText(w io.Writer, flows []FlowSummary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "flow\tsrc\tdst\tframes\tpackets\taccepted\tdropped\tdrops by reason\tfinal state")
	for i := range flows {
		s := &flows[i]
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d-%d\t%d\t%d\t%d\t%s\t%s\n", s.Index, s.Src, s.Dst, s.FirstFrame, s.LastFrame,
			s.Packets, s.Accepted, s.Dropped, s.dropText(), s.State)
	}
	return tw.Flush()
}
