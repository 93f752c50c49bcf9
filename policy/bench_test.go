package policy

import (
	"net/netip"
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
)

// benchTable returns an engine tracking n established flows (client ports
// 1..n towards one server) and the addresses of the last one. Every flow
// goes through a real handshake as bytes through Decode and Decide.
func benchTable(tb testing.TB, n int) (*Engine, netip.Addr, netip.AddrPort, int64) {
	tb.Helper()
	tc := conntrack.DefaultConfig()
	tc.MaxFlows = 2 * n
	e := NewEngine(DefaultConfig(), tc)
	srv := netip.MustParseAddrPort("198.51.100.20:443")
	cli := netip.MustParseAddr("192.0.2.10")
	now := int64(1e9)
	ws := craft.Options(craft.MSS(1460), craft.WScale(7))
	for i := 0; i < n; i++ {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i>>16)}), uint16(i))
		if i == n-1 {
			cli = c.Addr()
		}
		for _, pkt := range []craft.TCP{
			{Src: c, Dst: srv, Seq: cISN, Flags: packet.SYN, Window: 64240, Options: ws},
			{Src: srv, Dst: c, Seq: sISN, Ack: cISN + 1, Flags: packet.SYN | packet.ACK, Window: 65160, Options: ws},
			{Src: c, Dst: srv, Seq: cISN + 1, Ack: sISN + 1, Flags: packet.ACK, Window: 502},
		} {
			now += 1000
			if r := processRef(e, pkt.Bytes(), 0, now).Reason; r != ReasonTracked {
				tb.Fatalf("handshake %d: %s", i, r)
			}
		}
	}
	if e.Table().Len() != n {
		tb.Fatalf("table has %d flows, want %d", e.Table().Len(), n)
	}
	return e, cli, netip.AddrPortFrom(cli, uint16(n-1)), now
}

// headers returns the first copyRange bytes of pkt and its wire length,
// as NFQUEUE hands them to the daemon (headers-only copy).
func headers(pkt []byte, copyRange int) ([]byte, int) {
	if len(pkt) <= copyRange {
		return pkt, 0
	}
	return pkt[:copyRange], len(pkt)
}

// BenchmarkEstablishedData is SPEC 10's engine target: parse + lookup +
// decide + update of a data segment of an established flow in a table of
// 100,000 flows, as the daemon sees it (a 1448-byte segment of which the
// kernel copied 256 bytes). Target: 100 ns/op or less, 0 allocs/op.
func BenchmarkEstablishedData(b *testing.B) { benchEstablished(b, DefaultConfig()) }

// benchEstablished is BenchmarkEstablishedData with the engine configured
// by pc.
func benchEstablished(b *testing.B, pc Config) {
	e, _, c, now := benchTable(b, 100000)
	e.Reconfigure(pc, e.Table().Config())
	srv := netip.MustParseAddrPort("198.51.100.20:443")
	pkt := craft.TCP{
		Src: c, Dst: srv, Seq: cISN + 1, Ack: sISN + 1, Flags: packet.ACK | packet.PSH, Window: 502,
		Options: craft.Options(craft.NOP(), craft.NOP(), craft.Timestamp(1, 2)),
		Payload: make([]byte, 1448),
	}.Bytes()
	hdr, wire := headers(pkt, 256)
	if r := processRef(e, hdr, wire, now).Reason; r != ReasonTracked {
		b.Fatalf("first data segment: %s", r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The same segment again: a retransmission is in window and
		// takes the whole update path.
		if v := processRef(e, hdr, wire, now).Verdict; v != Accept {
			b.Fatal("dropped")
		}
	}
}

// BenchmarkRSTValidation: parse + lookup + decide of a reset (out of window,
// dropped, so the flow survives every iteration) in the same table.
func BenchmarkRSTValidation(b *testing.B) {
	e, _, c, now := benchTable(b, 100000)
	srv := netip.MustParseAddrPort("198.51.100.20:443")
	for _, bc := range []struct {
		name string
		seq  uint32
		mode RSTMode
		want Reason
	}{
		{"out_of_window", sISN + 1 + 1<<31, RSTModeWindow, ReasonRSTOutOfWindow},
		{"in_window_not_exact", sISN + 1 + 1000, RSTModeExact, ReasonRSTNotExact},
	} {
		e.Reconfigure(Config{RSTMode: bc.mode}, e.Table().Config())
		pkt := craft.TCP{Src: srv, Dst: c, Seq: bc.seq, Flags: packet.RST}.Bytes()
		b.Run(bc.name, func(b *testing.B) {
			if r := processRef(e, pkt, 0, now).Reason; r != bc.want {
				b.Fatalf("got %s, want %s", r, bc.want)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				processRef(e, pkt, 0, now)
			}
		})
	}
}

// TestProcessNoAllocs: STYLE rule 12 through the daemon's entry point
// (decode + decide) for each packet class.
func TestProcessNoAllocs(t *testing.T) {
	e, _, c, now := benchTable(t, 10)
	srv := netip.MustParseAddrPort("198.51.100.20:443")
	v6c := netip.MustParseAddrPort("[2001:db8:1::10]:40000")
	v6s := netip.MustParseAddrPort("[2001:db8:2::20]:443")
	first, chain := craft.Chain(craft.PadN(craft.HopByHop, 1), craft.PadN(craft.DestOpts, 1))
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"tcp4 SYN", craft.TCP{Src: netip.MustParseAddrPort("192.0.2.99:1"), Dst: srv, Seq: 1, Flags: packet.SYN, Options: craft.Options(craft.MSS(1460), craft.WScale(7), craft.SACKPerm())}.Bytes()},
		{"tcp4 ACK data", craft.TCP{Src: c, Dst: srv, Seq: cISN + 1, Ack: sISN + 1, Flags: packet.ACK, Window: 502, Payload: make([]byte, 100)}.Bytes()},
		{"tcp4 in-window RST", craft.TCP{Src: srv, Dst: c, Seq: sISN + 100, Flags: packet.RST}.Bytes()},
		{"tcp4 out-of-window RST", craft.TCP{Src: srv, Dst: c, Seq: sISN + 1<<31, Flags: packet.RST}.Bytes()},
		{"tcp6 SYN with extension headers", craft.TCP{Src: v6c, Dst: v6s, Seq: 1, Flags: packet.SYN, IPv6Ext: chain, IPv6ExtType: first}.Bytes()},
		{"tcp6 ACK", craft.TCP{Src: v6c, Dst: v6s, Seq: 2, Ack: 1, Flags: packet.ACK}.Bytes()},
		{"malformed", []byte{0x45, 0, 0, 20}},
	} {
		n := minAllocsPerRun(t, 200, func() { processRef(e, tc.pkt, 0, now) })
		if n != 0 {
			t.Errorf("%s: %v allocs per Decode+Decide, want 0", tc.name, n)
		}
	}
}

// BenchmarkEstablishedDataSpread is BenchmarkEstablishedData with each
// iteration on a different one of the 100,000 flows (round robin), so the
// flow and its index slot are usually not in cache: the cost a busy gateway
// with many active flows pays.
func BenchmarkEstablishedDataSpread(b *testing.B) {
	const n = 100000
	e, _, _, now := benchTable(b, n)
	srv := netip.MustParseAddrPort("198.51.100.20:443")
	pkts := make([][]byte, n)
	for i := range pkts {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i>>16)}), uint16(i))
		pkts[i] = craft.TCP{
			Src: c, Dst: srv, Seq: cISN + 1, Ack: sISN + 1, Flags: packet.ACK | packet.PSH, Window: 502,
			Options: craft.Options(craft.NOP(), craft.NOP(), craft.Timestamp(1, 2)),
			Payload: make([]byte, 100),
		}.Bytes()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v := processRef(e, pkts[i%n], 0, now).Verdict; v != Accept {
			b.Fatal("dropped")
		}
	}
}

// TestIPv6ExtensionHeadersConversation drives a whole IPv6 connection as
// bytes through Decode and Decide, every segment carrying hop-by-hop and
// destination-options headers (RFC 8200 4), with sequence numbers across
// 2^32: handshake, data both ways, a forged reset dropped, the real one
// accepted.
func TestIPv6ExtensionHeadersConversation(t *testing.T) {
	e := NewEngine(DefaultConfig(), conntrack.DefaultConfig())
	cli := netip.MustParseAddrPort("[2001:db8:1::10]:40000")
	srv := netip.MustParseAddrPort("[2001:db8:2::20]:443")
	first, chain := craft.Chain(craft.PadN(craft.HopByHop, 1), craft.PadN(craft.DestOpts, 2))
	now := int64(1e9)
	step := func(p craft.TCP, want Reason) {
		t.Helper()
		p.IPv6Ext, p.IPv6ExtType = chain, first
		now += 1e6
		if r := processRef(e, p.Bytes(), 0, now).Reason; r != want {
			t.Fatalf("%s seq %d: got %s, want %s", p.Flags, p.Seq, r, want)
		}
	}
	ws := craft.Options(craft.MSS(1440), craft.WScale(7), craft.SACKPerm())
	c, s := cISN, sISN
	step(craft.TCP{Src: cli, Dst: srv, Seq: c, Flags: packet.SYN, Window: 64800, Options: ws}, ReasonTracked)
	step(craft.TCP{Src: srv, Dst: cli, Seq: s, Ack: c + 1, Flags: packet.SYN | packet.ACK, Window: 64800, Options: ws}, ReasonTracked)
	c, s = c+1, s+1
	step(craft.TCP{Src: cli, Dst: srv, Seq: c, Ack: s, Flags: packet.ACK, Window: 507}, ReasonTracked)
	for i := 0; i < 20; i++ {
		step(craft.TCP{Src: cli, Dst: srv, Seq: c, Ack: s, Flags: packet.ACK | packet.PSH, Window: 507, Payload: make([]byte, 1200)}, ReasonTracked)
		c += 1200
		step(craft.TCP{Src: srv, Dst: cli, Seq: s, Ack: c, Flags: packet.ACK | packet.PSH, Window: 507, Payload: make([]byte, 1200)}, ReasonTracked)
		s += 1200
	}
	if c > cISN || s > sISN {
		t.Fatalf("sequence numbers did not cross 2^32")
	}
	step(craft.TCP{Src: srv, Dst: cli, Seq: s + 1<<31, Flags: packet.RST}, ReasonRSTOutOfWindow)
	step(craft.TCP{Src: cli, Dst: srv, Seq: c, Ack: s, Flags: packet.ACK, Window: 507}, ReasonTracked)
	step(craft.TCP{Src: srv, Dst: cli, Seq: s, Ack: c, Flags: packet.RST | packet.ACK}, ReasonRSTValid)
}

// BenchmarkEstablishedDataInjection is BenchmarkEstablishedData under each
// [injection] mode: the evidence checks of "log" (the default) and "hold"
// cost one comparison of the flow's hold and its state on a segment of a
// live flow. Compare the modes within one run.
func BenchmarkEstablishedDataInjection(b *testing.B) {
	for _, m := range []InjectionMode{InjectionOff, InjectionLog, InjectionHold} {
		b.Run("mode="+m.String(), func(b *testing.B) {
			pc := DefaultConfig()
			pc.Injection.Mode = m
			benchEstablished(b, pc)
		})
	}
}
