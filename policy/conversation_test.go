package policy

import (
	"testing"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// TestConversationScaledWindow drives a whole connection with window
// scaling (RFC 7323 2.2) and a scaled window of 8 MiB, sequence numbers
// crossing 2^32, and resets at the edges of the scaled window.
func TestConversationScaledWindow(t *testing.T) {
	c := newConv(t, DefaultConfig())
	// Client: raw window 65535 << 7 = 8 MiB. Server: 65535 << 8 = 16 MiB.
	c.handshake(0xFFF00000, 0xFFFFFF00, 65535, 65535, 7, 8)
	f := c.flow()
	if f.Peer(conntrack.Original).WScale() != 7 || f.Peer(conntrack.Reply).WScale() != 8 {
		t.Fatalf("wscale %d/%d, want 7/8", f.Peer(conntrack.Original).WScale(), f.Peer(conntrack.Reply).WScale())
	}
	// The server sends 6 MiB in 1448-byte segments before the client's
	// ACK covers any of it: all within the client's 8 MiB window, and the
	// sequence space wraps past 2^32 on the way.
	start := c.sNxt
	for sent := uint32(0); sent < 6<<20; sent += 1448 {
		r := c.fromServer(seg{flags: packet.ACK, seq: c.sNxt, ack: c.cNxt, win: 65535, n: 1448})
		if r != ReasonTracked {
			t.Fatalf("server data at +%d: %s", sent, r)
		}
		c.sNxt += 1448
	}
	if !seqv(start).LessThan(seqv(c.sNxt)) || c.sNxt > start {
		t.Fatalf("test did not cross 2^32: start %#x now %#x", start, c.sNxt)
	}
	// The client acknowledges the first 1 MiB only.
	acked := start + 1<<20
	c.must(c.fromClient(seg{flags: packet.ACK, seq: c.cNxt, ack: acked, win: 65535}), ReasonTracked, "client ACK")

	// A forged reset 8 MiB + 6 MiB ahead of the client's ACK is beyond
	// any window the client has: dropped.
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 8<<20 + 1}), ReasonRSTOutOfWindow, "RST beyond the scaled window")
	// One below the client's ACK: dropped.
	c.must(c.fromServer(seg{flags: packet.RST, seq: acked - 1}), ReasonRSTOutOfWindow, "RST below RCV.NXT")
	// Inside the scaled window (7 MiB past the ACK): valid in window mode.
	c.must(c.fromServer(seg{flags: packet.RST, seq: acked + 7<<20}), ReasonRSTValid, "RST in the scaled window")
	if st := c.state(); st != conntrack.StateClosed {
		t.Fatalf("state %s, want closed", st)
	}
}

// TestWindowScaleNeedsBothSYNs: RFC 7323 2.2: "both sides must send the
// Window Scale option in their SYN segments to enable window scaling in
// either direction". With only the client offering it, the raw windows
// are bytes and a reset 1 MiB ahead is out of window.
func TestWindowScaleNeedsBothSYNs(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.handshake(cISN, sISN, 65535, 65535, 7, -1)
	f := c.flow()
	if f.Peer(conntrack.Original).WScale() != 0 || f.Peer(conntrack.Reply).WScale() != 0 {
		t.Fatalf("wscale %d/%d, want 0/0", f.Peer(conntrack.Original).WScale(), f.Peer(conntrack.Reply).WScale())
	}
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 1<<20}), ReasonRSTOutOfWindow, "RST 1 MiB ahead")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 60000}), ReasonRSTValid, "RST in the 64 KiB window")
}

// TestSimultaneousOpen: RFC 9293 3.5 figure 8: both sides send SYN, then
// SYN-ACK; the flow becomes established and resets are validated.
func TestSimultaneousOpen(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240}), ReasonTracked, "SYN a")
	c.must(c.fromServer(seg{flags: packet.SYN, seq: sISN, win: 64240}), ReasonTracked, "SYN b")
	if st := c.state(); st != conntrack.StateSynRecv {
		t.Fatalf("state %s, want syn_recv", st)
	}
	c.must(c.fromClient(seg{flags: packet.SYN | packet.ACK, seq: cISN, ack: sISN + 1, win: 64240}), ReasonTracked, "SYN-ACK a")
	c.must(c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 1, win: 64240}), ReasonTracked, "SYN-ACK b")
	if st := c.state(); st != conntrack.StateEstablished {
		t.Fatalf("state %s, want established", st)
	}
	c.cNxt, c.sNxt = cISN+1, sISN+1
	c.must(c.data(true, 100, 64240), ReasonTracked, "data")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 1<<24}), ReasonRSTOutOfWindow, "forged RST")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "RST")
}

// TestFINThenRST: a reset after one side's FIN is still validated by the
// window (RFC 9293 3.10.7.4 applies in FIN-WAIT and CLOSE-WAIT).
func TestFINThenRST(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	c.data(false, 5000, 509)
	c.must(c.fromServer(seg{flags: packet.FIN | packet.ACK, seq: c.sNxt, ack: c.cNxt, win: 509}), ReasonTracked, "server FIN")
	c.sNxt++
	if st := c.state(); st != conntrack.StateFinWait {
		t.Fatalf("state %s, want fin_wait", st)
	}
	c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt + 1<<28}), ReasonRSTOutOfWindow, "forged RST from client side")
	c.must(c.fromClient(seg{flags: packet.ACK, seq: c.cNxt, ack: c.sNxt, win: 502}), ReasonTracked, "ACK of FIN")
	if st := c.state(); st != conntrack.StateCloseWait {
		t.Fatalf("state %s, want close_wait", st)
	}
	c.must(c.fromClient(seg{flags: packet.RST | packet.ACK, seq: c.cNxt, ack: c.sNxt}), ReasonRSTValid, "client abort")
	// The reset is retransmitted: still valid; anything else is not.
	c.must(c.fromClient(seg{flags: packet.RST | packet.ACK, seq: c.cNxt, ack: c.sNxt}), ReasonRSTValid, "retransmitted RST")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 5}), ReasonRSTOutOfWindow, "other RST after close")
}

// TestIPv6Conversation runs a handshake, data and resets over IPv6.
func TestIPv6Conversation(t *testing.T) {
	c := newConv(t, DefaultConfig()).v6()
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	c.must(c.data(true, 1000, 502), ReasonTracked, "data")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt - 1<<31}), ReasonRSTOutOfWindow, "forged RST")
	c.must(c.data(false, 1000, 509), ReasonTracked, "data after forged RST")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "RST")
}

// TestPickupThenForgedReset: SPEC 3: a flow picked up mid-stream validates
// resets loosely until both directions are seen (a window may then be
// 2^30 bytes) and strictly after that.
func TestPickupThenForgedReset(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.cNxt, c.sNxt = 0x7FFFFFF0, 0xFFFFFFF0
	c.must(c.data(true, 1000, 502), ReasonPickup, "first packet")
	// Loose: only the client was seen. A reset towards the server half the
	// sequence space away from anything seen is dropped; within 2^30 of
	// the client's sequence it passes.
	c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt + 1<<31}), ReasonRSTOutOfWindow, "far RST, loose phase")
	// Server replies with its own (scaled, unknown shift) window.
	c.must(c.data(false, 1000, 509), ReasonTracked, "server data")
	// More client data, 300 KB in flight: more than 509 bytes, so the
	// server's shift is learned (>= 10).
	for i := 0; i < 200; i++ {
		c.must(c.fromClient(seg{flags: packet.ACK, seq: c.cNxt, ack: c.sNxt, win: 502, n: 1448}), ReasonTracked, "client data")
		c.cNxt += 1448
	}
	f := c.flow()
	if ws := f.Peer(conntrack.Reply).WScale(); ws < 10 {
		t.Errorf("learned server shift %d, want >= 10", ws)
	}
	// Strict now: a reset 64 MiB past anything is dropped, one at the
	// client's next sequence passes.
	c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt + 64<<20}), ReasonRSTOutOfWindow, "forged RST, strict phase")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 64<<20}), ReasonRSTOutOfWindow, "forged RST to the client, strict phase")
	c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt}), ReasonRSTValid, "genuine RST")
}

// TestGapResync: SPEC 3: packets that bypassed the queue leave a gap; the
// next segments are ahead of the tracked window. The flow resynchronises
// (counted) instead of treating the next legitimate reset as forged.
func TestGapResync(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	// 10 MB pass both ways without us.
	c.cNxt += 10 << 20
	c.sNxt += 10 << 20
	c.must(c.data(true, 100, 502), ReasonGapResync, "client after the gap")
	c.must(c.data(false, 100, 509), ReasonTracked, "server after the gap")
	if n := c.e.Table().Stats().Gaps.Load(); n != 1 {
		t.Errorf("gaps %d, want 1", n)
	}
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 1<<30}), ReasonRSTOutOfWindow, "forged RST")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "genuine RST after the gap")
}

// TestTimeouts: SPEC 3 timeouts, driven by the packets' clock.
func TestTimeouts(t *testing.T) {
	tc := conntrack.DefaultConfig()
	c := newConvTable(t, DefaultConfig(), tc)
	c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 64240}), ReasonTracked, "SYN")
	c.now += int64(tc.Timeouts.SynSent) - int64(2*time.Millisecond)
	if st := c.state(); st != conntrack.StateSynSent {
		t.Fatalf("just before the timeout: %s", st)
	}
	c.now += int64(10 * time.Millisecond)
	if st := c.state(); st != conntrack.StateNone {
		t.Fatalf("after the syn_sent timeout: %s, want none", st)
	}
	if n := c.e.Table().Stats().Expired.Load(); n != 1 {
		t.Errorf("expired %d, want 1", n)
	}
	// An established flow outlives the syn_sent timeout by far.
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	c.now += int64(24 * time.Hour)
	c.must(c.data(true, 10, 502), ReasonTracked, "after a day idle")
	// A reset flow lingers for the closed timeout only.
	c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt}), ReasonRSTValid, "RST")
	c.now += int64(tc.Timeouts.Closed) + 1
	if st := c.state(); st != conntrack.StateNone {
		t.Fatalf("after the closed timeout: %s", st)
	}
}

// TestReconfigureKeepsFlows: a reload (SPEC 6) changes the policy and keeps
// every flow.
func TestReconfigureKeepsFlows(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	c.e.Reconfigure(Config{RSTMode: RSTModeExact}, conntrack.DefaultConfig())
	c.must(c.data(true, 10, 502), ReasonTracked, "data after reload")
	if c.e.Config().RSTMode != RSTModeExact || c.e.Stats().Reconfigured.Load() != 1 {
		t.Fatalf("reload not applied")
	}
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 10}), ReasonRSTNotExact, "inexact RST after reload")
}

// TestResetIgnoredByEndpointRevivesFlow: in window mode the guard passes an
// in-window reset that a RFC 5961 endpoint answers with a challenge ACK
// and ignores (RFC 5961 3.2). New data afterwards revives the flow, so
// the endpoints' real reset later is judged against the real windows.
func TestResetIgnoredByEndpointRevivesFlow(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.handshake(cISN, sISN, 502, 509, 7, 7)
	c.must(c.data(true, 1000, 502), ReasonTracked, "data")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 3000}), ReasonRSTValid, "in-window forged RST")
	if st := c.state(); st != conntrack.StateClosed {
		t.Fatalf("state %s, want closed", st)
	}
	// The client ignored it: the conversation goes on.
	c.must(c.data(false, 100000, 509), ReasonTracked, "server data after the reset")
	if st := c.state(); st != conntrack.StateEstablished {
		t.Fatalf("state %s after new data, want established (revived)", st)
	}
	if n := c.e.Table().Stats().Revived[conntrack.StateEstablished].Load(); n != 1 {
		t.Errorf("revived from established: %d, want 1", n)
	}
	c.must(c.data(true, 10, 502), ReasonTracked, "client data")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 1<<30}), ReasonRSTOutOfWindow, "forged RST after revival")
	c.must(c.fromServer(seg{flags: packet.RST | packet.ACK, seq: c.sNxt, ack: c.cNxt}), ReasonRSTValid, "genuine RST at the new position")
}

// TestRefusalIgnoredRevivesFlow: RFC 9293 3.10.7.3. A refusal (RST/ACK
// acknowledging the SYN) is accepted in SYN-SENT; when the client did not
// honour it (it failed PAWS, or it was injected and lost the race) the
// genuine SYN-ACK answering the same SYN follows. The flow is revived from
// SYN-SENT with the real windows (counted by the state the reset was
// accepted in): the handshake completes, a forged reset far from the window
// is dropped, and the genuine reset at the server's next sequence number
// passes.
func TestRefusalIgnoredRevivesFlow(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502, opts: packet.OptMSS | packet.OptWScale, wscale: 7}), ReasonTracked, "SYN")
	c.must(c.fromServer(seg{flags: packet.RST | packet.ACK, seq: 0, ack: cISN + 1}), ReasonRSTValid, "refusal (injected)")
	if st := c.state(); st != conntrack.StateClosed {
		t.Fatalf("after the refusal: %s", st)
	}
	c.must(c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 1, win: 509, opts: packet.OptMSS | packet.OptWScale, wscale: 7}),
		ReasonTracked, "the genuine SYN-ACK")
	if st := c.state(); st != conntrack.StateSynRecv {
		t.Fatalf("after the genuine SYN-ACK: %s, want syn_recv (revived)", st)
	}
	if n := c.e.Table().Stats().Revived[conntrack.StateSynSent].Load(); n != 1 {
		t.Errorf("revived from syn_sent: %d, want 1", n)
	}
	c.must(c.fromClient(seg{flags: packet.ACK, seq: cISN + 1, ack: sISN + 1, win: 502}), ReasonTracked, "ACK")
	c.cISN, c.sISN, c.cNxt, c.sNxt = cISN, sISN, cISN+1, sISN+1
	if st := c.state(); st != conntrack.StateEstablished {
		t.Fatalf("after the handshake: %s", st)
	}
	c.must(c.data(false, 5000, 509), ReasonTracked, "server data")
	c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 50<<20}), ReasonRSTOutOfWindow, "forged reset 50 MB out")
	c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt}), ReasonRSTValid, "the client's genuine reset at its RCV.NXT")
	// A SYN-ACK that does not answer the SYN does not revive.
	c2 := newConv(t, DefaultConfig())
	c2.must(c2.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502}), ReasonTracked, "SYN")
	c2.must(c2.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1}), ReasonRSTValid, "refusal")
	c2.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 77, win: 509})
	if st := c2.state(); st != conntrack.StateClosed || c2.e.Table().Stats().Revived[conntrack.StateSynSent].Load() != 0 {
		t.Errorf("a SYN-ACK acknowledging something else revived the flow: %s", st)
	}
}

// TestClosedStateUsesTheSendersNumbers: after a refusal accepted in
// SYN-SENT, the client's reset at its own next sequence number (ISN+1, RFC
// 9293 3.10.7.4) is valid and one at sequence 0 is not.
func TestClosedStateUsesTheSendersNumbers(t *testing.T) {
	c := newConv(t, DefaultConfig())
	c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502}), ReasonTracked, "SYN")
	c.must(c.fromServer(seg{flags: packet.RST | packet.ACK, seq: 0, ack: cISN + 1}), ReasonRSTValid, "refusal")
	c.must(c.fromClient(seg{flags: packet.RST, seq: 0}), ReasonRSTOutOfWindow, "client reset at 0")
	c.must(c.fromClient(seg{flags: packet.RST, seq: cISN + 1}), ReasonRSTValid, "client reset at ISN+1")
}

// TestResetTTLMismatch: a reset whose TTL is far from the claimed sender's
// baseline is flagged and counted (the on-path injection signal of Weaver,
// Sommer and Paxson, NDSS 2009), whatever its verdict; one within
// DefaultTTLTolerance is not.
func TestResetTTLMismatch(t *testing.T) {
	for _, c := range []struct {
		name    string
		ttl     uint8
		seqOff  uint32
		want    Reason
		flagged bool
	}{
		{"forged, far out, odd TTL", 201, 1 << 30, ReasonRSTOutOfWindow, true},
		{"in window, odd TTL", 201, 0, ReasonRSTValid, true},
		{"in window, TTL within tolerance", 64 - DefaultTTLTolerance, 0, ReasonRSTValid, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cv := newConv(t, DefaultConfig())
			cv.handshake(cISN, sISN, 502, 509, 7, 7)
			cv.must(cv.fromServer(seg{flags: packet.RST, seq: cv.sNxt + c.seqOff, ttl: c.ttl}), c.want, "reset")
			if cv.last.TTLMismatch != c.flagged {
				t.Errorf("TTLMismatch = %v, want %v", cv.last.TTLMismatch, c.flagged)
			}
			o := OutcomeAccepted
			if c.want.Verdict() == Drop {
				o = OutcomeDropped
			}
			if n := cv.e.Stats().TTLMismatch[o].Load(); (n == 1) != c.flagged {
				t.Errorf("counted %d", n)
			}
		})
	}
}
