package policy

import (
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// Engine tests of [injection] (policy/injection.go). The ISNs (cISN, sISN)
// sit just below 2^32: every conversation here crosses the wrap.

func withInjection(m InjectionMode) Config {
	pc := DefaultConfig()
	pc.Injection.Mode = m
	return pc
}

// held asserts that the last decision held a valid reset.
func (c *conv) held(what string) uint32 {
	c.t.Helper()
	if c.last.Verdict != Hold || c.last.HoldToken == 0 || c.last.Reason != ReasonRSTValid {
		c.t.Fatalf("%s: verdict %s reason %s token %d, want hold rst_valid", what, c.last.Verdict, c.last.Reason, c.last.HoldToken)
	}
	c.heldD = c.last
	return c.last.HoldToken
}

// release ends the hold of the reset c.held last saw held (as the driver
// does when max_hold has passed), s being that reset, and returns the
// decision.
func (c *conv) release(fromClient bool, s seg) Decision {
	c.t.Helper()
	src, dst := c.client, c.server
	if !fromClient {
		src, dst = dst, src
	}
	p := parsed(src, dst, s)
	h := HeldOf(&p, &c.heldD)
	c.now += 50e6
	return c.e.Release(&h, c.now)
}

// TestHoldDecisions: [injection] mode = "hold", one row per way a held
// reset ends, each naming the clause or the paper's signal it relies on.
func TestHoldDecisions(t *testing.T) {
	type step func(c *conv)
	tests := []struct {
		name  string
		steps []step
	}{
		{
			// Weaver, Sommer, Paxson (NDSS 2009) 4.1: data after the
			// reset from its purported sender.
			"injected at RCV.NXT, then the server's data: rst_injected", []step{
				func(c *conv) { c.handshake(cISN, sISN, 502, 509, 7, 7); c.data(true, 100, 502) },
				func(c *conv) {
					c.fromServer(seg{flags: packet.RST | packet.ACK, seq: c.sNxt, ack: c.cNxt, ttl: 60})
					c.held("forged reset")
				},
				func(c *conv) {
					tok := c.last.HoldToken
					c.must(c.data(false, 300, 509), ReasonTracked, "the server's reply")
					if c.last.Injected != tok || c.last.InjectedN != 1 || !c.last.Signals.Has(SignalTalkedAfterReset) {
						c.t.Fatalf("reply: injected %d (n %d) signals %b, want token %d and talked_after_reset", c.last.Injected, c.last.InjectedN, c.last.Signals, tok)
					}
					if st := c.state(); st != conntrack.StateEstablished {
						c.t.Fatalf("state %s, want established (the flow never closed)", st)
					}
					if n := c.e.Stats().Reasons[ReasonRSTInjected].Load(); n != 1 {
						c.t.Fatalf("rst_injected %d", n)
					}
					// The connection's real windows still apply.
					c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 50<<20}), ReasonRSTOutOfWindow, "blind reset 50 MB out")
				},
			}},
		{
			// 4.1 again: an advancing ACK is as much "talking" as data.
			"injected, then the server acknowledges new client data", []step{
				func(c *conv) { c.handshake(cISN, sISN, 502, 509, 7, 7) },
				func(c *conv) { c.fromServer(seg{flags: packet.RST, seq: c.sNxt}); c.held("forged reset") },
				func(c *conv) { c.data(true, 100, 502) }, // the client's data does not count
				func(c *conv) {
					if c.last.Injected != 0 {
						c.t.Fatal("the client's own data contradicted the server's reset")
					}
					c.fromServer(seg{flags: packet.ACK, seq: c.sNxt, ack: c.cNxt, win: 509})
					if c.last.Injected == 0 || c.last.Reason != ReasonTracked {
						c.t.Fatalf("advancing ACK: injected %d reason %s", c.last.Injected, c.last.Reason)
					}
				},
			}},
		{
			// RFC 9293 3.10.7.3 makes the refusal valid; the genuine
			// SYN-ACK answering the same SYN shows it was injected
			// (the injected-refusal race).
			"injected refusal in SYN-SENT, then the genuine SYN-ACK", []step{
				func(c *conv) {
					c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502, opts: packet.OptMSS | packet.OptWScale, wscale: 7}), ReasonTracked, "SYN")
					c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1, ttl: 50})
					c.held("injected refusal")
				},
				func(c *conv) {
					c.must(c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 1, win: 509, opts: packet.OptMSS | packet.OptWScale, wscale: 7}),
						ReasonTracked, "the genuine SYN-ACK")
					if c.last.Injected == 0 || !c.last.Signals.Has(SignalSynAckAfterRefusal) {
						c.t.Fatalf("SYN-ACK: injected %d signals %b", c.last.Injected, c.last.Signals)
					}
					c.must(c.fromClient(seg{flags: packet.ACK, seq: cISN + 1, ack: sISN + 1, win: 502}), ReasonTracked, "ACK")
					c.cISN, c.sISN, c.cNxt, c.sNxt = cISN, sISN, cISN+1, sISN+1
					c.must(c.data(false, 1000, 509), ReasonTracked, "data")
					if st := c.state(); st != conntrack.StateEstablished {
						c.t.Fatalf("state %s", st)
					}
				},
			}},
		{
			// RFC 9293 3.10.7.4: a genuine abort; nothing follows from
			// its sender, the hold ends and the reset closes the flow.
			"genuine abort: released when the hold ends", []step{
				func(c *conv) { c.handshake(cISN, sISN, 502, 509, 7, 7); c.data(false, 100, 509) },
				func(c *conv) {
					c.fromServer(seg{flags: packet.RST | packet.ACK, seq: c.sNxt, ack: c.cNxt})
					c.held("abort")
				},
				func(c *conv) { c.data(true, 10, 502) }, // in flight from the client before it saw the reset
				func(c *conv) {
					d := c.release(false, seg{flags: packet.RST | packet.ACK, seq: c.sNxt, ack: c.cNxt})
					if d.Verdict != Accept || d.Reason != ReasonRSTValid {
						c.t.Fatalf("release: %s %s", d.Verdict, d.Reason)
					}
					if st := c.state(); st != conntrack.StateClosed {
						c.t.Fatalf("after the release: %s, want closed", st)
					}
					st := c.e.Stats()
					if st.Reasons[ReasonRSTValid].Load() != 1 || st.Held[OutcomeAccepted].Load() != 1 || st.Resets[conntrack.StateEstablished][OutcomeAccepted].Load() != 1 {
						c.t.Fatalf("rst_valid %d held accepted %d", st.Reasons[ReasonRSTValid].Load(), st.Held[OutcomeAccepted].Load())
					}
				},
			}},
		{
			// RFC 9293 3.10.7.3 and 3.10.7.4 (the obeyed refusal) and
			// 3.10.7.4's note on a new SYN: a refusal the client obeyed
			// stays a refusal; a new SYN on the same ports opens a new
			// incarnation.
			"genuine refusal obeyed; a new SYN opens a new incarnation", []step{
				func(c *conv) {
					c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502}), ReasonTracked, "SYN")
					c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1})
					c.held("refusal")
				},
				func(c *conv) {
					if d := c.release(false, seg{flags: packet.RST | packet.ACK, ack: cISN + 1}); d.Reason != ReasonRSTValid || d.Verdict != Accept {
						c.t.Fatalf("release: %s %s", d.Verdict, d.Reason)
					}
					if st := c.state(); st != conntrack.StateClosed {
						c.t.Fatalf("state %s, want closed", st)
					}
					c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN + 100000, win: 502}), ReasonTracked, "new SYN")
					if st := c.state(); st != conntrack.StateSynSent {
						c.t.Fatalf("after the new SYN: %s, want syn_sent", st)
					}
					if n := c.e.Table().Stats().Revived[conntrack.StateSynSent].Load(); n != 0 {
						c.t.Fatalf("revived %d: a new incarnation is not a revival", n)
					}
				},
			}},
		{
			// Both ends abort at once: the other side's reset is judged
			// at once and ends the hold's claim; the held one is still
			// let through when its hold ends.
			"the other side resets while one reset is held", []step{
				func(c *conv) { c.handshake(cISN, sISN, 502, 509, 7, 7) },
				func(c *conv) { c.fromServer(seg{flags: packet.RST, seq: c.sNxt}); c.held("server reset") },
				func(c *conv) {
					c.must(c.fromClient(seg{flags: packet.RST, seq: c.cNxt}), ReasonRSTValid, "client reset")
					if c.last.Verdict != Accept {
						c.t.Fatalf("client reset: %s, want accept at once", c.last.Verdict)
					}
				},
			}},
		{
			// A reset that fails a window check is never held.
			"an out-of-window reset is dropped at once, not held", []step{
				func(c *conv) { c.handshake(cISN, sISN, 502, 509, 7, 7) },
				func(c *conv) {
					c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt + 1<<30}), ReasonRSTOutOfWindow, "blind reset")
					if c.last.Verdict != Drop || c.last.HoldToken != 0 {
						c.t.Fatalf("verdict %s token %d", c.last.Verdict, c.last.HoldToken)
					}
				},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConv(t, withInjection(InjectionHold))
			for _, s := range tt.steps {
				s(c)
			}
		})
	}
}

// TestInjectionSignalsLog: [injection] mode = "log" changes no verdict; the
// evidence is reported on the packet that gives it.
func TestInjectionSignalsLog(t *testing.T) {
	t.Run("talked_after_reset (Weaver et al. 4.1)", func(t *testing.T) {
		c := newConv(t, withInjection(InjectionLog))
		c.handshake(cISN, sISN, 502, 509, 7, 7)
		rst := c.sNxt
		c.must(c.fromServer(seg{flags: packet.RST, seq: rst}), ReasonRSTValid, "reset")
		if c.last.Verdict != Accept {
			t.Fatalf("log mode held: %s", c.last.Verdict)
		}
		c.must(c.data(false, 100, 509), ReasonTracked, "the server goes on")
		if !c.last.Signals.Has(SignalTalkedAfterReset) || c.e.Stats().Injection[SignalTalkedAfterReset].Load() != 1 {
			t.Fatalf("signals %b", c.last.Signals)
		}
		// Expected: the reset's number; seen: where the sender's data
		// ends (as hold mode reports it).
		if c.last.Expected != rst || c.last.Seen != rst+100 {
			t.Fatalf("expected %d seen %d, want %d %d", c.last.Expected, c.last.Seen, rst, rst+100)
		}
		if st := c.state(); st != conntrack.StateEstablished {
			t.Fatalf("state %s, want established (revived)", st)
		}
	})
	t.Run("synack_after_refusal (ignored refusal)", func(t *testing.T) {
		c := newConv(t, withInjection(InjectionLog))
		c.must(c.fromClient(seg{flags: packet.SYN, seq: cISN, win: 502}), ReasonTracked, "SYN")
		c.must(c.fromServer(seg{flags: packet.RST | packet.ACK, ack: cISN + 1}), ReasonRSTValid, "refusal")
		c.must(c.fromServer(seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 1, win: 509}), ReasonTracked, "SYN-ACK")
		if !c.last.Signals.Has(SignalSynAckAfterRefusal) {
			t.Fatalf("signals %b", c.last.Signals)
		}
	})
	t.Run("reset_seq_changed within 2 s, not after (Weaver et al. 4.3)", func(t *testing.T) {
		c := newConv(t, withInjection(InjectionLog))
		c.handshake(cISN, sISN, 502, 509, 7, 7)
		c.data(false, 100, 509) // not acknowledged yet: two exact positions
		c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "first reset, at the server's SND.NXT")
		c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt - 100}), ReasonRSTValid, "second reset, at the client's last ACK")
		if !c.last.Signals.Has(SignalResetSeqChanged) {
			t.Fatalf("signals %b", c.last.Signals)
		}
		c2 := newConv(t, withInjection(InjectionLog))
		c2.handshake(cISN, sISN, 502, 509, 7, 7)
		c2.must(c2.fromServer(seg{flags: packet.RST, seq: c2.sNxt}), ReasonRSTValid, "first reset")
		c2.now += 3e9
		c2.fromServer(seg{flags: packet.RST, seq: c2.sNxt + 1})
		if c2.last.Signals.Has(SignalResetSeqChanged) {
			t.Fatalf("a reset 3 s later counted as reset_seq_changed")
		}
		// A retransmission of the same reset is not evidence.
		c3 := newConv(t, withInjection(InjectionLog))
		c3.handshake(cISN, sISN, 502, 509, 7, 7)
		c3.must(c3.fromServer(seg{flags: packet.RST, seq: c3.sNxt}), ReasonRSTValid, "first reset")
		c3.must(c3.fromServer(seg{flags: packet.RST, seq: c3.sNxt}), ReasonRSTValid, "retransmitted reset")
		if c3.last.Signals != 0 {
			t.Fatalf("retransmission: signals %b", c3.last.Signals)
		}
	})
	t.Run("off: no evidence is gathered", func(t *testing.T) {
		c := newConv(t, withInjection(InjectionOff))
		c.handshake(cISN, sISN, 502, 509, 7, 7)
		c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt, ttl: 200}), ReasonRSTValid, "reset")
		c.data(false, 100, 509)
		var n uint64
		for s := range NumSignals {
			n += c.e.Stats().Injection[s].Load()
		}
		if n != 0 || c.last.Signals != 0 {
			t.Fatalf("mode off counted %d signals", n)
		}
	})
}

// TestTTLEvidence: Weaver et al. 4.2, the TTL of an injected reset differs
// from its purported sender's. Within [injection] ttl_tolerance it is not
// evidence; beyond it, it is evidence only: in hold mode the reset is still
// held (and released if nothing contradicts it), never dropped for it.
func TestTTLEvidence(t *testing.T) {
	tests := []struct {
		name   string
		tol    uint8
		ttl    uint8
		signal bool
	}{
		{"same TTL", 2, 64, false},
		{"two hops less, tolerance 2", 2, 62, false},
		{"two hops more, tolerance 2", 2, 66, false},
		{"three hops less, tolerance 2", 2, 61, true},
		{"three hops less, tolerance 4", 4, 61, false},
		{"tolerance 0, one hop", 0, 63, true},
		{"injector's own TTL", 2, 201, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := withInjection(InjectionHold)
			pc.Injection.TTLTolerance = tt.tol
			c := newConv(t, pc)
			c.handshake(cISN, sISN, 502, 509, 7, 7)
			c.fromServer(seg{flags: packet.RST, seq: c.sNxt, ttl: tt.ttl})
			c.held("reset")
			if got := c.last.Signals.Has(SignalTTLMismatch); got != tt.signal {
				t.Fatalf("ttl_mismatch %v, want %v", got, tt.signal)
			}
			if c.last.TTLMismatch != tt.signal {
				t.Fatalf("TTLMismatch %v", c.last.TTLMismatch)
			}
			if tt.signal && (c.last.Expected != 64 || c.last.Seen != uint32(tt.ttl)) {
				t.Fatalf("expected %d seen %d", c.last.Expected, c.last.Seen)
			}
			if d := c.release(false, seg{flags: packet.RST, seq: c.sNxt, ttl: tt.ttl}); d.Verdict != Accept {
				t.Fatalf("release: %s: a TTL mismatch alone dropped the reset", d.Verdict)
			}
		})
	}
}

// TestHoldFullAndNever: a driver with no room (HoldFull) or that does not
// hold (HoldNever: monitor mode, drain) gets valid resets judged at once.
func TestHoldFullAndNever(t *testing.T) {
	for _, hs := range []HoldState{HoldFull, HoldNever} {
		c := newConv(t, withInjection(InjectionHold))
		c.handshake(cISN, sISN, 502, 509, 7, 7)
		c.e.SetHold(hs)
		c.must(c.fromServer(seg{flags: packet.RST, seq: c.sNxt}), ReasonRSTValid, "reset")
		if c.last.Verdict != Accept || c.last.HoldToken != 0 {
			t.Fatalf("hold state %d: verdict %s token %d", hs, c.last.Verdict, c.last.HoldToken)
		}
		if n := c.e.Stats().HoldFull.Load(); (n == 1) != (hs == HoldFull) {
			t.Fatalf("hold state %d: hold full %d", hs, n)
		}
	}
}
