package packet

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// mustHexDecode decodes spaced hex, ignoring whitespace and // comments.
func mustHexDecode(s string) []byte {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		panic(err)
	}
	return out
}

func a16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

var (
	v4src, v4dst = a16("::ffff:192.0.2.1"), a16("::ffff:198.51.100.2")
	v6src, v6dst = a16("2001:db8::1"), a16("2001:db8::2")
)

// Test packets. Checksums are zero: Decode does not check them (the kernel
// has, before NFQUEUE).
var (
	tcp4SYN = mustHexDecode(`
		45 00 00 3c  // version 4, IHL 5, total length 60
		1c 46 40 00  // id, DF, fragment offset 0
		40 06 00 00  // TTL 64, protocol TCP, header checksum
		c0 00 02 01  // src 192.0.2.1
		c6 33 64 02  // dst 198.51.100.2
		a4 10 00 50  // src port 42000, dst port 80
		ff ff ff f0  // seq 0xfffffff0
		00 00 00 00  // ack 0
		a0 02 fa f0  // data offset 10 (40 octets), flags SYN, window 64240
		00 00 00 00  // checksum, urgent pointer
		02 04 05 b4  // MSS 1460
		04 02 08 0a  // SACK-permitted; timestamps (kind 8, length 10)
		00 00 00 64  //   TSval 100
		00 00 00 00  //   TSecr 0
		01 03 03 07  // NOP; window scale 7
	`)
	tcp4SYNWant = Parsed{
		Kind: KindTCP, IPVersion: 4, Proto: 6, Src: v4src, Dst: v4dst,
		SrcPort: 42000, DstPort: 80, Flags: SYN, Seq: 0xfffffff0, Window: 64240,
		IPHeaderLen: 20, TCPHeaderLen: 40,
		Opts: OptMSS | OptSACKPerm | OptTimestamp | OptWScale, MSS: 1460, WScale: 7, TSVal: 100,
	}

	tcp4Data = mustHexDecode(`
		45 00 00 39  // version 4, IHL 5, total length 57
		1c 47 40 00  // id, DF
		40 06 00 00  // TTL 64, TCP
		c0 00 02 01  // src 192.0.2.1
		c6 33 64 02  // dst 198.51.100.2
		a4 10 00 50  // ports 42000 -> 80
		00 00 03 e9  // seq 1001
		00 01 00 01  // ack 65537
		80 18 01 f6  // data offset 8 (32 octets), flags PSH|ACK, window 502
		00 00 00 00  // checksum, urgent pointer
		01 01 08 0a  // NOP, NOP, timestamps
		00 00 00 65  //   TSval 101
		00 00 00 c8  //   TSecr 200
		68 65 6c 6c 6f  // payload "hello"
	`)
	tcp4DataWant = Parsed{
		Kind: KindTCP, IPVersion: 4, Proto: 6, Src: v4src, Dst: v4dst,
		SrcPort: 42000, DstPort: 80, Flags: PSH | ACK, Seq: 1001, Ack: 65537, Window: 502,
		PayloadLen: 5, IPHeaderLen: 20, TCPHeaderLen: 32,
		Opts: OptTimestamp, TSVal: 101, TSEcr: 200,
	}

	tcp4RST = mustHexDecode(`
		45 00 00 28  // version 4, IHL 5, total length 40
		00 00 40 00  // id 0, DF
		40 06 00 00  // TTL 64, TCP
		c6 33 64 02  // src 198.51.100.2
		c0 00 02 01  // dst 192.0.2.1
		00 50 a4 10  // ports 80 -> 42000
		00 01 00 01  // seq 65537
		00 00 00 00  // ack 0
		50 04 00 00  // data offset 5, flags RST, window 0
		00 00 00 00  // checksum, urgent pointer
	`)
	tcp4RSTWant = Parsed{
		Kind: KindTCP, IPVersion: 4, Proto: 6, Src: v4dst, Dst: v4src,
		SrcPort: 80, DstPort: 42000, Flags: RST, Seq: 65537,
		IPHeaderLen: 20, TCPHeaderLen: 20,
	}

	tcp6Data = mustHexDecode(`
		60 00 00 00  // version 6, traffic class 0, flow label 0
		00 1c 06 40  // payload length 28, next header TCP, hop limit 64
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01  // src 2001:db8::1
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02  // dst 2001:db8::2
		c3 50 01 bb  // ports 50000 -> 443
		80 00 00 00  // seq 0x80000000
		00 00 00 01  // ack 1
		50 10 ff ff  // data offset 5, flags ACK, window 65535
		00 00 00 00  // checksum, urgent pointer
		00 01 02 03 04 05 06 07  // payload, 8 octets
	`)
	tcp6DataWant = Parsed{
		Kind: KindTCP, IPVersion: 6, Proto: 6, Src: v6src, Dst: v6dst,
		SrcPort: 50000, DstPort: 443, Flags: ACK, Seq: 0x80000000, Ack: 1, Window: 65535,
		PayloadLen: 8, IPHeaderLen: 40, TCPHeaderLen: 20,
	}

	tcp6Ext = mustHexDecode(`
		60 00 00 00  // version 6
		00 24 00 40  // payload length 36, next header hop-by-hop (0), hop limit 64
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01  // src 2001:db8::1
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02  // dst 2001:db8::2
		3c 00 01 04 00 00 00 00  // hop-by-hop: next dest options (60), length 0 (8 octets), PadN 4
		06 00 01 04 00 00 00 00  // destination options: next TCP, length 0, PadN 4
		c3 50 01 bb  // ports 50000 -> 443
		00 00 00 07  // seq 7
		00 00 00 00  // ack 0
		50 c2 10 00  // data offset 5, flags CWR|ECE|SYN, window 4096
		00 00 00 00  // checksum, urgent pointer
	`)
	tcp6ExtWant = Parsed{
		Kind: KindTCP, IPVersion: 6, Proto: 6, Src: v6src, Dst: v6dst,
		SrcPort: 50000, DstPort: 443, Flags: CWR | ECE | SYN, Seq: 7, Window: 4096,
		IPHeaderLen: 56, TCPHeaderLen: 20,
	}
)

// v4 is tcp4RST with the given IP header octets (from offset 0) replaced.
func v4(patch ...byte) []byte {
	b := clone(tcp4RST)
	copy(b, patch)
	return b
}

// tcpPatch returns pkt with the TCP header octets from offset off replaced.
func tcpPatch(pkt []byte, ipHdr int, off int, patch ...byte) []byte {
	b := clone(pkt)
	copy(b[ipHdr+off:], patch)
	return b
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// ipv6 builds an IPv6 packet from 2001:db8::1 to 2001:db8::2 with next
// header nh and the given body; the payload length is len(body) unless plen
// >= 0.
func ipv6(nh byte, plen int, body string) []byte {
	b := mustHexDecode(`
		60 00 00 00
		00 00 00 40
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 02
	` + body)
	if plen < 0 {
		plen = len(b) - 40
	}
	b[4], b[5], b[6] = byte(plen>>8), byte(plen), nh
	return b
}

// tcp6Hdr is a 20-octet TCP header (ports 50000 -> 443, seq 7, ACK, window
// 4096) for IPv6 chain tests.
const tcp6Hdr = `
	c3 50 01 bb 00 00 00 07 00 00 00 00 50 10 10 00 00 00 00 00
`

// hbh is an 8-octet hop-by-hop or destination options header whose next
// header is nh.
func hbh(nh byte) string { return hex.EncodeToString([]byte{nh, 0, 1, 4, 0, 0, 0, 0}) }

var tcp6ChainWant = func(hdrLen uint16) Parsed {
	return Parsed{
		Kind: KindTCP, IPVersion: 6, Proto: 6, Src: v6src, Dst: v6dst,
		SrcPort: 50000, DstPort: 443, Flags: ACK, Seq: 7, Window: 4096,
		IPHeaderLen: hdrLen, TCPHeaderLen: 20,
	}
}

type decodeTest struct {
	name    string
	b       []byte
	wireLen int
	want    Parsed
}

func decodeTests() []decodeTest {
	// v4Head is what Decode fills for tcp4RST before it reaches TCP.
	v4Head := func(k Kind) Parsed {
		return Parsed{Kind: k, IPVersion: 4, Proto: 6, Src: v4dst, Dst: v4src, IPHeaderLen: 20}
	}
	// rstTCP is tcp4RSTWant with another kind and TCP header length.
	rstTCP := func(k Kind, thl uint16) Parsed {
		p := tcp4RSTWant
		p.Kind, p.TCPHeaderLen = k, thl
		return p
	}
	v6Head := func(k Kind, proto uint8, hl uint16) Parsed {
		return Parsed{Kind: k, IPVersion: 6, Proto: proto, Src: v6src, Dst: v6dst, IPHeaderLen: hl}
	}
	nine := ""
	for range 8 {
		nine += hbh(60)
	}
	eight := nine[:len(nine)-len(hbh(60))] + hbh(6)
	nine += hbh(6)

	bigTCP := clone(tcp4Data[:52]) // headers only, as NFQUEUE copies them
	bigTCP[2], bigTCP[3] = 0, 0    // total length 0: a BIG TCP / GSO packet
	bigTCPWant := tcp4DataWant
	bigTCPWant.PayloadLen = 70000 - 52

	jumbo := clone(tcp6Data[:60])
	jumbo[4], jumbo[5] = 0, 0
	jumboWant := tcp6DataWant
	jumboWant.PayloadLen = 100000 - 60

	padded := append(clone(tcp4RST), 0, 0, 0, 0, 0, 0) // Ethernet minimum frame padding

	return []decodeTest{
		{"tcp4_syn_options", tcp4SYN, 0, tcp4SYNWant},
		{"tcp4_ack_data", tcp4Data, 0, tcp4DataWant},
		{"tcp4_rst", tcp4RST, 0, tcp4RSTWant},
		{"tcp4_rst_ethernet_padding", padded, 0, tcp4RSTWant},
		{"ipv4_options", mustHexDecode(`
			46 00 00 2c  // version 4, IHL 6 (24 octets), total length 44
			00 00 40 00  // id, DF
			40 06 00 00  // TTL, TCP
			c6 33 64 02  // src 198.51.100.2
			c0 00 02 01  // dst 192.0.2.1
			01 01 01 00  // IP options: NOP, NOP, NOP, EOL
			` + hex.EncodeToString(tcp4RST[20:])), 0, func() Parsed {
			p := tcp4RSTWant
			p.IPHeaderLen = 24
			return p
		}()},
		{"tcp6_data", tcp6Data, 0, tcp6DataWant},
		{"tcp6_ext_headers", tcp6Ext, 0, tcp6ExtWant},

		// Flags: AE and the reserved bits are part of Flags (RFC 9293 3.1;
		// RFC 3360: never a reason to drop).
		{"flags_ae_reserved", tcpPatch(tcp4RST, 20, 12, 0x5f, 0xff), 0, func() Parsed {
			p := tcp4RSTWant
			p.Flags = 0xfff
			return p
		}()},

		// Empty, unknown version, too short.
		{"empty", nil, 0, Parsed{Kind: KindMalformed}},
		{"version_5", v4(0x55), 0, Parsed{Kind: KindMalformed}},
		{"ipv4_19_octets", tcp4RST[:19], 0, Parsed{Kind: KindMalformed, IPVersion: 4}},
		{"ipv6_39_octets", tcp6Data[:39], 0, Parsed{Kind: KindMalformed, IPVersion: 6}},

		// IHL lies (RFC 791 3.1).
		{"ihl_4", v4(0x44), 0, Parsed{Kind: KindMalformed, IPVersion: 4}},
		{"ihl_0", v4(0x40), 0, Parsed{Kind: KindMalformed, IPVersion: 4}},
		{"ihl_15_past_total_length", v4(0x4f), 0, Parsed{Kind: KindMalformed, IPVersion: 4}},
		{"ihl_6_leaves_no_room_for_tcp", v4(0x46), 0, func() Parsed {
			p := v4Head(KindMalformed)
			p.IPHeaderLen = 24
			return p
		}()},

		// Total length lies.
		{"total_length_past_wire", v4(0x45, 0, 0x05, 0xdc), 0, Parsed{Kind: KindMalformed, IPVersion: 4}},
		{"total_length_below_ihl", v4(0x45, 0, 0, 19), 0, Parsed{Kind: KindMalformed, IPVersion: 4}},
		{"total_length_cuts_tcp_header", v4(0x45, 0, 0, 39), 0, v4Head(KindMalformed)},
		{"total_length_0_big_tcp", bigTCP, 70000, bigTCPWant},
		{"total_length_0_no_wire_length", func() []byte { b := clone(tcp4RST); b[2], b[3] = 0, 0; return b }(), 0, tcp4RSTWant},

		// Fragments (RFC 791; RFC 1858 3.1 for tiny first fragments).
		{"fragment_offset_185", v4(0x45, 0, 0, 40, 0, 0, 0x20, 185), 0, v4Head(KindFragment)},
		{"fragment_offset_1_df_clear", v4(0x45, 0, 0, 40, 0, 0, 0x00, 1), 0, v4Head(KindFragment)},
		{"first_fragment_parsed", v4(0x45, 0, 0, 40, 0, 0, 0x20, 0), 0, tcp4RSTWant},
		{"short_first_fragment", v4(0x45, 0, 0, 28, 0, 0, 0x20, 0)[:28], 0, v4Head(KindMalformed)},

		// Not TCP.
		{"protocol_0xff", v4(0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 0xff), 0, func() Parsed {
			p := v4Head(KindNotTCP)
			p.Proto = 0xff
			return p
		}()},
		{"protocol_udp", v4(0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17), 0, func() Parsed {
			p := v4Head(KindNotTCP)
			p.Proto = 17
			return p
		}()},

		// TCP data offset (RFC 9293 3.1).
		{"data_offset_4", tcpPatch(tcp4RST, 20, 12, 0x40), 0, rstTCP(KindMalformed, 0)},
		{"data_offset_0", tcpPatch(tcp4RST, 20, 12, 0x00), 0, rstTCP(KindMalformed, 0)},
		{"data_offset_15_past_end", tcpPatch(tcp4RST, 20, 12, 0xf0), 0, rstTCP(KindMalformed, 0)},
		{"data_offset_6_past_end", tcpPatch(tcp4RST, 20, 12, 0x60), 0, rstTCP(KindMalformed, 0)},

		// Options with bad lengths (see parseOptions for the choice).
		{"option_length_0", tcpPatch(tcp4SYN, 20, 20, 2, 0), 0, synMalformed()},
		{"option_length_1", tcpPatch(tcp4SYN, 20, 20, 2, 1), 0, synMalformed()},
		{"option_length_overruns", tcpPatch(tcp4SYN, 20, 36, 1, 1, 3, 4), 0, func() Parsed {
			p := synMalformed()
			p.Opts, p.MSS, p.TSVal = OptMSS|OptSACKPerm|OptTimestamp, 1460, 100
			return p
		}()},
		{"option_kind_without_length", tcpPatch(tcp4SYN, 20, 36, 1, 1, 1, 3), 0, func() Parsed {
			p := synMalformed()
			p.Opts, p.MSS, p.TSVal = OptMSS|OptSACKPerm|OptTimestamp, 1460, 100
			return p
		}()},

		// Truncated copies: complete on the wire, cut by the copy range.
		{"truncated_in_tcp_options", tcp4SYN[:40], 60, func() Parsed {
			p := tcp4SYNWant
			p.Kind, p.Opts, p.MSS, p.WScale, p.TSVal = KindTruncated, 0, 0, 0, 0
			return p
		}()},
		{"truncated_in_tcp_header", tcp4SYN[:30], 60, Parsed{Kind: KindTruncated, IPVersion: 4, Proto: 6, Src: v4src, Dst: v4dst, IPHeaderLen: 20}},
		{"truncated_in_ipv4_header", tcp4SYN[:16], 60, Parsed{Kind: KindTruncated, IPVersion: 4}},
		{"truncated_in_ipv6_header", tcp6Ext[:30], len(tcp6Ext), Parsed{Kind: KindTruncated, IPVersion: 6}},
		{"truncated_in_ipv6_ext_header", tcp6Ext[:50], len(tcp6Ext), v6Head(KindTruncated, 0, 0)},
		{"truncated_but_wire_below_total_length", tcp4SYN[:40], 50, Parsed{Kind: KindMalformed, IPVersion: 4}},
		{"wire_length_below_copy", tcp4Data, 40, func() Parsed {
			// Bytes past the wire length are not the packet's; its total
			// length (57) then overruns the wire.
			return Parsed{Kind: KindMalformed, IPVersion: 4}
		}()},

		// IPv6 extension header chains (RFC 8200 4).
		{"ipv6_8_ext_headers", ipv6(0, -1, eight+tcp6Hdr), 0, tcp6ChainWant(40 + 64)},
		{"ipv6_9_ext_headers", ipv6(0, -1, nine+tcp6Hdr), 0, v6Head(KindMalformed, 0, 0)},
		{"ipv6_ext_header_past_end", ipv6(0, -1, "3c 01 01 04 00 00 00 00"), 0, v6Head(KindMalformed, 0, 0)},
		{"ipv6_ext_header_past_payload_length", ipv6(0, 4, hbh(6)+tcp6Hdr), 0, v6Head(KindMalformed, 0, 0)},
		{"ipv6_payload_length_past_wire", ipv6(6, 1000, tcp6Hdr), 0, Parsed{Kind: KindMalformed, IPVersion: 6}},
		{"ipv6_routing", ipv6(43, -1, "06 00 00 00 00 00 00 00"+tcp6Hdr), 0, tcp6ChainWant(48)},
		{"ipv6_ah", ipv6(51, -1, "06 04 00 00 00 00 01 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00"+tcp6Hdr), 0, tcp6ChainWant(64)},
		{"ipv6_atomic_fragment", ipv6(44, -1, "06 00 00 00 00 00 00 2a"+tcp6Hdr), 0, tcp6ChainWant(48)},
		{"ipv6_first_fragment", ipv6(44, -1, "06 00 00 01 00 00 00 2a"+tcp6Hdr), 0, tcp6ChainWant(48)},
		{"ipv6_fragment_offset_8", ipv6(44, -1, "06 00 00 08 00 00 00 2a"+tcp6Hdr), 0, v6Head(KindFragment, 6, 48)},
		{"ipv6_fragment_after_hbh", ipv6(0, -1, hbh(44)+"06 00 05 c8 00 00 00 2a 00 00"), 0, v6Head(KindFragment, 6, 56)},
		{"ipv6_esp", ipv6(50, -1, "00 00 00 01 00 00 00 01"), 0, v6Head(KindNotTCP, 50, 40)},
		{"ipv6_no_next_header", ipv6(0, -1, hbh(59)), 0, v6Head(KindNotTCP, 59, 48)},
		{"ipv6_udp", ipv6(17, -1, "00 35 00 35 00 08 00 00"), 0, v6Head(KindNotTCP, 17, 40)},
		{"ipv6_tcp_header_past_payload", ipv6(6, -1, "c3 50 01 bb 00 00 00 07"), 0, v6Head(KindMalformed, 6, 40)},
		{"ipv6_payload_length_0_jumbo", jumbo, 100000, jumboWant},
	}
}

// synMalformed is what Decode fills for tcp4SYN with a bad option: the
// fixed header, and no options.
func synMalformed() Parsed {
	p := tcp4SYNWant
	p.Kind, p.Opts, p.MSS, p.WScale, p.TSVal = KindMalformed, 0, 0, 0, 0
	return p
}

func TestDecode(t *testing.T) {
	for _, tt := range decodeTests() {
		t.Run(tt.name, func(t *testing.T) {
			// Start from garbage: Decode must reset every field.
			p := Parsed{Kind: 99, MSS: 1, Opts: 0xff, SACKEdge: 5, Src: v6src}
			Decode(tt.b, tt.wireLen, &p)
			want := tt.want
			want.TTL = headerTTL(tt.b, want)
			want.HaveIP = haveIP(tt.b, want)
			if want.HaveIP && want.Src == ([16]byte{}) && want.Dst == ([16]byte{}) {
				// Malformed lengths: Decode still names the hosts.
				want.Src, want.Dst = headerAddrs(tt.b)
			}
			if p != want {
				t.Errorf("Decode:\n got %+v\nwant %+v", p, want)
			}
		})
	}
}

// headerTTL is the TTL (IPv4 octet 8) or hop limit (IPv6 octet 7) the
// decode tables expect: read whenever the fixed header was copied, and for
// whatever the packet turned out to be. TestTTL checks the values
// themselves.
func headerTTL(b []byte, want Parsed) uint8 {
	switch {
	case want.TTL != 0:
		return want.TTL
	case want.IPVersion == 4 && len(b) >= 20:
		return b[8]
	case want.IPVersion == 6 && len(b) >= 40:
		return b[7]
	}
	return 0
}

func haveIP(b []byte, want Parsed) bool {
	return (want.IPVersion == 4 && len(b) >= 20) || (want.IPVersion == 6 && len(b) >= 40)
}

func headerAddrs(b []byte) (src, dst [16]byte) {
	if b[0]>>4 == 4 {
		src[10], src[11], dst[10], dst[11] = 0xff, 0xff, 0xff, 0xff
		copy(src[12:], b[12:16])
		copy(dst[12:], b[16:20])
		return src, dst
	}
	copy(src[:], b[8:24])
	copy(dst[:], b[24:40])
	return src, dst
}

// TestTTL: the TTL and the hop limit are read from their own octets
// (RFC 791 3.1 "Time to Live", RFC 8200 3 "Hop Limit").
func TestTTL(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want uint8
	}{
		{"ipv4", ttlPacket(4, 57), 57},
		{"ipv6", ttlPacket(6, 3), 3},
		{"ipv4_ttl_255", ttlPacket(4, 255), 255},
	} {
		var p Parsed
		Decode(tc.b, 0, &p)
		if p.Kind != KindTCP || p.TTL != tc.want {
			t.Errorf("%s: kind %d ttl %d, want TCP with ttl %d", tc.name, p.Kind, p.TTL, tc.want)
		}
	}
}

func ttlPacket(v int, ttl uint8) []byte {
	if v == 4 {
		b := append([]byte(nil), tcp4SYN...)
		b[8] = ttl
		return b
	}
	b := ipv6(6, -1, tcp6Hdr)
	b[7] = ttl
	return b
}

// TestOptions has one case per option kind, and the length rules.
func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opts string // TCP options, padded to 4 octets
		want Parsed // only the option fields and Kind are compared
	}{
		{"none", "", Parsed{}},
		{"eol", "00 00 00 00", Parsed{}},
		{"nop", "01 01 01 01", Parsed{}},
		{"eol_ends_list", "00 02 01 00", Parsed{}}, // a bad length after EOL is never read
		{"mss", "02 04 05 b4", Parsed{Opts: OptMSS, MSS: 1460}},
		{"mss_wrong_length_ignored", "02 03 05 00", Parsed{}},
		{"wscale", "01 03 03 07", Parsed{Opts: OptWScale, WScale: 7}},
		{"wscale_0", "01 03 03 00", Parsed{Opts: OptWScale, WScale: 0}},
		{"wscale_14", "01 03 03 0e", Parsed{Opts: OptWScale, WScale: 14}},
		{"wscale_15_clamped", "01 03 03 0f", Parsed{Opts: OptWScale, WScale: MaxWScale}},
		{"wscale_255_clamped", "01 03 03 ff", Parsed{Opts: OptWScale, WScale: MaxWScale}},
		{"wscale_wrong_length_ignored", "03 04 07 00", Parsed{}},
		{"sack_permitted", "01 01 04 02", Parsed{Opts: OptSACKPerm}},
		{"sack_permitted_wrong_length_ignored", "04 03 00 00", Parsed{}},
		{"sack_one_block", "01 01 05 0a 00 00 00 10 00 00 00 20", Parsed{Opts: OptSACK, SACKEdge: 0x20}},
		{"sack_highest_of_three", "01 01 05 1a 00 00 00 10 00 00 00 20 00 00 00 40 00 00 00 50 00 00 00 28 00 00 00 30",
			Parsed{Opts: OptSACK, SACKEdge: 0x50}},
		{"sack_highest_across_wrap", "01 01 05 12 ff ff ff 00 ff ff ff f0 00 00 00 00 00 00 00 10",
			Parsed{Opts: OptSACK, SACKEdge: 0x10}},
		{"sack_highest_across_wrap_first", "01 01 05 12 00 00 00 00 00 00 00 10 ff ff ff 00 ff ff ff f0",
			Parsed{Opts: OptSACK, SACKEdge: 0x10}},
		{"sack_partial_block_ignored", "05 06 00 00 00 10 00 00", Parsed{}},
		{"timestamps", "01 01 08 0a 00 00 00 01 ff ff ff ff", Parsed{Opts: OptTimestamp, TSVal: 1, TSEcr: 0xffffffff}},
		{"timestamps_unaligned", "08 0a 00 00 00 01 00 00 00 02 00 00", Parsed{Opts: OptTimestamp, TSVal: 1, TSEcr: 2}},
		{"timestamps_aligned_then_more", "01 01 08 0a 00 00 00 01 00 00 00 02 02 04 05 b4", Parsed{Opts: OptTimestamp | OptMSS, TSVal: 1, TSEcr: 2, MSS: 1460}},
		{"timestamps_wrong_length_ignored", "08 06 00 00 00 01 00 00", Parsed{}},
		{"tfo_cookie", "22 0a 01 02 03 04 05 06 07 08 00 00", Parsed{Opts: OptTFOCookie}},
		{"tfo_cookie_request", "22 02 00 00", Parsed{Opts: OptTFOCookie}},
		{"tfo_cookie_odd_length_ignored", "22 07 01 02 03 04 05 00", Parsed{}},
		{"tfo_cookie_too_long_ignored", "22 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", Parsed{}},
		{"tfo_experimental", "fe 0c f9 89 01 02 03 04 05 06 07 08", Parsed{Opts: OptTFOCookie}},
		{"experimental_other_magic_unknown", "fe 04 12 34", Parsed{Opts: OptUnknown}},
		{"experimental_short_unknown", "fe 02 00 00", Parsed{Opts: OptUnknown}},
		{"unknown_kind_skipped", "1e 06 00 00 00 00 02 04 05 b4 00 00", Parsed{Opts: OptUnknown | OptMSS, MSS: 1460}},
		{"all", "02 04 05 b4 01 03 03 08 04 02 08 0a 00 00 00 07 00 00 00 09 05 0a 00 00 00 01 00 00 00 02 22 02",
			Parsed{Opts: OptMSS | OptWScale | OptSACKPerm | OptTimestamp | OptSACK | OptTFOCookie,
				MSS: 1460, WScale: 8, TSVal: 7, TSEcr: 9, SACKEdge: 2}},
		{"last_option_wins", "01 03 03 02 01 03 03 05", Parsed{Opts: OptWScale, WScale: 5}},
		{"length_0_malformed", "02 00 00 00", Parsed{Kind: KindMalformed}},
		{"length_1_malformed", "02 01 00 00", Parsed{Kind: KindMalformed}},
		{"length_overruns_malformed", "02 04 05 b4 08 0a 00 00", Parsed{Kind: KindMalformed, Opts: OptMSS, MSS: 1460}},
		{"length_byte_missing_malformed", "01 01 01 08", Parsed{Kind: KindMalformed}},
		{"unknown_length_overruns_malformed", "1e 05 00 00", Parsed{Kind: KindMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := mustHexDecode(tt.opts)
			if len(opts)%4 != 0 {
				t.Fatalf("bad test: %d option octets", len(opts))
			}
			b := clone(tcp4RST)
			b[3] = byte(40 + len(opts))
			b[32] = byte((20+len(opts))/4) << 4
			b = append(b, opts...)
			var p Parsed
			Decode(b, 0, &p)
			got := Parsed{Kind: p.Kind, Opts: p.Opts, MSS: p.MSS, WScale: p.WScale,
				TSVal: p.TSVal, TSEcr: p.TSEcr, SACKEdge: p.SACKEdge}
			if got != tt.want {
				t.Errorf("options %q:\n got %+v\nwant %+v", tt.opts, got, tt.want)
			}
			if p.Kind == KindTCP && p.TCPHeaderLen != uint16(20+len(opts)) {
				t.Errorf("TCPHeaderLen = %d, want %d", p.TCPHeaderLen, 20+len(opts))
			}
		})
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, ""},
		{SYN, "S"},
		{SYN | ACK, "SA"},
		{RST, "R"},
		{RST | ACK, "RA"},
		{FIN | ACK, "FA"},
		{PSH | ACK, "PA"},
		{FIN | PSH | ACK, "FPA"},
		{SYN | ECE | CWR, "SEC"},
		{SYN | ACK | ECE, "SAE"},
		{SYN | AE | ECE | CWR, "SECN"},
		{SYN | 1<<9, "SX"},
		{SYN | Reserved, "SX"},
		{URG | ACK, "AU"},
		{0xfff, "SFRPAUECNX"},
		{AE, "N"},
		{1 << 11, "X"},
		{0xf000, ""}, // not flag bits: Decode never sets them
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint16(tt.f), got, tt.want)
		}
	}
}

// minAllocsPerRun is the least number of allocations over several rounds of
// testing.AllocsPerRun, so that a stray allocation by the runtime or another
// goroutine does not fail a zero-allocation test (tailscale
// tstest.MinAllocsPerRun).
func minAllocsPerRun(t *testing.T, target uint64, f func()) {
	t.Helper()
	var got float64
	for range 100 {
		got = testing.AllocsPerRun(100, f)
		if uint64(got) <= target {
			return
		}
	}
	t.Errorf("got %v allocs, want <= %v", got, target)
}

func TestNoAllocs(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		wireLen int
		kind    Kind
	}{
		{"tcp4_syn", tcp4SYN, 0, KindTCP},
		{"tcp4_ack_data", tcp4Data, 0, KindTCP},
		{"tcp4_rst", tcp4RST, 0, KindTCP},
		{"tcp6_data", tcp6Data, 0, KindTCP},
		{"tcp6_ext_headers", tcp6Ext, 0, KindTCP},
		{"truncated", tcp4SYN[:40], 60, KindTruncated},
		{"malformed", tcpPatch(tcp4SYN, 20, 20, 2, 0), 0, KindMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			minAllocsPerRun(t, 0, func() { Decode(tt.b, tt.wireLen, &p) })
			if p.Kind != tt.kind {
				t.Errorf("Kind = %d, want %d", p.Kind, tt.kind)
			}
		})
	}
	t.Run("flags_string_classic", func(t *testing.T) {
		var s string
		minAllocsPerRun(t, 0, func() { s = (SYN | ACK | ECE | CWR).String() })
		if s != "SAEC" {
			t.Errorf("String = %q", s)
		}
	})
	t.Run("flags_string_ae_one_alloc", func(t *testing.T) {
		var s string
		minAllocsPerRun(t, 1, func() { s = (SYN | ACK | ECE | AE).String() })
		if s != "SAEN" {
			t.Errorf("String = %q", s)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	benches := []struct {
		name    string
		pkt     []byte
		wireLen int
	}{
		{"tcp4_syn_options", tcp4SYN, 0},
		{"tcp4_ack_data", tcp4Data, 0},
		{"tcp4_rst", tcp4RST, 0},
		{"tcp6_data", tcp6Data, 0},
		{"tcp6_2_ext_headers", tcp6Ext, 0},
		{"truncated_copy", tcp4SYN[:40], 60},
		{"malformed_option", tcpPatch(tcp4SYN, 20, 20, 2, 0), 0},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var p Parsed
				Decode(bb.pkt, bb.wireLen, &p)
			}
		})
	}
}
