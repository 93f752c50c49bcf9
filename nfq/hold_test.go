package nfq

import (
	"testing"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/policy"
)

func holdConfig(maxHold time.Duration) policy.Config {
	pc := policy.DefaultConfig()
	pc.Injection.Mode = policy.InjectionHold
	pc.Injection.MaxHold = int64(maxHold)
	return pc
}

// TestHoldInjectedReset: Weaver, Sommer, Paxson (NDSS 2009) section 4, the
// purported sender talks after its reset. A reset at the server's exact
// SND.NXT (it passes every window check, RFC 5961 3.2 included) is held:
// no verdict; the packets after it get individual verdicts; the server's
// next data segment contradicts it, so it is dropped (rst_injected) before
// that segment's own verdict, and its event line says why and for how long
// it was held.
func TestHoldInjectedReset(t *testing.T) {
	w := newTestWorker(t, holdConfig(time.Second), nil)
	w.lim.set(0, 0)
	ring := events.NewRing(16)
	w.SetEvents(ring)
	w.SetJudged(Mark{0x40000000, 0x40000000})
	establish(t, w)
	h := newBurstHarness(t, w)

	before := tcp4(t, seg{seq: 1001, ack: 5001, ackf: true, payload: 10})
	injected := tcp4(t, seg{fromServer: true, seq: 5001, ack: 1011, ackf: true, rst: true})
	clientAck := tcp4(t, seg{seq: 1011, ack: 5001, ackf: true})
	got := h.run(t, [][]byte{
		nlPacket(nlPkt{id: 10, payload: before}),
		nlPacket(nlPkt{id: 11, payload: injected, mark: 0x20000000}),
		nlPacket(nlPkt{id: 12, payload: clientAck}),
	})
	per := verdictOf(got, 10, 3)
	if _, ok := per[11]; ok || len(got) != 2 || !got[0].batch || got[0].id != 10 || got[1].batch || got[1].id != 12 {
		t.Fatalf("verdicts %+v: want a batch up to 10, none for the held 11, an individual one for 12", got)
	}
	if n := w.stats.Held.Load(); n != 1 {
		t.Fatalf("held gauge %d, want 1", n)
	}
	// The server answers the request: new data from the reset's sender.
	reply := tcp4(t, seg{fromServer: true, seq: 5001, ack: 1011, ackf: true, payload: 100})
	got = h.run(t, [][]byte{nlPacket(nlPkt{id: 13, payload: reply})})
	// The drop of 11 comes first; the reply's accept may then be a batch
	// (nothing is held any more: 11 is gone from the kernel's queue).
	if len(got) != 2 || got[0].batch || got[0].id != 11 || got[0].verdict != nfDrop ||
		got[1].id != 13 || got[1].verdict != nfAccept || got[1].mark != 0x40000000 {
		t.Errorf("verdicts %+v: want 11 dropped, then 13 accepted with the judged mark", got)
	}
	st := w.engine.Stats()
	if st.Reasons[policy.ReasonRSTInjected].Load() != 1 || st.Held[policy.OutcomeDropped].Load() != 1 ||
		st.Injection[policy.SignalTalkedAfterReset].Load() != 1 || st.Reasons[policy.ReasonRSTValid].Load() != 0 {
		t.Errorf("rst_injected %d held dropped %d talked_after_reset %d rst_valid %d, want 1 1 1 0",
			st.Reasons[policy.ReasonRSTInjected].Load(), st.Held[policy.OutcomeDropped].Load(),
			st.Injection[policy.SignalTalkedAfterReset].Load(), st.Reasons[policy.ReasonRSTValid].Load())
	}
	if n := w.stats.Held.Load(); n != 0 {
		t.Errorf("held gauge %d after the drop, want 0", n)
	}
	var ev events.Record
	found := false
	for ring.Pop(&ev) {
		if ev.Reason == policy.ReasonRSTInjected {
			found = true
			line := string(ev.AppendJSON(nil))
			if ev.Verdict != policy.Drop || ev.HeldNs <= 0 || !ev.Signals.Has(policy.SignalTalkedAfterReset) || ev.Seq != 5001 {
				t.Errorf("event %s", line)
			}
		}
	}
	if !found {
		t.Error("no rst_injected event")
	}
	// Batching resumes once nothing is held.
	d1 := tcp4(t, seg{seq: 1011, ack: 5101, ackf: true, payload: 10})
	d2 := tcp4(t, seg{seq: 1021, ack: 5101, ackf: true, payload: 10})
	got = h.run(t, [][]byte{nlPacket(nlPkt{id: 14, payload: d1}), nlPacket(nlPkt{id: 15, payload: d2})})
	if len(got) != 1 || !got[0].batch || got[0].id != 15 {
		t.Errorf("verdicts %+v: want one batch up to 15", got)
	}
	// The flow is alive: the connection's real windows still apply.
	if s := w.engine.Table(); s.Len() != 1 {
		t.Errorf("%d flows, want 1", s.Len())
	}
}

// TestHoldGenuineAbort: RFC 9293 3.10.7.4, a reset in the window of a
// synchronized connection aborts it. A genuine abort (the sender sends
// nothing after its reset; the other side's packets do not count) is
// released when the hold ends, without any packet arriving (the read
// deadline's wake-up runs burst(0)), with the judged mark and its event
// line.
func TestHoldGenuineAbort(t *testing.T) {
	w := newTestWorker(t, holdConfig(5*time.Millisecond), nil)
	w.SetJudged(Mark{0x40000000, 0x40000000})
	ring := events.NewRing(16)
	w.SetEvents(ring)
	establish(t, w)
	h := newBurstHarness(t, w)
	abort := tcp4(t, seg{fromServer: true, seq: 5001, ack: 1001, ackf: true, rst: true})
	// The client still sends before it sees the reset: no evidence.
	late := tcp4(t, seg{seq: 1001, ack: 5001, ackf: true, payload: 10})
	got := h.run(t, [][]byte{nlPacket(nlPkt{id: 20, payload: abort, mark: 0x11}), nlPacket(nlPkt{id: 21, payload: late})})
	if len(got) != 1 || got[0].id != 21 || got[0].batch {
		t.Fatalf("verdicts %+v: want only 21, individually", got)
	}
	time.Sleep(10 * time.Millisecond)
	got = h.run(t, nil) // the hold timer's wake-up
	if len(got) != 1 || got[0].id != 20 || got[0].verdict != nfAccept || got[0].mark != 0x40000011 {
		t.Fatalf("verdicts %+v: want 20 accepted with mark 0x40000011", got)
	}
	st := w.engine.Stats()
	if st.Reasons[policy.ReasonRSTValid].Load() != 1 || st.Held[policy.OutcomeAccepted].Load() != 1 || st.Reasons[policy.ReasonRSTInjected].Load() != 0 {
		t.Errorf("rst_valid %d held accepted %d rst_injected %d, want 1 1 0", st.Reasons[policy.ReasonRSTValid].Load(),
			st.Held[policy.OutcomeAccepted].Load(), st.Reasons[policy.ReasonRSTInjected].Load())
	}
	var ev events.Record
	for ring.Pop(&ev) {
		if ev.Flags.String() == "RA" && (ev.Reason != policy.ReasonRSTValid || ev.Verdict != policy.Accept || ev.HeldNs < int64(5*time.Millisecond)) {
			t.Errorf("event %s", ev.AppendJSON(nil))
		}
	}
}

// TestHoldFull: with [injection] max_held resets held, the next valid
// reset is judged at once (accepted, counted in HoldFull); a second reset
// of the flow at another number is evidence (reset_seq_changed, Weaver et
// al. section 4.3); the held one is released when its hold ends.
func TestHoldFull(t *testing.T) {
	e := policy.NewEngine(holdConfig(time.Second), conntrack.DefaultConfig())
	w := New(Config{Queue: 3, MaxHeld: 1}, e, Options{ProcPath: "testdata/none"})
	establish(t, w)
	h := newBurstHarness(t, w)
	r1 := tcp4(t, seg{fromServer: true, seq: 5001, ack: 1001, ackf: true, rst: true})
	// A second reset from the same side, in the window: the ring is full.
	r2 := tcp4(t, seg{fromServer: true, seq: 5002, ack: 1001, ackf: true, rst: true})
	got := h.run(t, [][]byte{nlPacket(nlPkt{id: 30, payload: r1}), nlPacket(nlPkt{id: 31, payload: r2})})
	if len(got) != 1 || got[0].id != 31 || got[0].verdict != nfAccept {
		t.Fatalf("verdicts %+v: want 31 accepted at once", got)
	}
	if st := e.Stats(); st.HoldFull.Load() != 1 || st.Injection[policy.SignalResetSeqChanged].Load() != 1 {
		t.Errorf("hold full %d reset_seq_changed %d, want 1 1", st.HoldFull.Load(), st.Injection[policy.SignalResetSeqChanged].Load())
	}
	w.releaseExpired(w.now(), true)
	w.flushVerdicts()
	if got := h.run(t, nil); len(got) != 1 || got[0].id != 30 || got[0].verdict != nfAccept {
		t.Errorf("after release: %+v, want 30 accepted", got)
	}
}

// TestHoldAllocs: holding a reset and dropping it as injected allocate
// nothing.
func TestHoldAllocs(t *testing.T) {
	w := newTestWorker(t, holdConfig(time.Second), nil)
	w.lim.set(0, 0)
	establish(t, w)
	h := newBurstHarness(t, w)
	const rounds = 60
	var rsts, replies [rounds + 2][][]byte
	for i := range rsts {
		seq := uint32(5001 + i)
		rsts[i] = [][]byte{nlPacket(nlPkt{id: uint32(100 + 2*i), payload: tcp4(t, seg{fromServer: true, seq: seq, ack: 1001, ackf: true, rst: true})})}
		replies[i] = [][]byte{nlPacket(nlPkt{id: uint32(101 + 2*i), payload: tcp4(t, seg{fromServer: true, seq: seq, ack: 1001, ackf: true, payload: 1})})}
	}
	i := 0
	n := testing.AllocsPerRun(rounds, func() {
		h.load(rsts[i])
		w.burst(1)
		h.load(replies[i])
		w.burst(1)
		h.drain()
		i++
	})
	if got := w.engine.Stats().Reasons[policy.ReasonRSTInjected].Load(); got != uint64(i) {
		t.Fatalf("%d resets dropped as injected in %d rounds", got, i)
	}
	if n != 0 {
		t.Errorf("%.1f allocations per hold and drop", n)
	}
}
