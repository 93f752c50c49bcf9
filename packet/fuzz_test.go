package packet

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// FuzzDecode checks Decode on arbitrary input. Oracles:
//   - it never panics, and decoding twice (into a dirty Parsed) agrees;
//   - the lengths it reports stay within the wire length, and for a
//     complete TCP segment within len(b) too;
//   - values are in range (WScale <= 14, a TCP header of 20 to 60 octets);
//   - differential: where gopacket decodes the input cleanly as IPv4 or IPv6
//     plus TCP, with no fragment and no truncation, and Decode says KindTCP,
//     both agree on ports, sequence and acknowledgement numbers, the 9 flag
//     bits gopacket knows, window, data offset and payload length. Where
//     only one of them parses, see gopacketLenient and TestGopacketDisagrees.
func FuzzDecode(f *testing.F) {
	for _, tt := range decodeTests() {
		f.Add(tt.b, tt.wireLen)
	}
	f.Fuzz(func(t *testing.T, b []byte, wireLen int) {
		var p Parsed
		Decode(b, wireLen, &p)
		q := Parsed{Kind: 77, Opts: 0xff, SACKEdge: 1, Src: [16]byte{1}}
		Decode(b, wireLen, &q)
		if p != q {
			t.Fatalf("Decode depends on the old Parsed:\n%+v\n%+v", p, q)
		}
		checkInvariants(t, b, wireLen, &p)
		if wireLen > 0 && wireLen < len(b) {
			b = b[:wireLen]
		} else if wireLen > len(b) {
			return // gopacket cannot be told the wire length
		}
		compareGopacket(t, b, &p)
	})
}

func checkInvariants(t *testing.T, b []byte, wireLen int, p *Parsed) {
	t.Helper()
	wire := len(b)
	if wireLen > 0 {
		wire = wireLen
	}
	if p.Kind > KindTruncated {
		t.Fatalf("Kind %d out of range", p.Kind)
	}
	if p.IPVersion != 0 && p.IPVersion != 4 && p.IPVersion != 6 {
		t.Fatalf("IPVersion %d", p.IPVersion)
	}
	if int(p.IPHeaderLen)+int(p.TCPHeaderLen) > wire {
		t.Fatalf("headers %d+%d past the wire length %d", p.IPHeaderLen, p.TCPHeaderLen, wire)
	}
	if int(p.IPHeaderLen)+int(p.TCPHeaderLen)+int(p.PayloadLen) > wire {
		t.Fatalf("headers and payload %d+%d+%d past the wire length %d", p.IPHeaderLen, p.TCPHeaderLen, p.PayloadLen, wire)
	}
	if p.WScale > MaxWScale {
		t.Fatalf("WScale %d", p.WScale)
	}
	if p.Flags&^0x0fff != 0 {
		t.Fatalf("Flags %#x beyond 12 bits", uint16(p.Flags))
	}
	if p.TCPHeaderLen != 0 && (p.TCPHeaderLen < 20 || p.TCPHeaderLen > 60 || p.TCPHeaderLen%4 != 0) {
		t.Fatalf("TCPHeaderLen %d", p.TCPHeaderLen)
	}
	if p.Kind == KindTCP {
		if p.Proto != 6 || p.TCPHeaderLen == 0 {
			t.Fatalf("KindTCP with proto %d, TCP header length %d", p.Proto, p.TCPHeaderLen)
		}
		if int(p.IPHeaderLen)+int(p.TCPHeaderLen) > len(b) {
			t.Fatalf("KindTCP but headers %d+%d past len(b) %d", p.IPHeaderLen, p.TCPHeaderLen, len(b))
		}
		// The IP length fields, or the wire length for a 0 length, add up.
		var n int
		if p.IPVersion == 4 {
			n = int(b[2])<<8 | int(b[3])
		} else {
			n = 40 + (int(b[4])<<8 | int(b[5]))
			if n == 40 {
				n = 0
			}
		}
		if n == 0 {
			n = wire
		}
		if got := int(p.IPHeaderLen) + int(p.TCPHeaderLen) + int(p.PayloadLen); got != n {
			t.Fatalf("headers and payload %d, IP length %d", got, n)
		}
	}
}

// compareGopacket is the differential oracle (see FuzzDecode).
func compareGopacket(t *testing.T, b []byte, p *Parsed) {
	t.Helper()
	if len(b) == 0 {
		return
	}
	// Only hand gopacket what claims to be TCP: its decoders for other
	// protocols (GRE in GRE, ...) are slow on fuzz input and beside the point.
	var first gopacket.LayerType
	switch {
	case b[0]>>4 == 4 && len(b) >= 20 && b[9] == protoTCP:
		first = layers.LayerTypeIPv4
	case b[0]>>4 == 6 && len(b) >= 40 && finalProto(b) == protoTCP:
		first = layers.LayerTypeIPv6
	default:
		return
	}
	pkt := gopacket.NewPacket(b, first, gopacket.DecodeOptions{NoCopy: true})
	if pkt.ErrorLayer() != nil || pkt.Metadata().Truncated {
		return
	}
	if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && (ip4.FragOffset != 0 || ip4.Length == 0) {
		return
	}
	if pkt.Layer(layers.LayerTypeIPv6Fragment) != nil {
		return
	}
	tl, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		return
	}
	if p.Kind != KindTCP {
		if why := gopacketLenient(b, p); why == "" {
			t.Fatalf("gopacket decodes TCP cleanly, Decode says kind %d: %+v\ngopacket: %v", p.Kind, p, pkt)
		}
		return
	}
	gf := [...]bool{tl.FIN, tl.SYN, tl.RST, tl.PSH, tl.ACK, tl.URG, tl.ECE, tl.CWR, tl.NS}
	for i, set := range gf {
		if set != (p.Flags&(1<<i) != 0) {
			t.Fatalf("flag bit %d: gopacket %v, Decode %q", i, set, p.Flags)
		}
	}
	if uint16(tl.SrcPort) != p.SrcPort || uint16(tl.DstPort) != p.DstPort ||
		tl.Seq != uint32(p.Seq) || tl.Ack != uint32(p.Ack) || tl.Window != p.Window ||
		uint16(tl.DataOffset)*4 != p.TCPHeaderLen || len(tl.Payload) != int(p.PayloadLen) {
		t.Fatalf("Decode %+v\ngopacket %v", p, pkt)
	}
}

// gopacketLenient explains why Decode rejects a packet that gopacket
// decodes cleanly as TCP, or returns "" if nothing does. Each is a choice
// (see Decode's doc comment), not a bug in either.
func gopacketLenient(b []byte, p *Parsed) string {
	if p.Kind == KindMalformed && p.IPVersion == 6 && countExt(b) > maxExtHeaders {
		return "more than maxExtHeaders IPv6 extension headers"
	}
	if p.Kind == KindMalformed && p.TCPHeaderLen > 20 {
		// gopacket, like Linux tcp_parse_options, stops reading options at a
		// bad option length and keeps the segment; we call it malformed.
		off := int(p.IPHeaderLen)
		var q Parsed
		if !q.parseOptions(b[off+20 : off+int(p.TCPHeaderLen)]) {
			return "bad TCP option length"
		}
	}
	return ""
}

// countExt counts the IPv6 extension headers before the upper layer,
// stopping at 100 or at the end of b.
func countExt(b []byte) int {
	n, _ := walkExt(b)
	return n
}

// finalProto is the upper-layer protocol after the IPv6 extension headers
// (or an extension header type if the walk stops early).
func finalProto(b []byte) byte {
	_, nh := walkExt(b)
	return nh
}

func walkExt(b []byte) (int, byte) {
	nh, off := b[6], 40
	for n := 0; n < 100; n++ {
		if off+2 > len(b) {
			return n, nh
		}
		switch nh {
		case protoHopByHop, protoRouting, protoDestOpts:
			nh, off = b[off], off+(int(b[off+1])+1)*8
		case protoAH:
			nh, off = b[off], off+(int(b[off+1])+2)*4
		case protoFragment:
			nh, off = b[off], off+8
		default:
			return n, nh
		}
	}
	return 100, nh
}
