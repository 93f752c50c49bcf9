package policy

import (
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// ISNs just below 2^32 so that every window in these tests crosses the wrap.
var (
	cISN uint32 = 0xFFFFFF00
	sISN uint32 = 0xFFFFFFF0
)

// TestRSTRules has one row per row of SPEC section 4, each naming the RFC
// clause it checks.
func TestRSTRules(t *testing.T) {
	type setup func(c *conv)
	synSent := func(c *conv) {
		c.cISN = cISN
		c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240}), ReasonTracked, "SYN")
	}
	synRecv := func(c *conv) {
		synSent(c)
		c.sISN = sISN
		c.must(c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 1, win: 65160}), ReasonTracked, "SYN-ACK")
	}
	established := func(c *conv) {
		c.handshake(cISN, sISN, 502, 509, 7, 7) // 64256 and 65152 bytes
		c.data(true, 1000, 502)
		c.data(false, 3000, 509)
		c.data(true, 200, 502) // acknowledges the server's data
	}
	// The client's FIN, acknowledged: the server is in CLOSE-WAIT.
	clientFINAcked := func(c *conv) {
		established(c)
		c.must(c.fromClient(seg{flags: packet.FIN | packet.ACK, seq: c.cNxt, ack: c.sNxt, win: 502}), ReasonTracked, "FIN")
		c.cNxt++
		c.must(c.fromServer(seg{flags: packet.ACK, seq: c.sNxt, ack: c.cNxt, win: 509}), ReasonTracked, "ACK of FIN")
	}
	// The server reset the established flow at its SND.NXT.
	closedByServer := func(c *conv) {
		established(c)
		c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "first RST")
	}
	exact := Config{RSTMode: RSTModeExact}

	tests := []struct {
		name   string
		clause string
		cfg    Config
		setup  setup
		client bool // the reset comes from the client (initiator)
		rst    func(c *conv) seg
		want   Reason
		state  conntrack.State // the state after the reset
	}{
		{
			name: "no flow, default accepts", clause: "RFC 9293 3.10.7.2 (LISTEN ignores RST)",
			setup: func(c *conv) {}, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: 12345} },
			want: ReasonUnknownFlow, state: conntrack.StateNone,
		},
		{
			name: "no flow, unknown_flow_rst=drop", clause: "SPEC 4 row 1; RFC 9293 3.10.7.1",
			cfg:   Config{DropUnknownFlowRST: true},
			setup: func(c *conv) {}, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, seq: 1, ack: 2} },
			want: ReasonRSTUnknownFlow, state: conntrack.StateNone,
		},
		{
			name: "syn_sent, responder RST/ACK acknowledging the SYN", clause: "RFC 9293 3.10.7.3 (SND.UNA < SEG.ACK =< SND.NXT)",
			setup: synSent, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, seq: 0, ack: cISN + 1} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "syn_sent, responder RST without ACK", clause: "RFC 9293 3.10.7.3 (no ACK: drop the segment)",
			setup: synSent, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: 0} },
			want: ReasonRSTSynSentNoACK, state: conntrack.StateSynSent,
		},
		{
			name: "syn_sent, responder RST/ACK acknowledging the ISN itself", clause: "RFC 9293 3.10.7.3 (SEG.ACK =< ISS is unacceptable)",
			setup: synSent, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, ack: cISN} },
			want: ReasonRSTSynSentBadACK, state: conntrack.StateSynSent,
		},
		{
			name: "syn_sent, responder RST/ACK beyond SND.NXT", clause: "RFC 9293 3.10.7.3 (SEG.ACK > SND.NXT is unacceptable)",
			setup: synSent, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, ack: cISN + 2} },
			want: ReasonRSTSynSentBadACK, state: conntrack.StateSynSent,
		},
		{
			name: "syn_sent, initiator RST at its SND.NXT", clause: "SPEC 4 row 3",
			setup: synSent, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: cISN + 1} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "syn_sent, initiator RST elsewhere", clause: "SPEC 4 row 3",
			setup: synSent, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: cISN + 1000} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateSynSent,
		},
		{
			name: "syn_recv, initiator RST in the responder's SYN-ACK window", clause: "RFC 9293 3.10.7.4 first check (SYN-RECEIVED)",
			setup: synRecv, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: cISN + 1 + 60000} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "syn_recv, initiator RST beyond the responder's window", clause: "RFC 9293 3.10.7.4 first check (SYN-RECEIVED)",
			setup: synRecv, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: cISN + 1 + 70000} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateSynRecv,
		},
		{
			name: "syn_recv, responder RST in the initiator's SYN window", clause: "RFC 9293 3.10.7.4 first check (window of the SYN)",
			setup: synRecv, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: sISN + 1} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "syn_recv, responder RST whose ACK acknowledges the SYN", clause: "RFC 9293 3.10.7.3 (initiator still in SYN-SENT)",
			setup: synRecv, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, seq: sISN + 500000, ack: cISN + 1} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "syn_recv, responder RST out of window with a wrong ACK", clause: "RFC 9293 3.10.7.4 first check",
			setup: synRecv, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, seq: sISN + 500000, ack: cISN + 7} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateSynRecv,
		},
		{
			name: "established, RST at RCV.NXT from the server", clause: "RFC 9293 3.10.7.4 first check (RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND)",
			setup: established, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.sNxt} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "established, RST inside the client's window (window mode)", clause: "RFC 9293 3.10.7.4 first check",
			setup: established, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.sNxt + 40000} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "established, RST just past the client's window", clause: "RFC 9293 3.10.7.4 first check",
			setup: established, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.sNxt + 64256 + 1} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateEstablished,
		},
		{
			name: "established, RST below RCV.NXT", clause: "RFC 9293 3.10.7.4 first check",
			setup: established, client: true,
			// The server last acknowledged cNxt-200.
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt - 201} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateEstablished,
		},
		{
			name: "established, RST half the sequence space away", clause: "RFC 9293 3.10.7.4 first check",
			setup: established, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt + 1<<31} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateEstablished,
		},
		{
			name: "established, RST with a nonsense ACK but a valid SEQ", clause: "RFC 9293 3.10.7.4 (only SEQ is checked); RFC 1122 4.2.2.12",
			setup: established, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, seq: c.cNxt, ack: 7, n: 20} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "exact mode, RST at RCV.NXT", clause: "RFC 5961 3.2 (exact match resets)",
			cfg: exact, setup: established, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "exact mode, RST in window but not exact", clause: "RFC 5961 3.2 (in window, not exact: challenge ACK)",
			cfg: exact, setup: established, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt + 100} },
			want: ReasonRSTNotExact, state: conntrack.StateEstablished,
		},
		{
			name: "exact mode, RST out of window", clause: "RFC 5961 3.2 (out of window: discard)",
			cfg: exact, setup: established, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt + 1<<30} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateEstablished,
		},
		{
			name: "exact mode, RST at the end of the sender's previous segment", clause: "SPEC 4 exact mode (end of S's previous segment)",
			cfg: exact, setup: func(c *conv) {
				established(c)
				c.data(true, 100, 502)
			}, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt - 100} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "exact mode, RST at the highest SACK edge the receiver sent", clause: "RFC 5961 3.2 as Linux tcp_validate_incoming (max_sack)",
			cfg: exact, setup: func(c *conv) {
				established(c)
				c.must(c.fromServer(seg{flags: packet.ACK, seq: c.sNxt, ack: c.cNxt, win: 509, opts: packet.OptSACK, sackEdg: c.cNxt + 5000}), ReasonTracked, "SACK")
			}, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt + 5000} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "exact mode, RCV.NXT-1 after the receiver got a FIN", clause: "RFC 5961 3.2 as Linux tcp_reset_check (CLOSE-WAIT)",
			cfg: exact, setup: clientFINAcked, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt - 1} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "window mode, RCV.NXT-1 after the receiver got a FIN", clause: "RFC 9293 3.10.7.4 as Linux tcp_reset_check (CLOSE-WAIT, LAST-ACK, CLOSING)",
			setup: clientFINAcked, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.cNxt - 1} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "closed, retransmitted reset", clause: "SPEC 4 row closed",
			setup: closedByServer, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.sNxt} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "closed, another reset", clause: "SPEC 4 row closed",
			setup: closedByServer, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST, seq: c.sNxt + 10} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateClosed,
		},
		{
			name: "closed, the other side's reset at its exact SND.NXT", clause: "SPEC 4 row closed (deviation: exact positions, RFC 5961 3.2)",
			setup: closedByServer, client: true,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, seq: c.cNxt, ack: c.sNxt} },
			want: ReasonRSTValid, state: conntrack.StateClosed,
		},
		{
			name: "closed, after a refused SYN only the same reset", clause: "SPEC 4 row closed",
			setup: func(c *conv) {
				c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240}), ReasonTracked, "SYN")
				c.must(c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1}), ReasonRSTValid, "refusal")
			}, client: false,
			rst:  func(c *conv) seg { return seg{flags: packet.RST | packet.ACK, seq: 1, ack: cISN + 1} },
			want: ReasonRSTOutOfWindow, state: conntrack.StateClosed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConv(t, tt.cfg)
			tt.setup(c)
			before := c.flow0()
			s := tt.rst(c)
			// Each reset is sent once, from the side the row names.
			var got Reason
			if tt.client {
				got = c.fromClient(s)
			} else {
				got = c.fromServer(s)
			}
			if got != tt.want {
				t.Fatalf("%s: reset %+v: got %s, want %s (detail %+v)", tt.clause, s, got, tt.want, c.last)
			}
			if st := c.state(); st != tt.state {
				t.Errorf("%s: state after reset %s, want %s", tt.clause, st, tt.state)
			}
			if got.Verdict() == Drop {
				// SPEC 2 step 5: a dropped packet changes nothing.
				if after := c.flow0(); after != before {
					t.Errorf("dropped reset changed the flow:\nbefore %+v\nafter  %+v", before, after)
				}
			}
		})
	}
}

// flow0 returns a copy of the flow (without LRU links and time) or a zero
// flow when there is none.
func (c *conv) flow0() conntrack.Flow {
	p := parsed(c.client, c.server, seg{})
	k, _ := conntrack.MakeKey(&p)
	slot, ok := c.e.Table().Lookup(&k, c.now)
	if !ok {
		return conntrack.Flow{}
	}
	f := c.e.Table().Flow(slot)
	return f.Snapshot()
}
