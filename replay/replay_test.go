package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// The captures in testdata, made by testdata/gen from real Linux TCP
// between two network namespaces, and by testdata/linkgen from two of them
// (linkCaptures).
var captures = []struct {
	file string
	link layers.LinkType
}{
	{"normal.pcap", layers.LinkTypeEthernet},
	{"refused.pcap", layers.LinkTypeLinuxSLL2},
	{"abort.pcap", layers.LinkTypeRaw},
	{"v6vlan.pcap", layers.LinkTypeEthernet},
	{"ecn.pcap", layers.LinkTypeLinuxSLL},
	{"forged.pcapng", layers.LinkTypeEthernet},
	{"link-null.pcap", layers.LinkTypeNull},
	{"link-loop.pcap", layers.LinkTypeLoop},
	{"link-ipv4.pcap", layers.LinkTypeIPv4},
	{"link-ipv6.pcap", layers.LinkTypeIPv6},
	{"link-ppp.pcap", layers.LinkTypePPP},
	{"link-ppphdlc.pcap", layers.LinkTypePPP_HDLC},
}

const (
	client4 = "192.0.2.1"
	server4 = "192.0.2.2"
)

// captureDir holds the captures the tests replay: the committed ones, or
// freshly generated ones in TestRegeneratedCaptures.
var captureDir = "testdata"

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(captureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newEngine(pc policy.Config) *policy.Engine {
	return policy.NewEngine(pc, conntrack.DefaultConfig())
}

// replay runs a capture through a fresh engine with policy pc.
func replay(t testing.TB, name string, pc policy.Config) ([]Frame, Summary, *policy.Engine) {
	t.Helper()
	eng := newEngine(pc)
	var fs []Frame
	sum, err := Run(bytes.NewReader(readFile(t, name)), eng, func(f Frame) { fs = append(fs, f) })
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if sum.Frames != len(fs) || len(fs) == 0 {
		t.Fatalf("%s: summary says %d frames, emitted %d", name, sum.Frames, len(fs))
	}
	return fs, sum, eng
}

// tcpFrames returns the TCP frames in capture order.
func tcpFrames(fs []Frame) []Frame {
	var out []Frame
	for _, f := range fs {
		if f.TCP {
			out = append(out, f)
		}
	}
	return out
}

func flagged(fs []Frame, m packet.Flags) []Frame {
	var out []Frame
	for _, f := range fs {
		if f.TCP && f.Flags&m == m {
			out = append(out, f)
		}
	}
	return out
}

// want asserts the verdict, reason and state before the packet of one frame.
func want(t *testing.T, what string, f Frame, v policy.Verdict, r policy.Reason, st conntrack.State) {
	t.Helper()
	if f.Verdict != v || f.Reason != r || f.State != st {
		t.Errorf("%s (frame %d, %s > %s %s seq=%d ack=%d len=%d): got %s/%s before %s, want %s/%s before %s",
			what, f.Index, f.Src, f.Dst, f.Flags.String(), f.Seq, f.Ack, f.Len,
			f.Verdict, f.Reason, f.State, v, r, st)
	}
}

// wantLegit asserts what holds for a capture of legitimate traffic only:
// every frame is accepted; frames without TCP are not_tcp with no flow;
// TCP frames are tracked, except the ones listed in special (by frame
// index), checked by the caller.
func wantLegit(t *testing.T, fs []Frame, special map[int]bool) {
	t.Helper()
	for _, f := range fs {
		if f.Verdict != policy.Accept {
			t.Errorf("frame %d (%s > %s %s seq=%d ack=%d): legitimate traffic dropped: %s before %s",
				f.Index, f.Src, f.Dst, f.Flags.String(), f.Seq, f.Ack, f.Reason, f.State)
			continue
		}
		if special[f.Index] {
			continue
		}
		switch {
		case !f.TCP:
			if f.Reason != policy.ReasonNotTCP || f.State != conntrack.StateNone {
				t.Errorf("frame %d (not TCP): got %s before %s, want not_tcp before none", f.Index, f.Reason, f.State)
			}
		case f.Reason != policy.ReasonTracked:
			t.Errorf("frame %d (%s > %s %s seq=%d ack=%d len=%d): reason %s before %s, want tracked",
				f.Index, f.Src, f.Dst, f.Flags.String(), f.Seq, f.Ack, f.Len, f.Reason, f.State)
		}
	}
}

// checkClose asserts the states a FIN close goes through (SPEC section 3,
// Linux nf_conntrack's names): the first FIN is seen in established, the
// second (which here also acknowledges the first) in fin_wait, and the
// last ACK in last_ack; everything after the handshake and before the
// first FIN is established.
func checkClose(t *testing.T, tcp []Frame) {
	t.Helper()
	fins := flagged(tcp, packet.FIN)
	if len(fins) != 2 {
		t.Fatalf("want 2 FINs, got %d", len(fins))
	}
	want(t, "first FIN", fins[0], policy.Accept, policy.ReasonTracked, conntrack.StateEstablished)
	want(t, "second FIN", fins[1], policy.Accept, policy.ReasonTracked, conntrack.StateFinWait)
	last := tcp[len(tcp)-1]
	if last.Flags != packet.ACK || last.Index < fins[1].Index {
		t.Fatalf("frame %d: the last TCP frame is %s, want the final ACK", last.Index, last.Flags.String())
	}
	want(t, "final ACK", last, policy.Accept, policy.ReasonTracked, conntrack.StateLastAck)
	for _, f := range tcp[3:] {
		if f.Index >= fins[0].Index {
			break
		}
		if f.State != conntrack.StateEstablished {
			t.Errorf("frame %d (%s, len %d): before the FINs the flow is %s, want established", f.Index, f.Flags.String(), f.Len, f.State)
		}
	}
}

// checkHandshake asserts the three-way handshake (RFC 9293 3.5): the SYN
// opens a flow (none before), the SYN-ACK sees syn_sent, the third ACK
// sees syn_recv.
func checkHandshake(t *testing.T, tcp []Frame, client netip.Addr) {
	t.Helper()
	if len(tcp) < 3 {
		t.Fatalf("only %d TCP frames", len(tcp))
	}
	syn, synack, ack := tcp[0], tcp[1], tcp[2]
	if syn.Flags&(packet.SYN|packet.ACK) != packet.SYN || syn.Src.Addr() != client {
		t.Fatalf("frame %d: first TCP frame %s from %s, want the client's SYN", syn.Index, syn.Flags.String(), syn.Src)
	}
	want(t, "SYN", syn, policy.Accept, policy.ReasonTracked, conntrack.StateNone)
	want(t, "SYN-ACK", synack, policy.Accept, policy.ReasonTracked, conntrack.StateSynSent)
	if synack.Flags&(packet.SYN|packet.ACK) != packet.SYN|packet.ACK || synack.Ack != syn.Seq+1 {
		t.Errorf("frame %d: second TCP frame %s ack=%d, want the SYN-ACK of %d", synack.Index, synack.Flags.String(), synack.Ack, syn.Seq)
	}
	want(t, "third ACK", ack, policy.Accept, policy.ReasonTracked, conntrack.StateSynRecv)
}

func TestNormalConnection(t *testing.T) {
	fs, sum, _ := replay(t, "normal.pcap", policy.DefaultConfig())
	wantLegit(t, fs, nil)
	tcp := tcpFrames(fs)
	checkHandshake(t, tcp, netip.MustParseAddr(client4))
	checkClose(t, tcp)
	var data [2]uint32
	for _, f := range tcp {
		if f.Src.Addr() == netip.MustParseAddr(client4) {
			data[0] += f.Len
		} else {
			data[1] += f.Len
		}
	}
	if data[0] != 10000 || data[1] != 10000 {
		t.Errorf("payload client->server %d, server->client %d, want 10000 each", data[0], data[1])
	}
	if sum.FlowsCreated != 1 || sum.TCP != len(tcp) || sum.Dropped() != 0 {
		t.Errorf("summary: %+v, want 1 flow, %d TCP, 0 dropped", sum, len(tcp))
	}
	if sum.NonIP == 0 {
		t.Error("the capture's ARP frames were not counted as not IP")
	}
	for _, f := range fs {
		if !f.IP && (f.Reason != policy.ReasonNotTCP || f.Verdict != policy.Accept) {
			t.Errorf("frame %d (not IP): %s/%s, want accept/not_tcp", f.Index, f.Verdict, f.Reason)
		}
	}
}

// TestRefused: a SYN to a closed port and the RST|ACK the server's stack
// answers with: ACK bit set and SEG.ACK = ISS+1, acceptable in SYN-SENT
// (RFC 9293 3.10.7.3), so the reset is valid.
func TestRefused(t *testing.T) {
	fs, sum, eng := replay(t, "refused.pcap", policy.DefaultConfig())
	tcp := tcpFrames(fs)
	if len(tcp) != 2 {
		t.Fatalf("want SYN and RST|ACK, got %d TCP frames", len(tcp))
	}
	rst := tcp[1]
	wantLegit(t, fs, map[int]bool{rst.Index: true})
	want(t, "SYN", tcp[0], policy.Accept, policy.ReasonTracked, conntrack.StateNone)
	if rst.Flags != packet.RST|packet.ACK || rst.Ack != tcp[0].Seq+1 {
		t.Fatalf("frame %d: %s ack=%d, want RA acknowledging the SYN", rst.Index, rst.Flags.String(), rst.Ack)
	}
	want(t, "RST|ACK refusing the SYN", rst, policy.Accept, policy.ReasonRSTValid, conntrack.StateSynSent)
	if n := eng.Stats().Resets[conntrack.StateSynSent][policy.OutcomeAccepted].Load(); n != 1 {
		t.Errorf("resets accepted in syn_sent: %d, want 1", n)
	}
	if sum.Reasons[policy.ReasonRSTValid] != 1 {
		t.Errorf("summary rst_valid = %d, want 1", sum.Reasons[policy.ReasonRSTValid])
	}
}

// TestAbort: the server closes with SO_LINGER 0; Linux sends RST|ACK at
// its SND.NXT, which is the client's RCV.NXT: in the window (RFC 9293
// 3.10.7.4) and exact (RFC 5961 3.2), so valid in both modes.
func TestAbort(t *testing.T) {
	for _, mode := range []policy.RSTMode{policy.RSTModeWindow, policy.RSTModeExact} {
		t.Run(mode.String(), func(t *testing.T) {
			pc := policy.DefaultConfig()
			pc.RSTMode = mode
			fs, _, _ := replay(t, "abort.pcap", pc)
			tcp := tcpFrames(fs)
			rsts := flagged(tcp, packet.RST)
			if len(rsts) != 1 {
				t.Fatalf("want 1 reset, got %d", len(rsts))
			}
			rst := rsts[0]
			wantLegit(t, fs, map[int]bool{rst.Index: true})
			checkHandshake(t, tcp, netip.MustParseAddr(client4))
			if rst.Src.Addr() != netip.MustParseAddr(server4) {
				t.Errorf("frame %d: the reset comes from %s, want the server", rst.Index, rst.Src)
			}
			want(t, "SO_LINGER 0 abort", rst, policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished)
			// Headers only: -s 96 cut the data segments.
			if f := flagged(tcp, packet.PSH)[0]; f.Len != 1000 {
				t.Errorf("frame %d: payload length %d from the IP header, want 1000", f.Index, f.Len)
			}
		})
	}
}

// TestIPv6VLAN: an IPv6 transfer and close over 802.1Q, captured headers
// only; neighbour discovery frames are not TCP.
func TestIPv6VLAN(t *testing.T) {
	fs, sum, _ := replay(t, "v6vlan.pcap", policy.DefaultConfig())
	wantLegit(t, fs, nil)
	tcp := tcpFrames(fs)
	checkHandshake(t, tcp, netip.MustParseAddr("2001:db8::1"))
	checkClose(t, tcp)
	if sum.FlowsCreated != 1 {
		t.Errorf("flows created %d, want 1", sum.FlowsCreated)
	}
	var nd int
	for _, f := range fs {
		if !f.TCP && f.IP && f.Src.Addr().Is6() {
			nd++
		}
	}
	if nd == 0 {
		t.Error("no IPv6 neighbour discovery frame seen as not_tcp")
	}
}

// TestECNSetupSYN: RFC 3168 6.1.1 ECN-setup SYN (ECE|CWR) and SYN-ACK
// (ECE) are tracked and accepted; RFC 3360: never a reason to drop. The
// engine counts the flagged SYNs.
func TestECNSetupSYN(t *testing.T) {
	fs, _, eng := replay(t, "ecn.pcap", policy.DefaultConfig())
	wantLegit(t, fs, nil)
	tcp := tcpFrames(fs)
	checkHandshake(t, tcp, netip.MustParseAddr(client4))
	checkClose(t, tcp)
	if f := tcp[0].Flags; f&(packet.ECE|packet.CWR) != packet.ECE|packet.CWR {
		t.Errorf("SYN flags %s, want ECE and CWR (ECN-setup SYN)", f.String())
	}
	if f := tcp[1].Flags; f&packet.ECE == 0 {
		t.Errorf("SYN-ACK flags %s, want ECE (ECN-setup SYN-ACK)", f.String())
	}
	st := eng.Stats()
	if ece, cwr := st.FlaggedSYNs[policy.SYNFlagECE].Load(), st.FlaggedSYNs[policy.SYNFlagCWR].Load(); ece != 2 || cwr != 1 {
		t.Errorf("flagged SYNs: ece %d cwr %d, want 2 and 1", ece, cwr)
	}
}

// forged returns the forged resets of forged.pcapng (the legitimate
// connection in it has none), in order: the answer to the SYN with a bad
// ACK, the one far outside the window, the one inside it.
func forged(t *testing.T, fs []Frame) []Frame {
	t.Helper()
	rsts := flagged(fs, packet.RST)
	if len(rsts) != 3 {
		t.Fatalf("want 3 forged resets, got %d", len(rsts))
	}
	return rsts
}

// TestForgedResets replays a real connection into which three forged
// resets were written (see testdata/gen forgeRSTs).
func TestForgedResets(t *testing.T) {
	t.Run("window", func(t *testing.T) {
		fs, sum, _ := replay(t, "forged.pcapng", policy.DefaultConfig())
		f := forged(t, fs)
		tcp := tcpFrames(fs)
		// RFC 9293 3.10.7.3: in SYN-SENT a reset is acceptable only if
		// its ACK acknowledges the SYN.
		want(t, "forged refusal", f[0], policy.Drop, policy.ReasonRSTSynSentBadACK, conntrack.StateSynSent)
		// RFC 9293 3.10.7.4: a reset outside the window is dropped.
		want(t, "forged RST outside the window", f[1], policy.Drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished)
		if !f[1].Window || inRange(f[1].Seq, f[1].WinLo, f[1].WinHi) {
			t.Errorf("frame %d: window %v [%d, %d) should be reported and exclude seq %d", f[1].Index, f[1].Window, f[1].WinLo, f[1].WinHi, f[1].Seq)
		}
		// rst_mode "window" accepts any reset in the window: the blind
		// attack that guesses a number inside it succeeds (that is what
		// rst_mode "exact" is for). The connection looks closed until
		// new data shows that Linux ignored the reset (RFC 5961 challenge
		// ACK): the first data segment after it revives the flow, and the
		// rest of the conversation is tracked as established again.
		want(t, "forged RST inside the window", f[2], policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished)
		revived := false
		for _, x := range tcp {
			if x.Index <= f[2].Index {
				continue
			}
			if !revived {
				if x.State != conntrack.StateClosed {
					t.Errorf("frame %d: right after the accepted reset the flow is %s, want closed", x.Index, x.State)
				}
				revived = x.Len > 0
				continue
			}
			if x.State == conntrack.StateClosed || x.State == conntrack.StateNone {
				t.Errorf("frame %d: after new data the flow is %s, want it revived", x.Index, x.State)
			}
		}
		if !revived {
			t.Errorf("no data after the accepted reset: the capture does not exercise the revival")
		}
		for _, x := range fs {
			if x.Index != f[0].Index && x.Index != f[1].Index && x.Verdict != policy.Accept {
				t.Errorf("frame %d (%s): legitimate frame dropped: %s", x.Index, x.Flags.String(), x.Reason)
			}
		}
		if sum.Dropped() != 2 {
			t.Errorf("dropped %d frames, want 2", sum.Dropped())
		}
	})
	t.Run("exact", func(t *testing.T) {
		pc := policy.DefaultConfig()
		pc.RSTMode = policy.RSTModeExact
		fs, sum, _ := replay(t, "forged.pcapng", pc)
		f := forged(t, fs)
		want(t, "forged refusal", f[0], policy.Drop, policy.ReasonRSTSynSentBadACK, conntrack.StateSynSent)
		want(t, "forged RST outside the window", f[1], policy.Drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished)
		// RFC 5961 3.2: in the window but not RCV.NXT: a host sends a
		// challenge ACK and keeps the connection; so does the guard.
		want(t, "forged RST inside the window", f[2], policy.Drop, policy.ReasonRSTNotExact, conntrack.StateEstablished)
		if !f[2].Window || !inRange(f[2].Seq, f[2].WinLo, f[2].WinHi) {
			t.Errorf("frame %d: window %v [%d, %d) should be reported and contain seq %d", f[2].Index, f[2].Window, f[2].WinLo, f[2].WinHi, f[2].Seq)
		}
		// The real connection is untouched by the dropped resets.
		wantLegit(t, without(fs, f...), nil)
		tcp := tcpFrames(without(fs, f...))
		checkHandshake(t, tcp, netip.MustParseAddr(client4))
		checkClose(t, tcp)
		if sum.Dropped() != 3 {
			t.Errorf("dropped %d frames, want 3", sum.Dropped())
		}
	})
}

func inRange(v, lo, hi uint32) bool { return v-lo < hi-lo }

func without(fs []Frame, drop ...Frame) []Frame {
	var out []Frame
next:
	for _, f := range fs {
		for _, d := range drop {
			if f.Index == d.Index {
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}

// TestLinkTypes checks that every capture has the link type it was made
// with, and that the same packets under the other raw-IP link type numbers
// (12, 14, 228/229) and in pcapng (whose interface block carries the link
// type) give the same frames.
func TestLinkTypes(t *testing.T) {
	for _, c := range captures {
		rd, err := NewReader(bytes.NewReader(readFile(t, c.file)))
		if err != nil {
			t.Fatal(err)
		}
		pk, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if pk.LinkType != c.link {
			t.Errorf("%s: link type %s, want %s", c.file, pk.LinkType, c.link)
		}
	}
	for _, tc := range []struct {
		src  string
		link layers.LinkType
		ng   bool
	}{
		{"abort.pcap", 12, false},
		{"abort.pcap", 14, false},
		{"abort.pcap", layers.LinkTypeIPv4, false},
		{"abort.pcap", layers.LinkTypeRaw, true},
		{"v6vlan.pcap", layers.LinkTypeIPv6, false},
		{"normal.pcap", layers.LinkTypeEthernet, true},
		{"refused.pcap", layers.LinkTypeLinuxSLL2, true},
		{"ecn.pcap", layers.LinkTypeLinuxSLL, true},
		{"link-null.pcap", layers.LinkTypeNull, true},
		{"link-loop.pcap", layers.LinkTypeLoop, true},
		{"link-ppp.pcap", layers.LinkTypePPP, true},
		{"link-ppphdlc.pcap", layers.LinkTypePPP_HDLC, true},
		{"link-ppp.pcap", layers.LinkTypeIPv6, false},
		{"link-null.pcap", layers.LinkTypeRaw, false},
	} {
		kind := "pcap"
		if tc.ng {
			kind = "pcapng"
		}
		t.Run(tc.src+"/"+strconv.Itoa(int(tc.link))+"/"+kind, func(t *testing.T) {
			ref, _, _ := replay(t, tc.src, policy.DefaultConfig())
			conv := convert(t, tc.src, tc.link, tc.ng)
			var got []Frame
			if _, err := Run(bytes.NewReader(conv), newEngine(policy.DefaultConfig()), func(f Frame) { got = append(got, f) }); err != nil {
				t.Fatal(err)
			}
			// Frames without IP (or, for 228/229, of the other family)
			// are left out of a raw-IP conversion: compare TCP frames.
			a, b := tcpFrames(ref), tcpFrames(got)
			if len(a) != len(b) || len(a) == 0 {
				t.Fatalf("%d TCP frames, want %d", len(b), len(a))
			}
			for i := range a {
				x, y := a[i], b[i]
				x.Index, y.Index = 0, 0
				if x != y {
					t.Errorf("TCP frame %d differs:\n got %+v\nwant %+v", i, y, x)
				}
			}
		})
	}
}

// convert rewrites capture src with link type lt (stripping the link
// header to raw IP when lt is a raw type), as pcap or pcapng.
func convert(t *testing.T, src string, lt layers.LinkType, ng bool) []byte {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(readFile(t, src)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var write func(ci gopacket.CaptureInfo, b []byte) error
	flush := func() error { return nil }
	if ng {
		intf := pcapgo.DefaultNgInterface
		intf.LinkType = lt
		w, err := pcapgo.NewNgWriterInterface(&buf, intf, pcapgo.DefaultNgWriterOptions)
		if err != nil {
			t.Fatal(err)
		}
		write, flush = w.WritePacket, w.Flush
	} else {
		w := pcapgo.NewWriterNanos(&buf)
		if err := w.WriteFileHeader(65535, lt); err != nil {
			t.Fatal(err)
		}
		write = w.WritePacket
	}
	raw := !supportedNonRaw(lt)
	// Re-read the source frames with their link headers for the
	// non-raw conversions.
	frames := rawFrames(t, src)
	for i := 0; ; i++ {
		pk, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var data []byte
		var length int
		if raw {
			if pk.IP == nil || (lt == layers.LinkTypeIPv4 && pk.IP[0]>>4 != 4) || (lt == layers.LinkTypeIPv6 && pk.IP[0]>>4 != 6) {
				continue
			}
			data, length = pk.IP, max(pk.WireLen, len(pk.IP))
		} else {
			data, length = frames[i].data, frames[i].ci.Length
		}
		ci := gopacket.CaptureInfo{Timestamp: pk.Time, CaptureLength: len(data), Length: length}
		if err := write(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func supportedNonRaw(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypePPP, layers.LinkTypePPP_HDLC:
		return true
	}
	return false
}

type rawFrame struct {
	ci   gopacket.CaptureInfo
	data []byte
}

func rawFrames(t *testing.T, src string) []rawFrame {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(readFile(t, src)))
	if err != nil {
		t.Fatal(err)
	}
	var out []rawFrame
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rawFrame{ci, data})
	}
}

// TestHeadersOnly is the daemon's headers-only path (NFQUEUE copy range):
// every IP packet cut to its first 128 bytes, with its wire length, must
// get the same verdict, reason and state as the whole packet.
func TestHeadersOnly(t *testing.T) {
	const copyRange = 128
	for _, c := range captures {
		for _, mode := range []policy.RSTMode{policy.RSTModeWindow, policy.RSTModeExact} {
			t.Run(c.file+"/"+mode.String(), func(t *testing.T) {
				pc := policy.DefaultConfig()
				pc.RSTMode = mode
				full, cut := newEngine(pc), newEngine(pc)
				rd, err := NewReader(bytes.NewReader(readFile(t, c.file)))
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for {
					pk, err := rd.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					a := Decide(full, &pk)
					if pk.IP != nil && len(pk.IP) > copyRange {
						pk.WireLen = max(pk.WireLen, len(pk.IP))
						pk.IP = pk.IP[:copyRange]
						n++
					}
					b := Decide(cut, &pk)
					if a != b {
						t.Errorf("frame %d: whole packet %s/%s before %s, first %d bytes %s/%s before %s",
							a.Index, a.Verdict, a.Reason, a.State, copyRange, b.Verdict, b.Reason, b.State)
					}
				}
				if n == 0 && (c.file == "normal.pcap" || c.file == "forged.pcapng") {
					t.Errorf("no frame was longer than %d bytes: the test cut nothing", copyRange)
				}
			})
		}
	}
}

// TestCorruptCaptures: bad files give errors that say what is wrong, and
// never a panic; the frames before a cut are still replayed.
func TestCorruptCaptures(t *testing.T) {
	normal := readFile(t, "normal.pcap")
	forgedNg := readFile(t, "forged.pcapng")
	for _, tc := range []struct {
		name   string
		b      []byte
		frames bool // some frames are replayed before the error
		substr string
	}{
		{"empty", nil, false, "empty"},
		{"short header", normal[:10], false, "header"},
		{"not a capture", []byte("this is not a capture file at all, just text\n"), false, "not a pcap or pcapng"},
		{"cut mid-frame", normal[:len(normal)/2], true, "unexpected EOF"},
		{"cut pcapng", forgedNg[:len(forgedNg)/2+3], true, ""},
		{"pcapng header only", forgedNg[:40], false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			_, err := Run(bytes.NewReader(tc.b), newEngine(policy.DefaultConfig()), func(Frame) { n++ })
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.substr) {
				t.Errorf("error %q does not mention %q", err, tc.substr)
			}
			if tc.frames != (n > 0) {
				t.Errorf("%d frames replayed before the error", n)
			}
		})
	}
	t.Run("unsupported link type", func(t *testing.T) {
		var buf bytes.Buffer
		w := pcapgo.NewWriter(&buf)
		if err := w.WriteFileHeader(65535, layers.LinkTypeIEEE802_11); err != nil {
			t.Fatal(err)
		}
		_, err := Run(&buf, newEngine(policy.DefaultConfig()), nil)
		if !errors.Is(err, ErrUnsupportedLinkType) {
			t.Fatalf("got %v, want ErrUnsupportedLinkType", err)
		}
	})
}

// TestShortFrames: link headers cut short or frames of other protocols are
// frames without IP, accepted as not_tcp.
func TestShortFrames(t *testing.T) {
	for _, tc := range []struct {
		lt   layers.LinkType
		data []byte
	}{
		{layers.LinkTypeEthernet, []byte{1, 2, 3}},
		{layers.LinkTypeEthernet, append(make([]byte, 12), 0x81, 0x00, 0, 100)},     // VLAN tag, no inner type
		{layers.LinkTypeEthernet, append(make([]byte, 12), 0x08, 0x06, 0, 1, 8, 0)}, // ARP
		{layers.LinkTypeLinuxSLL, make([]byte, 15)},
		{layers.LinkTypeLinuxSLL2, make([]byte, 19)},
		{layers.LinkTypeRaw, []byte{}},
		{layers.LinkTypeRaw, []byte{0x20, 0, 0, 0}},
	} {
		ip, _ := stripLink(tc.lt, tc.data)
		if ip != nil {
			t.Errorf("%s % x: got IP % x", tc.lt, tc.data, ip)
		}
	}
	// A truncated IPv4 header still reaches the engine (malformed).
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	_ = w.WriteFileHeader(65535, layers.LinkTypeRaw)
	b := []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6}
	_ = w.WritePacket(gopacket.CaptureInfo{CaptureLength: len(b), Length: len(b)}, b)
	var fs []Frame
	if _, err := Run(&buf, newEngine(policy.DefaultConfig()), func(f Frame) { fs = append(fs, f) }); err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Verdict != policy.Drop || fs[0].Reason != policy.ReasonMalformed || fs[0].TCP {
		t.Errorf("truncated IPv4 header: %+v, want a malformed drop", fs)
	}
}

// TestGolden pins the JSON lines of every capture under testdata/ in both
// reset modes (SPEC section 8 is a format tools depend on, and a refactor of
// the engine must not change a single verdict, reason or state).
// go test ./replay -run Golden -update rewrites them.
func TestGolden(t *testing.T) {
	modes := []struct {
		suffix string
		cfg    policy.Config
	}{
		{"", policy.DefaultConfig()},
		{".exact", policy.Config{RSTMode: policy.RSTModeExact}},
	}
	names, err := filepath.Glob(filepath.Join("testdata", "*.pcap*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no captures under testdata: %v", err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		for _, m := range modes {
			t.Run(name+m.suffix, func(t *testing.T) {
				var out []byte
				eng := newEngine(m.cfg)
				if _, err := Run(bytes.NewReader(readFile(t, name)), eng, func(f Frame) {
					out = f.AppendJSON(out)
					out = append(out, '\n')
				}); err != nil {
					t.Fatal(err)
				}
				golden := filepath.Join("testdata", strings.TrimSuffix(name, filepath.Ext(name))+m.suffix+".golden")
				if *update {
					if err := os.WriteFile(golden, out, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./replay -run Golden -update)", err)
				}
				if !bytes.Equal(out, want) {
					t.Errorf("JSON lines differ from %s:\n got:\n%s\nwant:\n%s", golden, out, want)
				}
			})
		}
	}
}

// TestJSONLines: every frame of every capture renders as a JSON object
// that encoding/json parses, with the keys of SPEC section 8.
func TestJSONLines(t *testing.T) {
	for _, c := range captures {
		fs, _, _ := replay(t, c.file, policy.DefaultConfig())
		for _, f := range fs {
			line := f.AppendJSON(nil)
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%s frame %d: %v: %s", c.file, f.Index, err, line)
			}
			keys := []string{"frame", "time", "verdict", "reason", "state"}
			if f.IP {
				keys = append(keys, "src", "dst")
			}
			if f.TCP {
				keys = append(keys, "flags", "seq", "ack", "len")
			}
			for _, k := range keys {
				if _, ok := m[k]; !ok {
					t.Errorf("%s frame %d: no %q in %s", c.file, f.Index, k, line)
				}
			}
			if m["frame"] != float64(f.Index) || m["verdict"] != f.Verdict.String() || m["reason"] != f.Reason.String() {
				t.Errorf("%s frame %d: %s", c.file, f.Index, line)
			}
			if f.TCP {
				if _, err := netip.ParseAddrPort(m["src"].(string)); err != nil {
					t.Errorf("%s frame %d: src: %v", c.file, f.Index, err)
				}
				if m["seq"] != float64(f.Seq) || m["ack"] != float64(f.Ack) {
					t.Errorf("%s frame %d: seq/ack: %s", c.file, f.Index, line)
				}
			}
			if len(f.AppendText(nil)) == 0 {
				t.Errorf("%s frame %d: empty text line", c.file, f.Index)
			}
		}
	}
}

// FuzzReplay: arbitrary bytes as a capture never panic the reader or the
// engine. Seeded with the real captures.
func FuzzReplay(f *testing.F) {
	for _, c := range captures {
		b, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			f.Fatal(err)
		}
		if len(b) > 4096 {
			b = b[:4096]
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out []byte
		tc := conntrack.DefaultConfig()
		tc.MaxFlows = 64 // small: a default table costs megabytes per input
		sum, _ := Run(bytes.NewReader(b), policy.NewEngine(policy.DefaultConfig(), tc), func(fr Frame) {
			out = fr.AppendJSON(out[:0])
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
		})
		var n uint64
		for _, c := range sum.Reasons {
			n += c
		}
		if n != uint64(sum.Frames) {
			t.Fatalf("reasons count %d frames, read %d", n, sum.Frames)
		}
	})
}

// subsetCapture rewrites the IP packets of capture src for which keep
// returns true as a raw-IP pcapng capture.
func subsetCapture(t *testing.T, src string, keep func(i int, pk Packet) bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	intf := pcapgo.DefaultNgInterface
	intf.LinkType = layers.LinkTypeRaw
	w, err := pcapgo.NewNgWriterInterface(&buf, intf, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := NewReader(bytes.NewReader(readFile(t, src)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		pk, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if pk.IP == nil || !keep(i, pk) {
			continue
		}
		ci := gopacket.CaptureInfo{Timestamp: pk.Time, CaptureLength: len(pk.IP), Length: max(pk.WireLen, len(pk.IP))}
		if err := w.WritePacket(ci, pk.IP); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMidStreamPickup is the daemon restarting in the middle of a
// connection (SPEC section 3, pickup = true): the forged.pcapng capture
// from its first data segment on. The first segment creates the flow
// (pickup, no flow before it); once both directions are seen, resets are
// checked: the forged reset 2^31 away is dropped in both modes, the one
// 1000 bytes into the window passes only in window mode; the connection
// then closes normally.
func TestMidStreamPickup(t *testing.T) {
	all, _, _ := replay(t, "forged.pcapng", policy.DefaultConfig())
	data := flagged(all, packet.PSH)[0].Index
	b := subsetCapture(t, "forged.pcapng", func(i int, pk Packet) bool { return i+1 >= data })
	for _, mode := range []policy.RSTMode{policy.RSTModeWindow, policy.RSTModeExact} {
		t.Run(mode.String(), func(t *testing.T) {
			pc := policy.DefaultConfig()
			pc.RSTMode = mode
			var fs []Frame
			sum, err := Run(bytes.NewReader(b), newEngine(pc), func(f Frame) { fs = append(fs, f) })
			if err != nil {
				t.Fatal(err)
			}
			tcp := tcpFrames(fs)
			rsts := flagged(tcp, packet.RST)
			if len(rsts) != 2 || sum.FlowsCreated != 1 {
				t.Fatalf("%d resets, %d flows; want the 2 forged resets of the data phase and 1 flow", len(rsts), sum.FlowsCreated)
			}
			want(t, "first segment seen", tcp[0], policy.Accept, policy.ReasonPickup, conntrack.StateNone)
			want(t, "forged RST outside the window", rsts[0], policy.Drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished)
			if mode == policy.RSTModeWindow {
				want(t, "forged RST inside the window", rsts[1], policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished)
				return
			}
			want(t, "forged RST inside the window", rsts[1], policy.Drop, policy.ReasonRSTNotExact, conntrack.StateEstablished)
			legit := without(fs, rsts...)
			wantLegit(t, legit, map[int]bool{tcp[0].Index: true})
			checkClose(t, tcpFrames(legit))
		})
	}
}

// TestRegeneratedCaptures regenerates every capture from real Linux TCP
// (testdata/gen: network namespaces rgrp-c and rgrp-s, tcpdump; then
// testdata/linkgen for the link types) and runs the verdict tests on the
// new files, so the committed captures are known
// to be reproducible and not a lucky draw. It needs root, iproute2 and
// tcpdump:
//
//	sudo go test ./replay -run RegeneratedCaptures -v
//
// With RSTGUARD_E2E=1 a missing privilege or tool fails the test.
func TestRegeneratedCaptures(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("RSTGUARD_E2E") == "1" {
		skip = t.Fatalf
	}
	if testing.Short() {
		t.Skip("-short: not regenerating captures")
	}
	if os.Geteuid() != 0 {
		skip("needs root (network namespaces, tcpdump): sudo go test ./replay -run RegeneratedCaptures")
	}
	for _, tool := range []string{"ip", "tcpdump", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip("needs %s in PATH (apt-get install -y iproute2 tcpdump): %v", tool, err)
		}
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "run", "./testdata/gen", "-out", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./testdata/gen: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	out, err = exec.CommandContext(ctx, "go", "run", "./testdata/linkgen", "-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./testdata/linkgen: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	captureDir = dir
	defer func() { captureDir = "testdata" }()
	for _, c := range captures {
		if b := readFile(t, c.file); len(b) > 100<<10 {
			t.Errorf("%s: %d bytes, keep captures under 100 KiB", c.file, len(b))
		}
	}
	for name, fn := range map[string]func(*testing.T){
		"Normal": TestNormalConnection, "Refused": TestRefused, "Abort": TestAbort,
		"IPv6VLAN": TestIPv6VLAN, "ECN": TestECNSetupSYN, "Forged": TestForgedResets,
		"Pickup": TestMidStreamPickup, "LinkTypes": TestLinkTypes, "HeadersOnly": TestHeadersOnly,
		"JSONLines": TestJSONLines, "LinkTypeCaptures": TestLinkTypeCaptures,
	} {
		t.Run(name, fn)
	}
}

// BenchmarkRun replays normal.pcap (about 40 frames) per iteration, JSON
// lines included: the cost of the offline tool, not of the daemon's path.
func BenchmarkRun(b *testing.B) {
	capture := readFile(b, "normal.pcap")
	tc := conntrack.DefaultConfig()
	tc.MaxFlows = 1024
	var line []byte
	b.ReportAllocs()
	for b.Loop() {
		eng := policy.NewEngine(policy.DefaultConfig(), tc)
		if _, err := Run(bytes.NewReader(capture), eng, func(f Frame) { line = f.AppendJSON(line[:0]) }); err != nil {
			b.Fatal(err)
		}
	}
}
