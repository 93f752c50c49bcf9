package nfq

import (
	"context"
	"log/slog"
	"time"

	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
)

// Held resets ([injection] mode = "hold", policy/injection.go).
//
// A reset the engine holds (Decision.Verdict == policy.Hold) gets no verdict
// yet: the kernel keeps it queued while the worker goes on with other
// packets. Its entry waits in a FIFO ring of at most [injection] max_held
// until one of:
//
//   - a later packet of its flow contradicts it (Decision.Injected names
//     its token): it is dropped (rst_injected), before that packet's own
//     verdict is sent;
//   - its hold ends ([injection] max_hold after it arrived, checked after
//     every burst and on the read deadline the worker sets for the oldest
//     entry): Engine.Release accepts it with the judged mark;
//   - the worker stops (drain) or is switched to monitor mode: every held
//     reset is released at once.
//
// NFQNL_MSG_VERDICT_BATCH gives its verdict to every queued packet up to its
// id (nfqnl_recv_verdict_batch), held ones included, so while anything is
// held every packet gets an individual verdict (give). Holds are rare (one
// per reset that passed every check); batching resumes as soon as the ring
// is empty. Entries are released in arrival order, so held resets keep
// their relative order. A socket that has to be re-opened loses its queued
// packets to the kernel (nfqnl_rcv_nl_event flushes the instance); its held
// entries are forgotten and counted in Stats.HeldLost.

// heldPkt is one held reset.
type heldPkt struct {
	id       uint32
	old      uint32 // the packet's mark as queued
	since    int64  // engine clock, ns
	deadline int64
	done     bool // its verdict was given (dropped as injected)
	h        policy.Held
	ev       events.Record // its event line, verdict and reason set at the end
}

// holdRing is a FIFO of held resets in a slice allocated once.
type holdRing struct {
	buf     []heldPkt
	head, n int
}

func (r *holdRing) init(size int) {
	if size <= 0 {
		size = 1
	}
	r.buf = make([]heldPkt, size)
	r.head, r.n = 0, 0
}

func (r *holdRing) at(i int) *heldPkt { return &r.buf[(r.head+i)%len(r.buf)] }

func (r *holdRing) full() bool { return r.n == len(r.buf) }

func (r *holdRing) push() *heldPkt {
	e := r.at(r.n)
	r.n++
	return e
}

func (r *holdRing) pop() {
	r.buf[r.head] = heldPkt{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}

// holdState is what the engine is told before each packet.
func (w *Worker) holdState() policy.HoldState {
	switch {
	case w.stopping || w.monitor.Load() || w.noHold:
		return policy.HoldNever
	case w.held.full():
		return policy.HoldFull
	}
	return policy.HoldRoom
}

// hold queues packet id, held by decision d, in the ring.
func (w *Worker) hold(id uint32, p *packet.Parsed, d *policy.Decision, old uint32, now int64) {
	w.appendBatch() // the packets before it, not it
	e := w.held.push()
	*e = heldPkt{id: id, old: old, since: now, deadline: now + w.engine.Config().Injection.MaxHold, h: policy.HeldOf(p, d)}
	e.ev.Fill(p, d, w.cfg.Queue, w.epochNs+now)
	w.stats.Held.Store(int64(w.held.n))
	w.engine.SetHold(w.holdState())
}

// dropInjected drops the resets held under token tok: the packet being
// decided showed their purported sender never sent them (d).
func (w *Worker) dropInjected(d *policy.Decision, now int64) {
	for i := range w.held.n {
		e := w.held.at(i)
		if e.done || e.h.Token != d.Injected {
			continue
		}
		e.done = true
		verdict, mark, has := nfDrop, uint32(0), false
		if m := w.markDrop.Load(); m != 0 {
			w.stats.MarkedDrops.Add(1)
			verdict = nfAccept
			mark, has = w.acceptMark(e.old, m)
		}
		w.giveOne(e.id, verdict, mark, has)
		e.ev.Verdict, e.ev.Reason, e.ev.HeldNs = policy.Drop, policy.ReasonRSTInjected, now-e.since
		e.ev.Signals, e.ev.Expected, e.ev.Seen = d.Signals, d.Expected, d.Seen
		w.pushEvent(&e.ev)
		w.logInjected(e, d, now)
	}
	w.popDone()
}

// releaseExpired releases the held resets whose hold has ended by now
// (all of them if all is set), oldest first.
func (w *Worker) releaseExpired(now int64, all bool) {
	for w.held.n > 0 {
		e := w.held.at(0)
		if !e.done {
			if !all && e.deadline > now {
				break
			}
			d := w.engine.Release(&e.h, now)
			mark, has := w.acceptMark(e.old, w.acceptSet())
			w.giveOne(e.id, nfAccept, mark, has)
			e.ev.Verdict, e.ev.Reason, e.ev.State, e.ev.HeldNs = d.Verdict, d.Reason, d.State, now-e.since
			w.pushEvent(&e.ev)
		}
		w.held.pop()
	}
	w.stats.Held.Store(int64(w.held.n))
	w.engine.SetHold(w.holdState())
}

// popDone removes the entries at the head whose verdict was given.
func (w *Worker) popDone() {
	for w.held.n > 0 && w.held.at(0).done {
		w.held.pop()
	}
	w.stats.Held.Store(int64(w.held.n))
	w.engine.SetHold(w.holdState())
}

// forgetHeld empties the ring without verdicts: the socket they were
// queued on is gone, and the kernel with it dropped them.
func (w *Worker) forgetHeld() {
	for w.held.n > 0 {
		if !w.held.at(0).done {
			w.stats.HeldLost.Add(1)
		}
		w.held.pop()
	}
	w.stats.Held.Store(0)
}

// armTimer sets the socket's read deadline to the next thing the loop must
// do without a packet arriving: end the oldest hold, or the next idle reap
// (reapTick) while the table holds flows. It clears it when there is
// neither. It runs on the loop only, before serveCtl: a control request's
// wake-up overwritten here is served right after it.
func (w *Worker) armTimer() {
	var want int64
	if w.held.n > 0 {
		want = w.held.at(0).deadline
	}
	if w.engine.Table().Len() > 0 && (want == 0 || w.nextReap < want) {
		want = w.nextReap
	}
	if want == w.timerAt || w.stopping || w.awaitSeq != 0 || w.conn == nil {
		return
	}
	w.timerAt = want
	if want == 0 {
		w.conn.SetReadDeadline(time.Time{})
		return
	}
	w.conn.SetReadDeadline(w.opts.Epoch.Add(time.Duration(want)))
}

// Idle reaping: the engine removes expired flows as packets arrive; the
// worker's timer also reaps every reapTick, so that an idle queue's table
// (and rstguard_flows) empties as the timeouts say. A tick that used its
// whole budget comes back after reapTickBusy.
const (
	reapTick      = time.Second
	reapTickBusy  = 10 * time.Millisecond
	reapTickBatch = 4096
)

// reapIdle runs the idle reap when it is due.
func (w *Worker) reapIdle(now int64) {
	if now < w.nextReap {
		return
	}
	next := int64(reapTick)
	if w.engine.Table().Reap(now, reapTickBatch) == reapTickBatch {
		next = int64(reapTickBusy)
	}
	w.nextReap = now + next
}

// acceptSet is the packed policy mark of an accepted packet (none in
// monitor mode).
func (w *Worker) acceptSet() uint64 {
	if w.monitor.Load() {
		return 0
	}
	return w.markAccept.Load()
}

// giveOne records an individual verdict for id (closing the pending
// batch first, which covers only packets before it).
func (w *Worker) giveOne(id uint32, verdict int, mark uint32, hasMark bool) {
	if w.vlen+2*verdictMaxLen > len(w.vbuf) {
		w.flushVerdicts()
	}
	w.appendBatch()
	w.vlen = appendVerdict(w.vbuf[:], w.vlen, w.cfg.Queue, unixAFInet, id, uint32(verdict), mark, hasMark, false)
}

func (w *Worker) pushEvent(r *events.Record) {
	if w.events == nil {
		return
	}
	if s := w.events.Slot(); s != nil {
		*s = *r
		w.events.Commit()
	}
}

// logInjected writes the rate-limited line for a held reset dropped as
// injected.
func (w *Worker) logInjected(e *heldPkt, d *policy.Decision, now int64) {
	if !w.logAllowed(slog.LevelWarn, now) {
		return
	}
	w.log.LogAttrs(context.Background(), slog.LevelWarn, "dropped a reset injected on the path: its purported sender went on",
		slog.String("reason", policy.ReasonRSTInjected.String()),
		slog.String("src", e.ev.Src.String()), slog.String("dst", e.ev.Dst.String()),
		slog.Uint64("seq", uint64(e.ev.Seq)), slog.Uint64("ack", uint64(e.ev.Ack)), slog.Uint64("ttl", uint64(e.ev.TTL)),
		slog.String("signal", d.Signal.String()), slog.Uint64("expected", uint64(d.Expected)), slog.Uint64("seen", uint64(d.Seen)),
		slog.Duration("held", time.Duration(now-e.since)))
}

// logSignals writes the rate-limited line for evidence of injection about
// an accepted reset ([injection] mode = "log", or a hold that already
// ended).
func (w *Worker) logSignals(p *packet.Parsed, d *policy.Decision, now int64) {
	if !w.logAllowed(slog.LevelWarn, now) {
		return
	}
	w.log.LogAttrs(context.Background(), slog.LevelWarn, "suspected reset injection",
		slog.String("signal", d.Signal.String()), slog.String("signals", string(d.Signals.AppendJSON(nil))),
		slog.Uint64("expected", uint64(d.Expected)), slog.Uint64("seen", uint64(d.Seen)),
		slog.String("reason", d.Reason.String()), slog.String("state", d.State.String()),
		slog.String("src", p.SrcAddrPort().String()), slog.String("dst", p.DstAddrPort().String()),
		slog.Uint64("seq", uint64(p.Seq)), slog.Uint64("ack", uint64(p.Ack)), slog.Uint64("ttl", uint64(p.TTL)))
}
