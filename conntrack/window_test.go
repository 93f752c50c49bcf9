package conntrack

import (
	"testing"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
)

// run sends steps and fails on the first unexpected result.
func (c *conn) run(steps []step) {
	c.t.Helper()
	for i, s := range steps {
		if got := c.send(s.seg); got != s.want {
			c.t.Fatalf("step %d: result %s, want %s", i, got, s.want)
		}
	}
}

// TestRecvWindow checks the receive window estimate of each side, with
// sequence numbers crossing 2^32.
func TestRecvWindow(t *testing.T) {
	hs := handshake(-1, -1)
	tests := []struct {
		name   string
		clause string
		steps  []step
		r      Dir // the receiver
		lo, hi uint32
	}{
		{
			name: "initiator before its first ACK", clause: "RFC 9293 3.10.7.3 (SYN-SENT: RCV.NXT = the SYN-ACK's SEQ+1)",
			steps: hs[:2], r: Original, lo: sISN + 1, hi: sISN + 1 + 64240 + 1,
		},
		{
			name: "responder after the SYN", clause: "RFC 9293 3.3.1",
			steps: hs[:2], r: Reply, lo: cISN + 1, hi: cISN + 1 + 65160,
		},
		{
			name: "established, unscaled", clause: "RFC 9293 3.3.1 (RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND)",
			steps: hs, r: Original, lo: sISN + 1, hi: sISN + 1 + 502, // its ACK, not its SYN (no ACK), set the edge
		},
		{
			name: "established, scaled", clause: "RFC 7323 2.2",
			steps: then(handshake(7, 8), step{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 1000}), ResultTracked, StateEstablished}),
			r:     Original, lo: sISN + 1, hi: sISN + 1 + 1000<<7,
		},
		{
			name: "zero window admits SEG.SEQ = RCV.NXT", clause: "RFC 9293 3.10.7.4 (table, second row)",
			steps: []step{
				{fromC(craft.TCP{Flags: packet.SYN, Seq: cISN, Window: 0}), ResultTracked, StateSynSent},
				{fromS(craft.TCP{Flags: packet.SYN | packet.ACK, Seq: sISN, Ack: cISN + 1, Window: 65160}), ResultTracked, StateSynRecv},
				{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 0}), ResultTracked, StateEstablished},
			},
			r: Original, lo: sISN + 1, hi: sISN + 2,
		},
		{
			name: "picked up, receiver never seen", clause: "SPEC 3 (window up to 2^30)",
			steps: []step{{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 502, Payload: payload(100)}), ResultPickedUp, StateEstablished}},
			r:     Reply, lo: cISN + 101 - MaxWindow, hi: cISN + 101 + MaxWindow,
		},
		{
			name: "picked up, sender never seen", clause: "SPEC 3 (window scale unknown)",
			steps: []step{{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 502, Payload: payload(100)}), ResultPickedUp, StateEstablished}},
			r:     Original, lo: sISN + 1, hi: sISN + 1 + MaxWindow,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConn(t, DefaultConfig())
			c.run(tt.steps)
			w := c.flow().RecvWindow(tt.r)
			if w.Lo != sv(tt.lo) || w.Hi != sv(tt.hi) {
				t.Fatalf("%s: window [%#x, %#x), want [%#x, %#x)", tt.clause, w.Lo, w.Hi, tt.lo, tt.hi)
			}
			if !w.Contains(w.Lo) || w.Contains(w.Hi) || w.Contains(w.Lo-1) {
				t.Fatalf("Contains disagrees with [Lo, Hi)")
			}
		})
	}
}

// TestInWindow checks van Rooij's four checks against an established flow
// whose numbers straddle 2^32 (no scaling; the client has sent 300 bytes;
// the server's right edge is still the one of its SYN-ACK, ISN+1+65160).
func TestInWindow(t *testing.T) {
	base := then(handshake(-1, -1),
		step{fromC(craft.TCP{Flags: packet.ACK | packet.PSH, Seq: cISN + 1, Ack: sISN + 1, Window: 502, Payload: payload(300)}), ResultTracked, StateEstablished},
		step{fromS(craft.TCP{Flags: packet.ACK, Seq: sISN + 1, Ack: cISN + 301, Window: 509}), ResultTracked, StateEstablished})
	cData := func(seq, ack uint32, n int) seg {
		return fromC(craft.TCP{Flags: packet.ACK | packet.PSH, Seq: seq, Ack: ack, Window: 502, Payload: payload(n)})
	}
	tests := []struct {
		name      string
		clause    string
		seg       seg
		ok, ahead bool
	}{
		{"next segment", "van Rooij I-IV", cData(cISN+301, sISN+1, 1000), true, false},
		{"retransmission", "van Rooij II (not too old)", cData(cISN+1, sISN+1, 300), true, false},
		{"at the right edge", "van Rooij I (SEG.SEQ =< edge, as Linux)", cData(cISN+1+65160, sISN+1, 1), true, false},
		{"just past the right edge", "van Rooij I (ahead: a gap)", cData(cISN+1+65160+1, sISN+1, 1), false, true},
		{"2^30 past the window", "van Rooij I; RFC 7323 2.3", cData(cISN+301+MaxWindow+65160, sISN+1, 1), false, false},
		{"older than the window", "van Rooij II", cData(cISN+301-65160-10, sISN+1, 5), false, false},
		{"ACK of unsent data", "van Rooij III (ahead: a gap)", cData(cISN+301, sISN+2, 0), false, true},
		{"ACK 2^31 ahead", "van Rooij III", cData(cISN+301, sISN+1+0x80000000, 0), false, false},
		{"ACK older than 66000", "van Rooij IV (MAXACKWINDOW)", cData(cISN+301, sISN+1-66001, 0), false, false},
		{"ACK within 66000 behind", "van Rooij IV", cData(cISN+301, sISN+1-66000, 0), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConn(t, DefaultConfig())
			c.run(base)
			p := tt.seg.parsed()
			f := c.flow()
			before := f.Snapshot()
			ok, ahead := f.inWindow(&p, Original)
			if ok != tt.ok || ahead != tt.ahead {
				t.Fatalf("%s: inWindow = %v, %v, want %v, %v", tt.clause, ok, ahead, tt.ok, tt.ahead)
			}
			if f.Snapshot() != before {
				t.Fatalf("inWindow changed the flow")
			}
		})
	}
}

// TestUpdate checks what an accepted segment records of its sender and its
// receiver.
func TestUpdate(t *testing.T) {
	hs := handshake(-1, -1)
	tests := []struct {
		name   string
		clause string
		steps  []step
		check  func(t *testing.T, f *Flow)
	}{
		{
			name: "SYN sets ISN and end", clause: "RFC 9293 3.4 (the SYN occupies one number)",
			steps: hs[:1],
			check: func(t *testing.T, f *Flow) {
				o := &f.peers[Original]
				if o.isn != sv(cISN) || o.end != sv(cISN+1) || o.prevEnd != sv(cISN) || o.flags&PeerSYN == 0 {
					t.Errorf("isn %#x end %#x prevEnd %#x flags %b", o.isn, o.end, o.prevEnd, o.flags)
				}
				if o.maxWin != 64240 || o.flags&PeerACK != 0 {
					t.Errorf("maxWin %d flags %b", o.maxWin, o.flags)
				}
			},
		},
		{
			name: "data moves end and prevEnd across 2^32", clause: "RFC 9293 3.4",
			steps: then(hs, step{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 502, Payload: payload(1000)}), ResultTracked, StateEstablished}),
			check: func(t *testing.T, f *Flow) {
				if o := &f.peers[Original]; o.end != sv(cISN+1001) || o.prevEnd != sv(cISN+1) {
					t.Errorf("end %#x prevEnd %#x", o.end, o.prevEnd)
				}
			},
		},
		{
			name: "ACK records ack, window and right edge", clause: "RFC 9293 3.8.6 (SND.UNA+SND.WND)",
			steps: then(hs, step{fromS(craft.TCP{Flags: packet.ACK, Seq: sISN + 1, Ack: cISN + 1, Window: 30000}), ResultTracked, StateEstablished}),
			check: func(t *testing.T, f *Flow) {
				r := &f.peers[Reply]
				if r.ack != sv(cISN+1) || r.win != 30000 || r.maxEnd != sv(cISN+1+65160) {
					t.Errorf("ack %#x win %d maxEnd %#x (the SYN-ACK's edge is larger)", r.ack, r.win, r.maxEnd)
				}
				if r.flags&PeerAckedSYN == 0 {
					t.Errorf("PeerAckedSYN not set")
				}
			},
		},
		{
			name: "a zero window still admits a probe", clause: "RFC 9293 3.8.6.1 (zero-window probing)",
			steps: []step{
				hs[0],
				{fromS(craft.TCP{Flags: packet.SYN | packet.ACK, Seq: sISN, Ack: cISN + 1, Window: 0}), ResultTracked, StateSynRecv},
			},
			check: func(t *testing.T, f *Flow) {
				if r := &f.peers[Reply]; r.maxEnd != sv(cISN+2) {
					t.Errorf("maxEnd %#x, want ack+1", r.maxEnd)
				}
			},
		},
		{
			name: "ACK of a FIN marks it acknowledged", clause: "RFC 9293 3.6",
			steps: then(hs, closeSteps[:2]...),
			check: func(t *testing.T, f *Flow) {
				if o := f.peers[Original].flags; o&PeerFIN == 0 || o&PeerFINAcked == 0 {
					t.Errorf("client flags %b, want FIN and FINAcked", o)
				}
			},
		},
		{
			name: "SACK blocks raise the SACK edge", clause: "RFC 2018 3",
			steps: then(hs,
				step{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 502, Payload: payload(1000)}), ResultTracked, StateEstablished},
				step{fromS(craft.TCP{Flags: packet.ACK, Seq: sISN + 1, Ack: cISN + 1, Window: 509, Options: craft.SACK([2]uint32{cISN + 1, cISN + 1001})}), ResultTracked, StateEstablished},
				step{fromS(craft.TCP{Flags: packet.ACK, Seq: sISN + 1, Ack: cISN + 1, Window: 509, Options: craft.SACK([2]uint32{cISN + 1, cISN + 501})}), ResultTracked, StateEstablished}),
			check: func(t *testing.T, f *Flow) {
				if r := &f.peers[Reply]; r.flags&PeerSACKSeen == 0 || r.sackEdge != sv(cISN+1001) {
					t.Errorf("SACK edge %#x flags %b, want the highest", r.sackEdge, r.flags)
				}
			},
		},
		{
			name: "data past the advertised edge widens the window", clause: "Linux tcp_in_window (td_maxwin)",
			steps: then(hs, step{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1 + 65000, Ack: sISN + 1, Window: 502, Payload: payload(1000)}), ResultTracked, StateEstablished}),
			check: func(t *testing.T, f *Flow) {
				if r := &f.peers[Reply]; r.maxEnd != sv(cISN+1+66000) || r.maxWin != 65160+840 {
					t.Errorf("maxEnd %#x maxWin %d", r.maxEnd, r.maxWin)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConn(t, DefaultConfig())
			c.run(tt.steps)
			t.Logf("%s", tt.clause)
			tt.check(t, c.flow())
		})
	}
}

// TestWindowScale checks that shifts are in effect only when both SYNs
// carried the option, and that a picked-up flow learns its receiver's shift.
func TestWindowScale(t *testing.T) {
	tests := []struct {
		name         string
		clause       string
		cWS, sWS     int // -1: no option
		wantC, wantS uint8
	}{
		{"both SYNs carry it", "RFC 7323 2.2", 7, 8, 7, 8},
		{"largest shift", "RFC 7323 2.3 (shift.cnt =< 14)", 14, 14, 14, 14},
		{"only the SYN", "RFC 7323 2.2 (both or neither)", 7, -1, 0, 0},
		{"only the SYN-ACK", "RFC 7323 2.2 (both or neither)", -1, 8, 0, 0},
		{"shift zero", "RFC 7323 2.2", 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConn(t, DefaultConfig())
			c.run(handshake(tt.cWS, tt.sWS))
			f := c.flow()
			if got := [2]uint8{f.Peer(Original).WScale(), f.Peer(Reply).WScale()}; got != [2]uint8{tt.wantC, tt.wantS} {
				t.Fatalf("%s: shifts %v, want %d/%d", tt.clause, got, tt.wantC, tt.wantS)
			}
			// The client's last ACK carried 502: its window is scaled,
			// SYN windows never are (RFC 7323 2.2).
			if got, want := f.Peer(Original).Win(), uint32(502)<<tt.wantC; got != want {
				t.Fatalf("client window %d, want %d", got, want)
			}
			if got := f.Peer(Reply).MaxWin(); got != 65160 {
				t.Fatalf("server SYN-ACK window %d, want 65160 unscaled", got)
			}
		})
	}

	t.Run("picked-up flow learns the shift", func(t *testing.T) {
		// SPEC 3: the server is seen first (so it is Original here) with a
		// raw window of 1000; the client then sends 5000 bytes, which it
		// can only do if the server's shift is at least 3.
		c := newConn(t, DefaultConfig())
		c.run([]step{
			{fromS(craft.TCP{Flags: packet.ACK, Seq: sISN + 1, Ack: cISN + 1, Window: 1000}), ResultPickedUp, StateEstablished},
			{fromC(craft.TCP{Flags: packet.ACK | packet.PSH, Seq: cISN + 1, Ack: sISN + 1, Window: 502, Payload: payload(5000)}), ResultTracked, StateEstablished},
		})
		s := c.flow().Peer(Original) // the server
		if s.WScale() != 3 || s.Win() != 1000<<3 {
			t.Fatalf("server shift %d window %d, want 3 and 8000", s.WScale(), s.Win())
		}
	})
}
