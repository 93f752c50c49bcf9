package policy

import (
	"testing"

	"github.com/rstguard/rstguard/packet"
)

// minAllocsPerRun is tailscale tstest.MinAllocsPerRun: the minimum of
// several testing.AllocsPerRun measurements, so a stray GC allocation in
// one run does not fail the test.
func minAllocsPerRun(t testing.TB, runs int, f func()) float64 {
	min := float64(1 << 30)
	for i := 0; i < 5; i++ {
		if n := testing.AllocsPerRun(runs, f); n < min {
			min = n
		}
	}
	return min
}

// TestDecideNoAllocs: STYLE rule 12: the decision allocates nothing, for
// every packet class. Each class has its own conversation and leaves its
// flow as it found it (the in-window reset is measured in exact mode, where
// it is dropped, not accepted), and every measured decision is checked to be
// of the class named: no case measures a flow another case closed.
func TestDecideNoAllocs(t *testing.T) {
	cases := []struct {
		name   string
		mode   RSTMode
		reason Reason
		pkt    func(c *conv) packet.Parsed
	}{
		{"established data", RSTModeWindow, ReasonTracked, func(c *conv) packet.Parsed {
			return parsed(c.client, c.server, seg{flags: packet.ACK, seq: c.cNxt, ack: c.sNxt, win: 502, n: 1448})
		}},
		{"in-window RST", RSTModeExact, ReasonRSTNotExact, func(c *conv) packet.Parsed {
			return parsed(c.server, c.client, seg{flags: packet.RST, seq: c.sNxt + 100})
		}},
		{"out-of-window RST", RSTModeWindow, ReasonRSTOutOfWindow, func(c *conv) packet.Parsed {
			return parsed(c.server, c.client, seg{flags: packet.RST, seq: c.sNxt + 1<<31})
		}},
		{"SYN of a known flow", RSTModeWindow, ReasonSYNSynchronized, func(c *conv) packet.Parsed {
			return parsed(c.client, c.server, seg{flags: packet.SYN, seq: 5})
		}},
		{"unknown-flow RST", RSTModeWindow, ReasonUnknownFlow, func(c *conv) packet.Parsed {
			p := parsed(c.client, c.server, seg{flags: packet.RST, seq: 5, ack: 1})
			p.SrcPort++
			return p
		}},
		{"malformed", RSTModeWindow, ReasonMalformed, func(*conv) packet.Parsed { return packet.Parsed{Kind: packet.KindMalformed} }},
	}
	for _, tc := range cases {
		c := newConv(t, Config{RSTMode: tc.mode})
		c.handshake(cISN, sISN, 502, 509, 7, 7)
		p := tc.pkt(c)
		wrong := 0
		n := minAllocsPerRun(t, 200, func() {
			q := p
			if c.e.Decide(&q, c.now).Reason != tc.reason {
				wrong++
			}
		})
		if wrong != 0 {
			t.Errorf("%s: %d decisions were not %s; the case measures another class", tc.name, wrong, tc.reason)
		}
		if n != 0 {
			t.Errorf("%s: %v allocs per Decide, want 0", tc.name, n)
		}
	}
	c := newConv(t, DefaultConfig())
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	// New flows: the slab grows in 4096-flow chunks, so inserting is
	// allocation-free except once per chunk.
	port := uint16(1)
	n := minAllocsPerRun(t, 1000, func() {
		p := parsed(c.client, c.server, seg{flags: packet.SYN, seq: 1})
		p.SrcPort = port
		port++
		c.e.Decide(&p, c.now)
	})
	if n > 0.01 {
		t.Errorf("new SYN: %v allocs per Decide, want ~0", n)
	}
}

// BenchmarkDecide measures the decision alone (no parsing) per packet class.
func BenchmarkDecide(b *testing.B) {
	t := &testing.T{}
	c := newConv(t, DefaultConfig())
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	for _, bc := range []struct {
		name string
		p    packet.Parsed
	}{
		{"established_data", parsed(c.client, c.server, seg{flags: packet.ACK, seq: c.cNxt, ack: c.sNxt, win: 502, n: 1448})},
		{"rst_out_of_window", parsed(c.server, c.client, seg{flags: packet.RST, seq: c.sNxt + 1<<31})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p := bc.p
				c.e.Decide(&p, c.now)
			}
		})
	}
}
