package replay

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
)

// TestStripLinkHeaders: the link headers of BSD loopback and PPP frames,
// byte by byte, in every variant the readers of tcpdump.org/linktypes.html
// must accept, and the ones that carry no IP.
func TestStripLinkHeaders(t *testing.T) {
	ip4 := []byte{0x45, 0, 0, 20} // the start of an IPv4 header
	ip6 := []byte{0x60, 0, 0, 0}  // the start of an IPv6 header
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name string
		lt   layers.LinkType
		data []byte
		want []byte // nil: no IP
		hdr  int
	}{
		// DLT_NULL: the family in the capturing host's byte order.
		{"null AF_INET little endian", layers.LinkTypeNull, cat([]byte{2, 0, 0, 0}, ip4), ip4, 4},
		{"null AF_INET big endian host", layers.LinkTypeNull, cat([]byte{0, 0, 0, 2}, ip4), ip4, 4},
		{"null AF_INET6 NetBSD/OpenBSD", layers.LinkTypeNull, cat([]byte{24, 0, 0, 0}, ip6), ip6, 4},
		{"null AF_INET6 FreeBSD", layers.LinkTypeNull, cat([]byte{28, 0, 0, 0}, ip6), ip6, 4},
		{"null AF_INET6 macOS", layers.LinkTypeNull, cat([]byte{30, 0, 0, 0}, ip6), ip6, 4},
		{"null AF_INET6 macOS big endian host", layers.LinkTypeNull, cat([]byte{0, 0, 0, 30}, ip6), ip6, 4},
		{"null Linux AF_INET6 (10) is not a BSD family", layers.LinkTypeNull, cat([]byte{10, 0, 0, 0}, ip6), nil, 0},
		{"null AF_ISO", layers.LinkTypeNull, cat([]byte{7, 0, 0, 0}, ip4), nil, 0},
		{"null cut short", layers.LinkTypeNull, []byte{2, 0, 0}, nil, 0},
		// DLT_LOOP: network byte order (a little-endian writer's value
		// is read too).
		{"loop AF_INET", layers.LinkTypeLoop, cat([]byte{0, 0, 0, 2}, ip4), ip4, 4},
		{"loop AF_INET6 OpenBSD", layers.LinkTypeLoop, cat([]byte{0, 0, 0, 24}, ip6), ip6, 4},
		{"loop AF_INET6 written little endian", layers.LinkTypeLoop, cat([]byte{24, 0, 0, 0}, ip6), ip6, 4},
		{"loop unknown family", layers.LinkTypeLoop, cat([]byte{0, 0, 0, 99}, ip4), nil, 0},
		{"loop empty", layers.LinkTypeLoop, nil, nil, 0},
		// LINKTYPE_PPP: RFC 1662 address/control optional, RFC 1661
		// protocol of two bytes or, compressed, one.
		{"ppp ff 03 IPv4", layers.LinkTypePPP, cat([]byte{0xff, 0x03, 0x00, 0x21}, ip4), ip4, 4},
		{"ppp ff 03 IPv6", layers.LinkTypePPP, cat([]byte{0xff, 0x03, 0x00, 0x57}, ip6), ip6, 4},
		{"ppp no address/control IPv4", layers.LinkTypePPP, cat([]byte{0x00, 0x21}, ip4), ip4, 2},
		{"ppp protocol field compressed IPv6", layers.LinkTypePPP, cat([]byte{0x57}, ip6), ip6, 1},
		{"ppp ff 03, protocol compressed IPv4", layers.LinkTypePPP, cat([]byte{0xff, 0x03, 0x21}, ip4), ip4, 3},
		{"ppp LCP", layers.LinkTypePPP, []byte{0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4}, nil, 0},
		{"ppp IPCP", layers.LinkTypePPP, []byte{0x80, 0x21, 1, 1, 0, 4}, nil, 0},
		{"ppp cut in the protocol", layers.LinkTypePPP, []byte{0xff, 0x03, 0x00}, nil, 0},
		{"ppp address/control only", layers.LinkTypePPP, []byte{0xff, 0x03}, nil, 0},
		// LINKTYPE_PPP_HDLC: RFC 1662 framing or Cisco HDLC (RFC 1547
		// 4.3.1: address 0x0f/0x8f, control 0, EtherType).
		{"ppp_hdlc IPv4", layers.LinkTypePPP_HDLC, cat([]byte{0xff, 0x03, 0x00, 0x21}, ip4), ip4, 4},
		{"ppp_hdlc IPv6", layers.LinkTypePPP_HDLC, cat([]byte{0xff, 0x03, 0x00, 0x57}, ip6), ip6, 4},
		{"cisco hdlc IPv4", layers.LinkTypePPP_HDLC, cat([]byte{0x0f, 0x00, 0x08, 0x00}, ip4), ip4, 4},
		{"cisco hdlc broadcast IPv6", layers.LinkTypePPP_HDLC, cat([]byte{0x8f, 0x00, 0x86, 0xdd}, ip6), ip6, 4},
		{"cisco hdlc SLARP", layers.LinkTypePPP_HDLC, []byte{0x8f, 0x00, 0x80, 0x35, 0, 0, 0, 0}, nil, 0},
		{"ppp_hdlc without address/control", layers.LinkTypePPP_HDLC, cat([]byte{0x00, 0x21}, ip4), nil, 0},
		{"ppp_hdlc cut short", layers.LinkTypePPP_HDLC, []byte{0x0f, 0x00, 0x08}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip, hdr := stripLink(tc.lt, tc.data)
			if !bytes.Equal(ip, tc.want) || (ip == nil) != (tc.want == nil) || hdr != tc.hdr {
				t.Errorf("stripLink(%s, % x) = % x, %d; want % x, %d", tc.lt, tc.data, ip, hdr, tc.want, tc.hdr)
			}
		})
	}
}

// linkCaptures are the captures testdata/linkgen writes: the IP packets of
// forged.pcapng (IPv4) and of v6vlan.pcap with a forged reset (IPv6) under
// the link headers of BSD loopback, raw IPv4/IPv6 and PPP.
var linkCaptures = []struct {
	file string
	link layers.LinkType
	src  string // the capture its packets come from
	v6   bool
}{
	{"link-null.pcap", layers.LinkTypeNull, "forged.pcapng", false},
	{"link-loop.pcap", layers.LinkTypeLoop, "v6vlan.pcap", true},
	{"link-ipv4.pcap", layers.LinkTypeIPv4, "forged.pcapng", false},
	{"link-ipv6.pcap", layers.LinkTypeIPv6, "v6vlan.pcap", true},
	{"link-ppp.pcap", layers.LinkTypePPP, "v6vlan.pcap", true},
	{"link-ppphdlc.pcap", layers.LinkTypePPP_HDLC, "forged.pcapng", false},
}

// TestLinkTypeCaptures replays a short real conversation with a forged
// out-of-window reset under each link type: the reset is dropped
// (RFC 9293 3.10.7.4), in the IPv4 ones so is the forged refusal
// (3.10.7.3), nothing else is, and every TCP frame gets the verdict, reason
// and state of the same packet in the Ethernet capture it came from.
func TestLinkTypeCaptures(t *testing.T) {
	for _, c := range linkCaptures {
		t.Run(c.file, func(t *testing.T) {
			fs, sum, _ := replay(t, c.file, policy.DefaultConfig())
			if sum.NonIP != 0 {
				t.Errorf("%d frames without IP: the link header was not understood", sum.NonIP)
			}
			rd, err := NewReader(bytes.NewReader(readFile(t, c.file)))
			if err != nil {
				t.Fatal(err)
			}
			if pk, err := rd.Next(); err != nil || pk.LinkType != c.link {
				t.Fatalf("first frame: link type %v (%v), want %s", pk.LinkType, err, c.link)
			}
			tcp := tcpFrames(fs)
			var drops []Frame
			for _, f := range fs {
				if f.Verdict == policy.Drop {
					drops = append(drops, f)
				}
			}
			oow := flagged(drops, packet.RST)
			if c.v6 {
				if len(drops) != 1 || len(oow) != 1 {
					t.Fatalf("%d drops, want the forged reset only", len(drops))
				}
				if !drops[0].Src.Addr().Is6() {
					t.Errorf("frame %d: the forged reset is not IPv6: %s", drops[0].Index, drops[0].Src)
				}
			} else {
				if len(drops) != 2 {
					t.Fatalf("%d drops, want the 2 forged resets", len(drops))
				}
				want(t, "forged refusal", drops[0], policy.Drop, policy.ReasonRSTSynSentBadACK, conntrack.StateSynSent)
			}
			want(t, "forged RST outside the window", drops[len(drops)-1], policy.Drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished)
			last := tcp[len(tcp)-1]
			want(t, "final ACK", last, policy.Accept, policy.ReasonTracked, conntrack.StateLastAck)

			// The same packets, from the Ethernet capture.
			ref := tcpFrames(func() []Frame { fs, _, _ := replay(t, c.src, policy.DefaultConfig()); return fs }())
			var got []Frame
			for _, f := range tcp {
				if c.v6 && f.Index == drops[0].Index {
					continue // inserted by linkgen, not in v6vlan.pcap
				}
				got = append(got, f)
			}
			if len(got) != len(ref) {
				t.Fatalf("%d TCP frames, want %d as in %s", len(got), len(ref), c.src)
			}
			for i := range ref {
				x, y := ref[i], got[i]
				x.Index, y.Index = 0, 0
				if x != y {
					t.Errorf("TCP frame %d differs from %s:\n got %+v\nwant %+v", i, c.src, y, x)
				}
			}
		})
	}
}
