package policy

import (
	"net/netip"
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
)

// BenchmarkSYNFloodClosedPort: the gateway benchmark's syn-closed load as
// the engine sees it: a SYN of a new flow and the server's refusal, per
// op, in a table kept full ([conntrack] max_flows per queue of the
// default, 524288), so that every lookup and insert touches cold memory.
func BenchmarkSYNFloodClosedPort(b *testing.B) {
	tc := conntrack.DefaultConfig()
	tc.MaxFlows = 524288
	e := NewEngine(DefaultConfig(), tc)
	srv := netip.MustParseAddrPort("198.51.100.20:80")
	const n = 1 << 16
	syns := make([][]byte, n)
	rsts := make([][]byte, n)
	for i := range syns {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 8)}), uint16(1024+i&0xff*97))
		syns[i] = craft.TCP{Src: c, Dst: srv, Seq: uint32(i) * 7919, Flags: packet.SYN, Window: 64240}.Bytes()
		rsts[i] = craft.TCP{Src: srv, Dst: c, Ack: uint32(i)*7919 + 1, Flags: packet.RST | packet.ACK}.Bytes()
	}
	now := int64(1e9)
	// Fill the table with other flows first.
	for i := 0; i < 600000; i++ {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i >> 16)}), uint16(i))
		p := craft.TCP{Src: c, Dst: srv, Seq: 1, Flags: packet.SYN, Window: 64240}.Bytes()
		now += 100
		processRef(e, p, 0, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now += 1000
		j := i & (n - 1)
		processRef(e, syns[j], 0, now)
		processRef(e, rsts[j], 0, now)
	}
}
