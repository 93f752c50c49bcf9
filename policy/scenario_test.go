package policy

import (
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// TestSegmentRules has one row per bullet of SPEC section 5.
func TestSegmentRules(t *testing.T) {
	tests := []struct {
		name   string
		clause string
		cfg    Config
		run    func(c *conv) Reason
		want   Reason
		check  func(t *testing.T, c *conv)
	}{
		{
			name: "ECN-setup SYN is tracked and counted", clause: "RFC 3360 2.1; RFC 3168 6.1.1",
			run: func(c *conv) Reason {
				return c.fromClient(seg{flags: packet.SYN | packet.ECE | packet.CWR, seq: cISN, win: 64240})
			},
			want: ReasonTracked,
			check: func(t *testing.T, c *conv) {
				if c.e.Stats().FlaggedSYNs[SYNFlagECE].Load() != 1 || c.e.Stats().FlaggedSYNs[SYNFlagCWR].Load() != 1 {
					t.Errorf("flagged SYN counters: ece=%d cwr=%d, want 1 and 1",
						c.e.Stats().FlaggedSYNs[SYNFlagECE].Load(), c.e.Stats().FlaggedSYNs[SYNFlagCWR].Load())
				}
				if st := c.state(); st != conntrack.StateSynSent {
					t.Errorf("state %s, want syn_sent", st)
				}
			},
		},
		{
			name: "SYN with reserved bits and AE is tracked and counted", clause: "RFC 3360 2 (reserved bits are no reason to reset)",
			run: func(c *conv) Reason {
				return c.fromClient(seg{flags: packet.SYN | packet.AE | 1<<9 | 1<<11, seq: cISN, win: 64240})
			},
			want: ReasonTracked,
			check: func(t *testing.T, c *conv) {
				if n := c.e.Stats().FlaggedSYNs[SYNFlagReserved].Load(); n != 1 {
					t.Errorf("reserved SYN counter %d, want 1", n)
				}
				if n := c.e.Stats().FlaggedSYNs[SYNFlagAE].Load(); n != 1 {
					t.Errorf("AE SYN counter %d, want 1", n)
				}
				// The handshake goes on as usual.
				c.must(c.fromServer(seg{flags: packet.SYN | packet.ACK | packet.ECE, seq: sISN, ack: cISN + 1, win: 65160}), ReasonTracked, "SYN-ACK with ECE")
				c.must(c.fromClient(seg{flags: packet.ACK, seq: cISN + 1, ack: sISN + 1, win: 502}), ReasonTracked, "ACK")
				if st := c.state(); st != conntrack.StateEstablished {
					t.Errorf("state %s, want established", st)
				}
			},
		},
		{
			name: "reset answering a reserved-bit SYN is passed and flagged", clause: "RFC 3360 2 (sign of a violator upstream)",
			run: func(c *conv) Reason {
				c.must(c.fromClient(seg{flags: packet.SYN | packet.ECE | packet.CWR, seq: cISN, win: 64240}), ReasonTracked, "ECN SYN")
				return c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1})
			},
			want: ReasonRSTAnswersReservedSYN,
			check: func(t *testing.T, c *conv) {
				if d := c.last; d.SYNFlags != packet.ECE|packet.CWR {
					t.Errorf("detail SYN flags %v, want ECE|CWR", d.SYNFlags)
				}
				if st := c.state(); st != conntrack.StateClosed {
					t.Errorf("state %s, want closed", st)
				}
			},
		},
		{
			name: "a forged reset answering a reserved-bit SYN is still dropped", clause: "RFC 9293 3.10.7.3",
			run: func(c *conv) Reason {
				c.must(c.fromClient(seg{flags: packet.SYN | 1<<10, seq: cISN, win: 64240}), ReasonTracked, "SYN")
				return c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 99})
			},
			want: ReasonRSTSynSentBadACK,
		},
		{
			name: "TFO data on the SYN advances end", clause: "RFC 7413 3; RFC 9293 3.10.7.3 (data on SYN)",
			run: func(c *conv) Reason {
				c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240, n: 100, opts: packet.OptTFOCookie}), ReasonTracked, "SYN+data")
				// The server accepts the data: it acknowledges ISN+1+100.
				return c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 101, win: 65160})
			},
			want: ReasonTracked,
			check: func(t *testing.T, c *conv) {
				if f := c.flow(); f.Peer(conntrack.Original).End() != cISNv()+101 {
					t.Errorf("initiator end %d, want ISN+101", f.Peer(conntrack.Original).End())
				}
				// A reset acknowledging the data too is valid in syn_recv.
				c.must(c.fromClient(seg{flags: packet.ACK, seq: cISN + 101, ack: sISN + 1, win: 502}), ReasonTracked, "ACK")
			},
		},
		{
			name: "TFO: a reset acknowledging SYN and data in syn_sent is valid", clause: "RFC 7413 3; RFC 9293 3.10.7.3 (SEG.ACK =< SND.NXT)",
			run: func(c *conv) Reason {
				c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240, n: 100}), ReasonTracked, "SYN+data")
				return c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 101})
			},
			want: ReasonRSTValid,
		},
		{
			name: "SYN in a synchronized state is passed and counted", clause: "RFC 9293 3.10.7.4 fourth check; RFC 5961 4.2 (challenge ACK)",
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				return c.fromClient(seg{flags: packet.SYN, seq: 12345, win: 64240})
			},
			want: ReasonSYNSynchronized,
			check: func(t *testing.T, c *conv) {
				if st := c.state(); st != conntrack.StateEstablished {
					t.Errorf("state %s, want established (unchanged)", st)
				}
				if f := c.flow(); f.Peer(conntrack.Original).ISN() != cISNv() {
					t.Errorf("the SYN changed the flow's ISN")
				}
			},
		},
		{
			name: "exact mode: a SYN inside the receiver's window is dropped", clause: "RFC 5961 4.1/4.2 (blind in-window SYN; RFC 793 p. 71 resets on it)",
			cfg: Config{RSTMode: RSTModeExact},
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				// The client's SYN at the server's RCV.NXT + 100: inside the 509
				// bytes the server announced.
				return c.fromClient(seg{flags: packet.SYN, seq: c.cNxt + 100, win: 64240})
			},
			want: ReasonSYNInWindow,
			check: func(t *testing.T, c *conv) {
				if st := c.state(); st != conntrack.StateEstablished {
					t.Errorf("state %s, want established (a dropped SYN changes nothing)", st)
				}
				// From the server's side too, across the 2^32 wrap (sISN
				// is just below it).
				if r := c.fromServer(seg{flags: packet.SYN, seq: c.sNxt + 10, win: 64240}); r != ReasonSYNInWindow {
					t.Errorf("server SYN in the client's window: %s, want syn_in_window", r)
				}
			},
		},
		{
			name: "exact mode: a SYN outside the window passes (the challenge ACK lets a rebooted peer recover)", clause: "RFC 5961 4.2; RFC 9293 3.10.7.4 fourth check",
			cfg: Config{RSTMode: RSTModeExact},
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				return c.fromClient(seg{flags: packet.SYN, seq: c.cNxt + 1<<31, win: 64240})
			},
			want: ReasonSYNSynchronized,
			check: func(t *testing.T, c *conv) {
				// The retransmitted handshake SYN (below RCV.NXT) passes too.
				if r := c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240}); r != ReasonSYNSynchronized {
					t.Errorf("retransmitted SYN: %s, want syn_synchronized", r)
				}
			},
		},
		{
			name: "window mode: an in-window SYN passes as before", clause: "RFC 5961 4.2 (the endpoint answers with a challenge ACK)",
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				return c.fromClient(seg{flags: packet.SYN, seq: c.cNxt + 100, win: 64240})
			},
			want: ReasonSYNSynchronized,
		},
		{
			name: "SYN in time_wait with a new ISN opens a new incarnation", clause: "RFC 9293 3.10.7.4; RFC 1122 4.2.2.13",
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				c.closeBoth()
				if st := c.state(); st != conntrack.StateTimeWait {
					t.Fatalf("state %s, want time_wait", st)
				}
				return c.fromClient(seg{flags: packet.SYN, seq: cISN + 1<<20, win: 64240})
			},
			want: ReasonTracked,
			check: func(t *testing.T, c *conv) {
				if st := c.state(); st != conntrack.StateSynSent {
					t.Errorf("state %s, want syn_sent", st)
				}
				if c.last.State != conntrack.StateTimeWait {
					t.Errorf("detail state %s, want time_wait (the state before the packet)", c.last.State)
				}
			},
		},
		{
			name: "SYN in closed with a new ISN opens a new incarnation", clause: "SPEC 5; RFC 9293 3.10.7.1",
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "RST")
				return c.fromClient(seg{flags: packet.SYN, seq: 77, win: 64240})
			},
			want: ReasonTracked,
			check: func(t *testing.T, c *conv) {
				if st := c.state(); st != conntrack.StateSynSent {
					t.Errorf("state %s, want syn_sent", st)
				}
			},
		},
		{
			name: "out-of-window data is passed and does not widen the window", clause: "SPEC 5; RFC 9293 3.10.7.4 first check (endpoint discards)",
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				return c.fromClient(seg{flags: packet.ACK, seq: c.cNxt - 1<<30, ack: c.sNxt, win: 502, n: 100})
			},
			want: ReasonOutOfWindowPassed,
			check: func(t *testing.T, c *conv) {
				if f := c.flow(); f.Peer(conntrack.Original).End() != seqv(c.cNxt) {
					t.Errorf("end moved to %d", f.Peer(conntrack.Original).End())
				}
			},
		},
		{
			name: "out-of-window data is dropped with drop_out_of_window", clause: "SPEC 5 (drop_out_of_window)",
			cfg: Config{DropOutOfWindow: true},
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				return c.fromClient(seg{flags: packet.ACK, seq: c.cNxt - 1<<30, ack: c.sNxt, win: 502, n: 100})
			},
			want: ReasonOutOfWindow,
		},
		{
			name: "an ACK far below what the other side sent is out of window", clause: "van Rooij check IV (Linux tcp_in_window)",
			cfg: Config{DropOutOfWindow: true},
			run: func(c *conv) Reason {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				return c.fromClient(seg{flags: packet.ACK, seq: c.cNxt, ack: c.sNxt - 1<<31 + 5, win: 502})
			},
			want: ReasonOutOfWindow,
		},
		{
			name: "a SYN-ACK with a wrong ACK does not advance the handshake", clause: "RFC 9293 3.10.7.3",
			run: func(c *conv) Reason {
				c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240}), ReasonTracked, "SYN")
				return c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 9, win: 65160})
			},
			want: ReasonOutOfWindowPassed,
			check: func(t *testing.T, c *conv) {
				if st := c.state(); st != conntrack.StateSynSent {
					t.Errorf("state %s, want syn_sent", st)
				}
			},
		},
		{
			name: "unknown non-SYN packet is picked up", clause: "SPEC 3 (pickup)",
			run: func(c *conv) Reason {
				return c.fromClient(seg{flags: packet.ACK, seq: 5000, ack: 9000, win: 502, n: 10})
			},
			want: ReasonPickup,
			check: func(t *testing.T, c *conv) {
				if st := c.state(); st != conntrack.StateEstablished {
					t.Errorf("state %s, want established", st)
				}
				if n := c.e.Table().Stats().OneWay.Load(); n != 1 {
					t.Errorf("one-way flows %d, want 1", n)
				}
				c.must(c.fromServer(seg{flags: packet.ACK, seq: 9000, ack: 5010, win: 509}), ReasonTracked, "reply")
				if n := c.e.Table().Stats().OneWay.Load(); n != 0 {
					t.Errorf("one-way flows %d after the reply, want 0", n)
				}
			},
		},
		{
			name: "unknown non-SYN packet with pickup off is passed untracked", clause: "SPEC 3 (pickup = false)",
			run: func(c *conv) Reason {
				c.e.table.Reconfigure(conntrack.Config{MaxFlows: 10, Timeouts: conntrack.DefaultTimeouts()}, c.now)
				return c.fromClient(seg{flags: packet.ACK, seq: 5000, ack: 9000, win: 502, n: 10})
			},
			want: ReasonUnknownFlow,
			check: func(t *testing.T, c *conv) {
				if c.e.Table().Len() != 0 {
					t.Errorf("table has %d flows, want 0", c.e.Table().Len())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConv(t, tt.cfg)
			if got := tt.run(c); got != tt.want {
				t.Fatalf("%s: got %s, want %s", tt.clause, got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestMalformedAndNonTCP covers SPEC 5's classification of what is not a
// judgeable TCP segment.
func TestMalformedAndNonTCP(t *testing.T) {
	e := NewEngine(DefaultConfig(), conntrack.DefaultConfig())
	for _, tt := range []struct {
		kind packet.Kind
		want Reason
	}{
		{packet.KindMalformed, ReasonMalformed},
		{packet.KindNotTCP, ReasonNotTCP},
		{packet.KindFragment, ReasonFragment},
		{packet.KindTruncated, ReasonTruncated},
	} {
		p := packet.Parsed{Kind: tt.kind}
		d := e.Decide(&p, 1)
		v, r := d.Verdict, d.Reason
		if r != tt.want || v != tt.want.Verdict() {
			t.Errorf("kind %d: got %s/%s, want %s", tt.kind, v, r, tt.want)
		}
	}
	if e.Stats().Reasons[ReasonMalformed].Load() != 1 {
		t.Errorf("malformed counter not incremented")
	}
	if ReasonMalformed.Verdict() != Drop || ReasonNotTCP.Verdict() != Accept {
		t.Errorf("malformed must drop and not_tcp accept")
	}
}
