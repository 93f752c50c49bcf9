package policy

import (
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// TestNewIncarnationIsNoEvidence: a SYN that opens a new incarnation of a
// 5-tuple whose flow was closed by a reset (RFC 9293 3.10.7.4; SPEC 5: a
// SYN in closed with a new sequence opens a new incarnation), or that
// retransmits the initiator's SYN, says nothing about that reset: no
// injection signal (Weaver, Sommer, Paxson, NDSS 2009 count what the
// reset's sender does on the same connection). Before the fix a reconnect
// after any accepted reset was reported as synack_after_refusal, read off
// the new flow.
func TestNewIncarnationIsNoEvidence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		clause string
		reset  func(c *conv)
		syn    func(c *conv) seg
	}{
		{"client aborts, then reconnects", "RFC 9293 3.10.7.4, new incarnation",
			func(c *conv) {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt}), ReasonRSTValid, "abort")
			},
			func(c *conv) seg { return seg{flags: packet.SYN, seq: cISN + 5_000_000, win: 502} }},
		{"server aborts, then the client reconnects", "RFC 9293 3.10.7.4, new incarnation",
			func(c *conv) {
				c.handshake(cISN, sISN, 502, 509, 7, 7)
				c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "abort")
			},
			func(c *conv) seg { return seg{flags: packet.SYN, seq: cISN - 5_000_000, win: 502} }},
		{"refused, then the client retransmits its SYN", "RFC 9293 3.10.7.3",
			func(c *conv) {
				c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502}), ReasonTracked, "SYN")
				c.must(c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1}), ReasonRSTValid, "refusal")
			},
			func(c *conv) seg { return seg{flags: packet.SYN, seq: cISN, win: 502} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConv(t, DefaultConfig()) // [injection] mode "log"
			tc.reset(c)
			c.must(c.fromClient(tc.syn(c)), ReasonTracked, "SYN after the reset")
			if c.last.Signals != 0 {
				t.Errorf("%s: SYN after the reset reported %s", tc.clause, c.last.Signals.AppendJSON(nil))
			}
			for s := Signal(0); s < NumSignals; s++ {
				if n := c.e.Stats().Injection[s].Load(); n != 0 {
					t.Errorf("%s counted %d", s, n)
				}
			}
		})
	}
	// The genuine SYN-ACK after a refusal the client ignored is evidence.
	c := newConv(t, DefaultConfig())
	c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502}), ReasonTracked, "SYN")
	c.must(c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1}), ReasonRSTValid, "refusal")
	c.must(c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 1, win: 509}), ReasonTracked, "SYN-ACK")
	if !c.last.Signals.Has(SignalSynAckAfterRefusal) || c.state() != conntrack.StateSynRecv {
		t.Errorf("SYN-ACK after the refusal: signals %s, state %s; want synack_after_refusal, syn_recv", c.last.Signals.AppendJSON(nil), c.state())
	}
}

// TestHeldInitiatorResetNewSYN: in [injection] mode "hold", the
// initiator's reset in SYN-SENT (at its SND.NXT, SPEC 4) is held; its next
// SYN with a new ISN replaces the sequence space (RFC 9293 3.10.7.3; Linux
// re-initialises) and continues nothing, so it is no evidence and the
// reset is not dropped, whichever way the new ISN lies. Before the fix a
// larger new ISN looked like new data (talked_after_reset) and the genuine
// reset was dropped as rst_injected.
func TestHeldInitiatorResetNewSYN(t *testing.T) {
	for _, delta := range []int32{100_000, -100_000, 0} {
		pc := DefaultConfig()
		pc.Injection.Mode = InjectionHold
		c := newConv(t, pc)
		c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502}), ReasonTracked, "SYN")
		c.fromClient(seg{flags: packet.RST, seq: cISN + 1})
		if c.last.Verdict != Hold {
			t.Fatalf("the initiator's reset: %s/%s, want held", c.last.Verdict, c.last.Reason)
		}
		c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN + uint32(delta), win: 502}), ReasonTracked, "next SYN")
		if c.last.Injected != 0 || c.last.Signals != 0 {
			t.Errorf("ISN %+d: the new SYN dropped the held reset (injected %d, signals %s)", delta, c.last.Injected, c.last.Signals.AppendJSON(nil))
		}
		if n := c.e.Stats().Reasons[ReasonRSTInjected].Load(); n != 0 {
			t.Errorf("ISN %+d: rst_injected counted %d", delta, n)
		}
	}
}
