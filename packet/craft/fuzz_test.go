package craft

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// FuzzBytes builds packets from arbitrary fields and checks that
// packet.Decode reads the same fields back and that gopacket verifies both
// checksums. Options are fuzzed too; where Decode finds them malformed the
// fields are still compared (Decode reads the fixed header first).
func FuzzBytes(f *testing.F) {
	f.Add(true, uint32(0xfffffff0), uint32(1), uint16(packet.SYN), uint16(64240), []byte{2, 4, 5, 180}, []byte("x"), uint8(0))
	f.Add(false, uint32(7), uint32(8), uint16(0xfff), uint16(0), []byte{}, []byte{}, uint8(2))
	f.Fuzz(func(t *testing.T, v4 bool, seq, ack uint32, flags, window uint16, opts, payload []byte, exts uint8) {
		if len(opts) > 40 || len(payload) > 2000 {
			return
		}
		tc := TCP{Src: c6, Dst: s6, Seq: seq, Ack: ack, Flags: packet.Flags(flags & 0x0fff), Window: window,
			Options: opts, Payload: payload}
		if v4 {
			tc.Src, tc.Dst = c4, s4
		} else {
			var chain []Ext
			for i := range exts % 4 {
				chain = append(chain, PadN(DestOpts, 1+int(i)))
			}
			tc.IPv6ExtType, tc.IPv6Ext = Chain(chain...)
		}
		b := tc.Bytes()
		var p packet.Parsed
		packet.Decode(b, 0, &p)
		if p.Kind != packet.KindTCP && p.Kind != packet.KindMalformed {
			t.Fatalf("Kind %d", p.Kind)
		}
		if p.SrcAddrPort() != tc.Src || p.DstAddrPort() != tc.Dst || p.Seq != seqnum.Value(seq) ||
			p.Ack != seqnum.Value(ack) || p.Flags != tc.Flags || p.Window != window {
			t.Fatalf("built %+v, decoded %+v", tc, p)
		}
		if p.Kind == packet.KindTCP && int(p.PayloadLen) != len(payload) {
			t.Fatalf("PayloadLen %d, want %d", p.PayloadLen, len(payload))
		}
		first := layers.LayerTypeIPv6
		if v4 {
			first = layers.LayerTypeIPv4
		}
		pkt := gopacket.NewPacket(b, first, gopacket.Default)
		tl, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			t.Fatalf("gopacket: no TCP layer: %v", pkt)
		}
		if err := tl.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		if _, res := tl.VerifyChecksum(); !res.Valid {
			t.Fatalf("TCP checksum %#x, want %#x", res.Actual, res.Correct)
		}
		if ip4, ok := pkt.NetworkLayer().(*layers.IPv4); ok {
			if _, res := ip4.VerifyChecksum(); !res.Valid {
				t.Fatalf("IPv4 checksum %#x, want %#x", res.Actual, res.Correct)
			}
		}
	})
}
