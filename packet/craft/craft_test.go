package craft

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

var (
	c4 = netip.MustParseAddrPort("192.0.2.1:42000")
	s4 = netip.MustParseAddrPort("198.51.100.2:80")
	c6 = netip.MustParseAddrPort("[2001:db8::1]:50000")
	s6 = netip.MustParseAddrPort("[2001:db8::2]:443")
)

func builderCases() []struct {
	name string
	tcp  TCP
} {
	hbhFirst, hbhChain := Chain(PadN(HopByHop, 1), PadN(DestOpts, 2))
	rtFirst, rtChain := Chain(RoutingHdr(), AuthHdr(3))
	frFirst, frChain := Chain(Fragment(0, true, 42))
	return []struct {
		name string
		tcp  TCP
	}{
		{"tcp4_syn", TCP{Src: c4, Dst: s4, Seq: 0xfffffff0, Flags: packet.SYN, Window: 64240,
			Options: Options(MSS(1460), SACKPerm(), Timestamp(100, 0), NOP(), WScale(7))}},
		{"tcp4_syn_ecn_ae_reserved", TCP{Src: c4, Dst: s4, Seq: 1, Flags: packet.SYN | packet.ECE | packet.CWR | packet.AE | packet.Reserved,
			Options: Options(MSS(1400), WScale(15))}},
		{"tcp4_data_odd_length", TCP{Src: c4, Dst: s4, Seq: 1001, Ack: 2002, Flags: packet.PSH | packet.ACK, Window: 502,
			Options: Options(NOP(), NOP(), Timestamp(7, 9)), Payload: []byte("hello")}},
		{"tcp4_rst_ack_with_data", TCP{Src: s4, Dst: c4, Seq: 5, Ack: 6, Flags: packet.RST | packet.ACK, Payload: []byte("connection reset"), TTL: 1}},
		{"tcp4_unpadded_options", TCP{Src: c4, Dst: s4, Flags: packet.SYN, Options: Options(MSS(536), SACKPerm(), TFOCookie([]byte{1, 2, 3, 4, 5, 6, 7, 8}), WScale(2))}},
		{"tcp6_data", TCP{Src: c6, Dst: s6, Seq: 0x80000000, Ack: 1, Flags: packet.ACK, Window: 65535, Payload: bytes.Repeat([]byte{0xab}, 1001)}},
		{"tcp6_sack", TCP{Src: s6, Dst: c6, Seq: 9, Ack: 10, Flags: packet.ACK,
			Options: Options(NOP(), NOP(), SACK([2]uint32{100, 200}, [2]uint32{0xfffffff0, 0x10}))}},
		{"tcp6_hbh_destopts", TCP{Src: c6, Dst: s6, Seq: 7, Flags: packet.SYN, Options: TFOCookieExp([]byte{9, 9, 9, 9}),
			IPv6ExtType: hbhFirst, IPv6Ext: hbhChain, Payload: []byte("tfo data")}},
		{"tcp6_routing_ah", TCP{Src: c6, Dst: s6, Seq: 7, Flags: packet.FIN | packet.ACK, IPv6ExtType: rtFirst, IPv6Ext: rtChain}},
		{"tcp6_first_fragment", TCP{Src: c6, Dst: s6, Seq: 7, Flags: packet.ACK, IPv6ExtType: frFirst, IPv6Ext: frChain, Payload: []byte("x")}},
	}
}

// TestBytesGopacket cross-checks the builder against gopacket's decoder:
// every field and both checksums.
func TestBytesGopacket(t *testing.T) {
	for _, tc := range builderCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.tcp.Bytes()
			pkt := gopacket.NewPacket(b, ipLayerType(b), gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("gopacket: %v", el.Error())
			}
			tl, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tc.name == "tcp6_first_fragment" {
				// gopacket does not decode past a fragment header; check
				// the checksum with our own code instead.
				checkOwnChecksum(t, b, 48)
				return
			}
			if !ok {
				t.Fatalf("gopacket found no TCP layer in %v", pkt)
			}
			net := pkt.NetworkLayer()
			if err := tl.SetNetworkLayerForChecksum(net); err != nil {
				t.Fatal(err)
			}
			if _, res := tl.VerifyChecksum(); !res.Valid {
				t.Errorf("TCP checksum %#x, want %#x", res.Actual, res.Correct)
			}
			if ip4, ok := net.(*layers.IPv4); ok {
				if _, res := ip4.VerifyChecksum(); !res.Valid {
					t.Errorf("IPv4 checksum %#x, want %#x", res.Actual, res.Correct)
				}
				wantTTL := tc.tcp.TTL
				if wantTTL == 0 {
					wantTTL = 64
				}
				if ip4.TTL != wantTTL {
					t.Errorf("TTL %d, want %d", ip4.TTL, wantTTL)
				}
				if int(ip4.Length) != len(b) {
					t.Errorf("IPv4 length %d, want %d", ip4.Length, len(b))
				}
			}
			src, dst := net.NetworkFlow().Endpoints()
			if !bytes.Equal(src.Raw(), tc.tcp.Src.Addr().AsSlice()) || uint16(tl.SrcPort) != tc.tcp.Src.Port() {
				t.Errorf("src %v:%d, want %v", src, tl.SrcPort, tc.tcp.Src)
			}
			if !bytes.Equal(dst.Raw(), tc.tcp.Dst.Addr().AsSlice()) || uint16(tl.DstPort) != tc.tcp.Dst.Port() {
				t.Errorf("dst %v:%d, want %v", dst, tl.DstPort, tc.tcp.Dst)
			}
			if tl.Seq != tc.tcp.Seq || tl.Ack != tc.tcp.Ack || tl.Window != tc.tcp.Window {
				t.Errorf("seq/ack/window %d/%d/%d, want %d/%d/%d", tl.Seq, tl.Ack, tl.Window, tc.tcp.Seq, tc.tcp.Ack, tc.tcp.Window)
			}
			f := tc.tcp.Flags
			gf := [...]bool{tl.FIN, tl.SYN, tl.RST, tl.PSH, tl.ACK, tl.URG, tl.ECE, tl.CWR, tl.NS}
			for i, set := range gf {
				if set != (f&(1<<i) != 0) {
					t.Errorf("flag bit %d: gopacket %v, built %v", i, set, f)
				}
			}
			if !bytes.Equal(tl.Payload, tc.tcp.Payload) {
				t.Errorf("payload %q, want %q", tl.Payload, tc.tcp.Payload)
			}
			if int(tl.DataOffset)*4 != 20+(len(tc.tcp.Options)+3)/4*4 {
				t.Errorf("data offset %d for %d option octets", tl.DataOffset, len(tc.tcp.Options))
			}
		})
	}
}

// checkOwnChecksum verifies the TCP checksum of an IPv6 packet whose TCP
// header starts at off, with the RFC 1071 receiver test (sum is all ones).
func checkOwnChecksum(t *testing.T, b []byte, off int) {
	t.Helper()
	src, _ := netip.AddrFromSlice(b[8:24])
	dst, _ := netip.AddrFromSlice(b[24:40])
	if c := Checksum(b[off:], pseudoSum(src, dst, len(b)-off)); c != 0 {
		t.Errorf("TCP checksum does not verify: %#x", c)
	}
}

func ipLayerType(b []byte) gopacket.LayerType {
	if b[0]>>4 == 4 {
		return layers.LayerTypeIPv4
	}
	return layers.LayerTypeIPv6
}

// TestBytesDecode round-trips the builder through packet.Decode.
func TestBytesDecode(t *testing.T) {
	for _, tc := range builderCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.tcp.Bytes()
			var p packet.Parsed
			packet.Decode(b, 0, &p)
			if p.Kind != packet.KindTCP {
				t.Fatalf("Kind = %d, want KindTCP", p.Kind)
			}
			if p.SrcAddrPort() != tc.tcp.Src || p.DstAddrPort() != tc.tcp.Dst {
				t.Errorf("addresses %v -> %v, want %v -> %v", p.SrcAddrPort(), p.DstAddrPort(), tc.tcp.Src, tc.tcp.Dst)
			}
			if p.Seq != seqnum.Value(tc.tcp.Seq) || p.Ack != seqnum.Value(tc.tcp.Ack) || p.Flags != tc.tcp.Flags || p.Window != tc.tcp.Window {
				t.Errorf("got seq %d ack %d flags %q window %d", p.Seq, p.Ack, p.Flags, p.Window)
			}
			if int(p.PayloadLen) != len(tc.tcp.Payload) {
				t.Errorf("PayloadLen = %d, want %d", p.PayloadLen, len(tc.tcp.Payload))
			}
			if int(p.IPHeaderLen)+int(p.TCPHeaderLen)+int(p.PayloadLen) != len(b) {
				t.Errorf("lengths %d+%d+%d != %d", p.IPHeaderLen, p.TCPHeaderLen, p.PayloadLen, len(b))
			}
		})
	}
}

func TestOptionHelpers(t *testing.T) {
	tests := []struct {
		name string
		opt  []byte
		want packet.Parsed // option fields only
	}{
		{"mss", MSS(1460), packet.Parsed{Opts: packet.OptMSS, MSS: 1460}},
		{"wscale", WScale(9), packet.Parsed{Opts: packet.OptWScale, WScale: 9}},
		{"wscale_clamped", WScale(30), packet.Parsed{Opts: packet.OptWScale, WScale: packet.MaxWScale}},
		{"sackperm", SACKPerm(), packet.Parsed{Opts: packet.OptSACKPerm}},
		{"timestamp", Timestamp(0xdeadbeef, 3), packet.Parsed{Opts: packet.OptTimestamp, TSVal: 0xdeadbeef, TSEcr: 3}},
		{"sack", SACK([2]uint32{1, 5}, [2]uint32{10, 20}), packet.Parsed{Opts: packet.OptSACK, SACKEdge: 20}},
		{"tfo", TFOCookie([]byte{1, 2, 3, 4}), packet.Parsed{Opts: packet.OptTFOCookie}},
		{"tfo_request", TFOCookie(nil), packet.Parsed{Opts: packet.OptTFOCookie}},
		{"tfo_exp", TFOCookieExp([]byte{1, 2, 3, 4, 5, 6}), packet.Parsed{Opts: packet.OptTFOCookie}},
		{"nop", NOP(), packet.Parsed{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := TCP{Src: c4, Dst: s4, Flags: packet.SYN, Options: tt.opt}.Bytes()
			var p packet.Parsed
			packet.Decode(b, 0, &p)
			got := packet.Parsed{Opts: p.Opts, MSS: p.MSS, WScale: p.WScale, TSVal: p.TSVal, TSEcr: p.TSEcr, SACKEdge: p.SACKEdge}
			if p.Kind != packet.KindTCP || got != tt.want {
				t.Errorf("kind %d, options %+v, want %+v", p.Kind, got, tt.want)
			}
		})
	}
}

func TestFragment4(t *testing.T) {
	full := TCP{Src: c4, Dst: s4, Seq: 1, Flags: packet.ACK, Payload: bytes.Repeat([]byte{7}, 100)}.Bytes()
	first := Fragment4(full, 0, 24)
	rest := Fragment4(full, 24, 1000)
	if len(first) != 44 || len(rest) != 20+120-24 {
		t.Fatalf("lengths %d, %d", len(first), len(rest))
	}
	for i, f := range [][]byte{first, rest} {
		pkt := gopacket.NewPacket(f, layers.LayerTypeIPv4, gopacket.Default)
		ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			t.Fatalf("fragment %d: no IPv4 layer: %v", i, pkt)
		}
		if _, res := ip.VerifyChecksum(); !res.Valid {
			t.Errorf("fragment %d: IPv4 checksum %#x, want %#x", i, res.Actual, res.Correct)
		}
		wantMF := i == 0
		if ip.Flags&layers.IPv4MoreFragments != 0 != wantMF || int(ip.FragOffset)*8 != i*24 {
			t.Errorf("fragment %d: flags %v offset %d", i, ip.Flags, ip.FragOffset)
		}
	}
	var p packet.Parsed
	packet.Decode(first, 0, &p)
	if p.Kind != packet.KindTCP || p.PayloadLen != 4 {
		t.Errorf("first fragment: kind %d payload %d, want KindTCP 4", p.Kind, p.PayloadLen)
	}
	packet.Decode(rest, 0, &p)
	if p.Kind != packet.KindFragment {
		t.Errorf("second fragment: kind %d, want KindFragment", p.Kind)
	}
	packet.Decode(Fragment4(full, 0, 8), 0, &p)
	if p.Kind != packet.KindMalformed {
		t.Errorf("tiny first fragment: kind %d, want KindMalformed", p.Kind)
	}
}

func TestFragment6(t *testing.T) {
	first, chain := Chain(PadN(HopByHop, 1), Fragment(1448, true, 7))
	b := TCP{Src: c6, Dst: s6, Flags: packet.ACK, IPv6ExtType: first, IPv6Ext: chain}.Bytes()
	var p packet.Parsed
	packet.Decode(b, 0, &p)
	if p.Kind != packet.KindFragment || p.Proto != TCPProto || p.IPHeaderLen != 56 {
		t.Errorf("got kind %d proto %d header %d, want KindFragment 6 56", p.Kind, p.Proto, p.IPHeaderLen)
	}
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv6, gopacket.Default)
	fr, ok := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
	if !ok || fr.FragmentOffset*8 != 1448 || !fr.MoreFragments || fr.Identification != 7 {
		t.Errorf("gopacket sees %+v in %v", fr, pkt)
	}
}

func TestChecksum(t *testing.T) {
	// RFC 1071 4.1 example: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(b, 0); got != ^uint16(0xddf2) {
		t.Errorf("Checksum = %#x, want %#x", got, ^uint16(0xddf2))
	}
	odd := []byte{0xab, 0xcd, 0xef}
	if got, want := Checksum(odd, 0), gopacket.FoldChecksum(gopacket.ComputeChecksum(odd, 0)); got != want {
		t.Errorf("odd Checksum = %#x, gopacket %#x", got, want)
	}
}

// TestBuildErrors: input the lab can pass (mixed families, too many
// options, an oversized payload) is an error from Build, never a panic.
func TestBuildErrors(t *testing.T) {
	for _, tc := range []TCP{
		{Src: c4, Dst: s6}, {Src: c6, Dst: s4}, {Src: c4},
		{Src: c4, Dst: s4, Options: make([]byte, 41)},
		{Src: c4, Dst: s4, Payload: make([]byte, 65536-40)},
		{Src: c6, Dst: s6, Payload: make([]byte, 65536-20)},
	} {
		if b, err := tc.Build(); err == nil {
			t.Errorf("Build(%v -> %v, %d option octets, %d payload octets) = %d octets, want an error",
				tc.Src, tc.Dst, len(tc.Options), len(tc.Payload), len(b))
		}
	}
	if b, err := (TCP{Src: c4, Dst: s4, Payload: make([]byte, 65535-40)}).Build(); err != nil || len(b) != 65535 {
		t.Errorf("largest IPv4 packet: %d octets, %v; want 65535", len(b), err)
	}
}

func TestBytesMixedFamiliesPanics(t *testing.T) {
	for _, tc := range []TCP{{Src: c4, Dst: s6}, {Src: c6, Dst: s4}, {Src: c4}} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("Bytes(%v -> %v) did not panic", tc.Src, tc.Dst)
				}
			}()
			tc.Bytes()
		}()
	}
}
