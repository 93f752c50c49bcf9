package replay

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

func TestParseFlowFilter(t *testing.T) {
	tcp := func(src, dst string) *Frame {
		return &Frame{IP: true, TCP: true, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
	}
	icmp := &Frame{IP: true, Src: netip.MustParseAddrPort("192.0.2.1:0"), Dst: netip.MustParseAddrPort("192.0.2.2:0")}
	noIP := &Frame{}
	out := tcp("192.0.2.1:40000", "198.51.100.7:443")
	back := tcp("198.51.100.7:443", "192.0.2.1:40000")
	v6 := tcp("[2001:db8::1]:50000", "[2001:db8::2]:22")
	for _, tc := range []struct {
		filter string
		frame  *Frame
		want   bool
	}{
		{"host 192.0.2.1", out, true},
		{"host 192.0.2.1", back, true}, // either endpoint: both directions
		{"192.0.2.1", out, true},
		{"host ::ffff:192.0.2.1", out, true}, // IPv4-mapped is the IPv4 address
		{"host 192.0.2.9", out, false},
		{"net 198.51.100.0/24", out, true},
		{"198.51.100.0/24", back, true},
		{"198.51.100.8/29", out, false},
		{"net 198.51.100.7/16", out, true}, // host bits are masked
		{"port 443", out, true},
		{"port 443", back, true},
		{"port 80", out, false},
		{"host 192.0.2.1 port 443", out, true},
		{"host 192.0.2.1 and port 443", out, true},
		{"host 192.0.2.1 port 80", out, false}, // AND
		{"192.0.2.1:40000 198.51.100.7:443", back, true},
		{"192.0.2.1:40001 198.51.100.7:443", out, false},
		{"192.0.2.1:443", out, false}, // address and port on one endpoint
		{"2001:db8::/32 port 22", v6, true},
		{"[2001:db8::2]:22", v6, true},
		{"host 2001:db8::3", v6, false},
		{"192.0.2.0/24", v6, false}, // the other family
		{"host 192.0.2.1", icmp, true},
		{"port 443", icmp, false},       // no ports without TCP
		{"192.0.2.2:9", icmp, false},    // nor endpoints
		{"host 192.0.2.1", noIP, false}, // a frame without IP matches no filter
		{"net 0.0.0.0/0", icmp, true},
		{"net ::/0 port 22 2001:db8::1", v6, true},
	} {
		ff, err := ParseFlowFilter(tc.filter)
		if err != nil {
			t.Errorf("%q: %v", tc.filter, err)
			continue
		}
		if got := ff.Match(tc.frame); got != tc.want {
			t.Errorf("%q matching %s > %s (tcp %v): %v, want %v", tc.filter, tc.frame.Src, tc.frame.Dst, tc.frame.TCP, got, tc.want)
		}
	}
	var zero FlowFilter
	if !zero.Match(noIP) || !zero.Match(out) {
		t.Error("the zero filter must match everything")
	}
	for _, bad := range []string{
		"", "  ", "host", "host 192.0.2", "net 192.0.2.0", "net 192.0.2.0/33", "port", "port 0", "port 65536",
		"port https", "192.0.2.1:0", "example.com", "and", "host 192.0.2.1 and", "or 192.0.2.1",
		"src 192.0.2.1", "not port 22", "192.0.2.1:0x",
	} {
		if _, err := ParseFlowFilter(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if ff, _ := ParseFlowFilter("  host   192.0.2.1  and port 443 "); ff.String() != "host 192.0.2.1 and port 443" {
		t.Errorf("String: %q", ff.String())
	}
}

// TestFlowTracker: the per-flow summary counts frames by verdict and drop
// reason, reports the state after the last frame, and starts a new summary
// when the engine starts tracking a 5-tuple again.
func TestFlowTracker(t *testing.T) {
	c, s := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("192.0.2.2:80")
	fr := func(i int, src, dst netip.AddrPort, v policy.Verdict, r policy.Reason, before, after conntrack.State) Frame {
		return Frame{Index: i, IP: true, TCP: true, Src: src, Dst: dst, Verdict: v, Reason: r, State: before, After: after}
	}
	acc, drop := policy.Accept, policy.Drop
	frames := []Frame{
		fr(1, s, c, acc, policy.ReasonUnknownFlow, conntrack.StateNone, conntrack.StateNone), // a reset before any flow
		fr(2, c, s, acc, policy.ReasonTracked, conntrack.StateNone, conntrack.StateSynSent),  // the SYN: same summary
		{Index: 3}, // not TCP: ignored
		fr(4, s, c, drop, policy.ReasonRSTSynSentBadACK, conntrack.StateSynSent, conntrack.StateSynSent),
		fr(5, s, c, acc, policy.ReasonTracked, conntrack.StateSynSent, conntrack.StateSynRecv),
		fr(6, c, s, acc, policy.ReasonTracked, conntrack.StateSynRecv, conntrack.StateEstablished),
		fr(7, s, c, drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished, conntrack.StateEstablished),
		fr(8, s, c, drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished, conntrack.StateEstablished),
		fr(9, s, c, acc, policy.ReasonRSTValid, conntrack.StateEstablished, conntrack.StateClosed),
		// The flow expired; the same 5-tuple is picked up again: a new flow.
		fr(10, c, s, acc, policy.ReasonPickup, conntrack.StateNone, conntrack.StateEstablished),
		fr(11, netip.MustParseAddrPort("192.0.2.3:1"), s, drop, policy.ReasonRSTUnknownFlow, conntrack.StateNone, conntrack.StateNone),
	}
	var tr FlowTracker
	for i := range frames {
		tr.Add(&frames[i])
	}
	got := tr.Flows()
	if len(got) != 3 {
		t.Fatalf("%d flows, want 3: %+v", len(got), got)
	}
	f := got[0]
	if f.Index != 1 || f.Src != s || f.Dst != c || f.FirstFrame != 1 || f.LastFrame != 9 || f.Packets != 8 ||
		f.Accepted != 5 || f.Dropped != 3 || f.Drops[policy.ReasonRSTOutOfWindow] != 2 ||
		f.Drops[policy.ReasonRSTSynSentBadACK] != 1 || f.State != conntrack.StateClosed {
		t.Errorf("first flow: %+v", f)
	}
	if f := got[1]; f.Src != c || f.FirstFrame != 10 || f.Packets != 1 || f.State != conntrack.StateEstablished {
		t.Errorf("the picked-up flow: %+v", f)
	}
	if f := got[2]; f.Packets != 1 || f.Dropped != 1 || f.State != conntrack.StateNone {
		t.Errorf("the unknown-flow reset: %+v", f)
	}
	var m map[string]any
	line := got[0].AppendJSON(nil)
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	want := `{"flow":1,"src":"192.0.2.2:80","dst":"192.0.2.1:40000","first_frame":1,"last_frame":9,` +
		`"first":"0001-01-01T00:00:00Z","last":"0001-01-01T00:00:00Z","packets":8,"accepted":5,"dropped":3,` +
		`"drops":{"rst_syn_sent_bad_ack":1,"rst_out_of_window":2},"final_state":"closed"}`
	// The order of drops follows the Reason enum; compare as JSON.
	var w map[string]any
	_ = json.Unmarshal([]byte(want), &w)
	if gb, _ := json.Marshal(m); !bytes.Equal(gb, func() []byte { b, _ := json.Marshal(w); return b }()) {
		t.Errorf("JSON:\n got %s\nwant %s", line, want)
	}
	if b := got[1].AppendJSON(nil); !bytes.Contains(b, []byte(`"drops":{}`)) || !json.Valid(b) {
		t.Errorf("no drops: %s", b)
	}
	var text bytes.Buffer
	if err := WriteFlowsText(&text, got); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(text.String()), "\n"); len(lines) != 4 ||
		!strings.Contains(lines[1], "rst_syn_sent_bad_ack 1, rst_out_of_window 2") || !strings.Contains(lines[1], "closed") {
		t.Errorf("text:\n%s", text.String())
	}
}

// TestFlowSummaryCaptures: the summary of real captures, from the engine's
// own states (Frame.After).
func TestFlowSummaryCaptures(t *testing.T) {
	for _, tc := range []struct {
		file  string
		drops map[policy.Reason]uint64
		final conntrack.State
	}{
		{"normal.pcap", nil, conntrack.StateTimeWait},
		{"refused.pcap", nil, conntrack.StateClosed},
		{"abort.pcap", nil, conntrack.StateClosed},
		{"forged.pcapng", map[policy.Reason]uint64{policy.ReasonRSTSynSentBadACK: 1, policy.ReasonRSTOutOfWindow: 1}, conntrack.StateTimeWait},
		{"link-ppp.pcap", map[policy.Reason]uint64{policy.ReasonRSTOutOfWindow: 1}, conntrack.StateTimeWait},
	} {
		t.Run(tc.file, func(t *testing.T) {
			fs, sum, _ := replay(t, tc.file, policy.DefaultConfig())
			var tr FlowTracker
			for i := range fs {
				tr.Add(&fs[i])
			}
			flows := tr.Flows()
			if len(flows) != 1 {
				t.Fatalf("%d flows, want 1: %+v", len(flows), flows)
			}
			f := flows[0]
			tcp := tcpFrames(fs)
			if f.Packets != uint64(sum.TCP) || f.FirstFrame != tcp[0].Index || f.LastFrame != tcp[len(tcp)-1].Index ||
				f.Src != tcp[0].Src || f.Dropped != sum.Dropped() || f.Accepted+f.Dropped != f.Packets {
				t.Errorf("%+v (TCP frames %d, dropped %d)", f, sum.TCP, sum.Dropped())
			}
			for r, n := range f.Drops {
				if n != tc.drops[policy.Reason(r)] {
					t.Errorf("drops %s: %d, want %d", policy.Reason(r), n, tc.drops[policy.Reason(r)])
				}
			}
			if f.State != tc.final {
				t.Errorf("final state %s, want %s", f.State, tc.final)
			}
		})
	}
}
