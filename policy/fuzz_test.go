package policy

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// FuzzEngine drives the engine with arbitrary packet sequences over a few
// endpoints (so flows are shared) and checks its invariants:
//   - Decide never panics;
//   - a dropped packet changes no flow (SPEC 2 step 5);
//   - the table never holds more than max_flows flows, and its per-state
//     gauges add up to its length.
//
// Each 14-byte record of the input is one segment: endpoint pair and
// direction, flags (12 bits), seq, ack, window and payload length, with
// seq and ack taken relative to the previous segment's so that sequences
// stay near each other and windows are actually hit.
func FuzzEngine(f *testing.F) {
	rec := func(pair, flags uint16, seq, ack uint32, win, n uint16) []byte {
		b := make([]byte, 14)
		b[0] = byte(pair)
		binary.BigEndian.PutUint16(b[1:], flags)
		binary.BigEndian.PutUint32(b[3:], seq)
		binary.BigEndian.PutUint32(b[7:], ack)
		b[11] = byte(win)
		binary.BigEndian.PutUint16(b[12:], n)
		return b
	}
	var seed []byte
	seed = append(seed, rec(0, uint16(packet.SYN), 0, 0, 200, 0)...)
	seed = append(seed, rec(1, uint16(packet.SYN|packet.ACK), 1000, 1, 200, 0)...)
	seed = append(seed, rec(0, uint16(packet.ACK), 1, 1001, 200, 0)...)
	seed = append(seed, rec(0, uint16(packet.ACK|packet.PSH), 1, 1001, 200, 500)...)
	seed = append(seed, rec(1, uint16(packet.RST), 1<<31, 0, 0, 0)...)
	seed = append(seed, rec(1, uint16(packet.RST), 1001, 0, 0, 0)...)
	f.Add(seed, uint8(0))
	f.Add(seed, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		tc := conntrack.DefaultConfig()
		tc.MaxFlows = 3
		tc.Pickup = mode&4 == 0
		pc := Config{RSTMode: RSTMode(mode & 1), DropUnknownFlowRST: mode&2 != 0, DropOutOfWindow: mode&8 != 0}
		e := NewEngine(pc, tc)
		eps := [4]netip.AddrPort{
			netip.MustParseAddrPort("192.0.2.1:1000"),
			netip.MustParseAddrPort("198.51.100.1:80"),
			netip.MustParseAddrPort("192.0.2.2:1001"),
			netip.MustParseAddrPort("[2001:db8::1]:443"),
		}
		var seq, ack uint32 = 0xFFFFFF00, 0x7FFFFF00
		now := int64(1e9)
		for len(data) >= 14 {
			r := data[:14]
			data = data[14:]
			pair := r[0]
			src, dst := eps[pair&1], eps[(pair>>1)&1|2*((pair>>2)&1)]
			if pair&8 != 0 {
				src, dst = dst, src
			}
			if src == dst || src.Addr().Is4() != dst.Addr().Is4() {
				continue
			}
			seq += binary.BigEndian.Uint32(r[3:]) >> (pair >> 4 & 7 * 4)
			ack += binary.BigEndian.Uint32(r[7:]) >> (pair >> 4 & 7 * 4)
			now += int64(r[11]) * 1e8
			p := parsed(src, dst, seg{
				flags: packet.Flags(binary.BigEndian.Uint16(r[1:]) & 0xFFF),
				seq:   seq, ack: ack,
				win: uint16(r[11]) << 4,
				n:   uint32(binary.BigEndian.Uint16(r[12:])),
			})
			if p.Flags&packet.SYN != 0 && r[11]&1 != 0 {
				p.Opts |= packet.OptWScale
				p.WScale = r[11] % 15
			}
			k, _ := conntrack.MakeKey(&p)
			before, had := snapshot(e, &k, now)
			d := e.Decide(&p, now)
			v, reason := d.Verdict, d.Reason
			if reason.Verdict() != v {
				t.Fatalf("verdict %s does not match reason %s", v, reason)
			}
			if v == Drop {
				after, has := snapshot(e, &k, now)
				if had != has || before != after {
					t.Fatalf("dropped %s changed the flow:\nbefore %+v\nafter  %+v", reason, before, after)
				}
			}
			tb := e.Table()
			if tb.Len() > tc.MaxFlows {
				t.Fatalf("table holds %d flows, max %d", tb.Len(), tc.MaxFlows)
			}
			var sum int64
			for st := conntrack.State(0); st < conntrack.NumStates; st++ {
				n := tb.Stats().Flows[st].Load()
				if n < 0 {
					t.Fatalf("negative gauge for %s", st)
				}
				sum += n
			}
			if sum != int64(tb.Len()) {
				t.Fatalf("state gauges sum to %d, table has %d", sum, tb.Len())
			}
		}
	})
}

// snapshot copies a flow without its LRU links and time, so comparing two
// snapshots says whether the flow's tracked state changed. It looks the flow
// up without expiring it (a lookup at the same now would be a no-op anyway:
// Decide already expired what was due).
func snapshot(e *Engine, k *conntrack.Key, now int64) (conntrack.Flow, bool) {
	slot, ok := e.Table().Lookup(k, now)
	if !ok {
		return conntrack.Flow{}, false
	}
	f := e.Table().Flow(slot)
	return f.Snapshot(), true
}

var _ = seqnum.Value(0)
