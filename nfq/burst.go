package nfq

import (
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
)

// Verdicts (linux/netfilter.h).
const (
	nfDrop   = 0 // NF_DROP
	nfAccept = 1 // NF_ACCEPT
	// nfHeld is not a verdict: the packet is held (hold.go) and gets its
	// verdict later.
	nfHeld = -1
)

// burst judges the n datagrams of the last receive and answers them: every
// message is parsed in place, every packet decided in id order, and the
// verdicts go out in one datagram (give, flushVerdicts). It allocates nothing
// unless it logs.
func (w *Worker) burst(n int) {
	start := w.now()
	if w.held.n > 0 {
		w.releaseExpired(start, false)
	}
	w.reapIdle(start)
	if n == 0 {
		w.flushVerdicts()
		w.armTimer()
		return
	}
	w.busySince.Store(start)
	w.engine.SetHold(w.holdState())
	var m pktMsg
	packets := uint64(0)
	for i := range n {
		b, trunc := w.rx.msg(i)
		if trunc {
			w.stats.Truncated.Add(1)
		}
		for len(b) > 0 {
			l := msgLen(b, trunc)
			if l == 0 {
				w.stats.BadMessages.Add(1)
				break
			}
			if w.message(b[:l], trunc, &m, start) {
				packets++
			}
			b = b[l:]
		}
	}
	// Counted before the verdicts release the packets: whoever sees a
	// packet through sees it counted.
	w.stats.Packets.Add(packets)
	decided := w.now()
	w.flushVerdicts()
	w.armTimer()
	end := w.now()
	w.busySince.Store(0)
	if packets > 0 {
		// Two clock reads per burst, not per packet: the decision time
		// is the burst's average, and every packet of the burst waited
		// from the receive to the verdicts' send.
		w.stats.Latency.ObserveN((decided-start)/int64(packets), packets)
		w.stats.VerdictLatency.ObserveN(end-start, packets)
	}
}

// message handles one netlink message; it reports whether it was a packet.
func (w *Worker) message(b []byte, trunc bool, m *pktMsg, now int64) bool {
	switch parseMsg(b, trunc, m) {
	case msgPacket:
		if w.stopping {
			w.drained++
		}
		if m.skbInfo&skbGSO != 0 {
			w.stats.GSOPackets.Add(1)
		}
		if !m.hasPayload || trunc {
			// Nothing (or not all of what was asked) to judge: let it
			// pass with its mark as it is, so that the guard rule counts
			// it as unjudged (and drops it if it is a reset).
			w.stats.Unjudged.Add(1)
			w.give(m.id, nfAccept, 0, false)
			return true
		}
		v, mark, has := w.handle(b[m.payOff:m.payOff+m.payLen], int(m.capLen), m.id, m.mark, now)
		w.give(m.id, v, mark, has)
		return true
	case msgError:
		w.netlinkError(m)
	case msgBad:
		w.stats.BadMessages.Add(1)
		w.logLimited(slog.LevelWarn, "malformed netlink message from the kernel", "len", len(b))
	}
	return false
}

// netlinkError handles an NLMSG_ERROR: the acknowledgement awaited by
// awaitAck, or the kernel refusing a verdict (sequence 0: ENOENT for an id
// it no longer holds) or a configuration message.
func (w *Worker) netlinkError(m *pktMsg) {
	if w.awaitSeq != 0 && m.seq == w.awaitSeq {
		w.ackSeen, w.ackErrno = true, m.errno
		return
	}
	if m.errno == 0 {
		return // an acknowledgement nobody waits for
	}
	if m.seq == 0 {
		w.stats.VerdictErrors.Add(1)
		w.logLimited(slog.LevelWarn, "the kernel rejected a verdict", "errno", m.errno)
		return
	}
	w.stats.ReceiveErrors.Add(1)
	w.logLimited(slog.LevelWarn, "the kernel rejected a queue configuration message", "errno", m.errno, "seq", m.seq)
}

// give records id's verdict. A run of accepts that end with the same mark
// becomes one NFQNL_MSG_VERDICT_BATCH, which the kernel applies to every
// queued packet up to its id (nfqnl_recv_verdict_batch); any other verdict,
// or an accept with another mark, first closes the run. Packets arrive and
// are decided in id order, so a batch never covers a packet that needs
// something else.
func (w *Worker) give(id uint32, verdict int, mark uint32, hasMark bool) {
	if verdict == nfHeld {
		return // hold: the verdict comes later (hold.go)
	}
	if w.vlen+2*verdictMaxLen > len(w.vbuf) {
		w.flushVerdicts() // only a datagram of several packet messages gets here
	}
	if verdict == nfAccept && w.held.n == 0 {
		// While a reset is held, a batch would accept it too: every
		// packet then gets its own verdict (hold.go).
		if w.npending > 0 && (w.pendHas != hasMark || w.pendMark != mark) {
			w.appendBatch()
		}
		w.pending, w.pendMark, w.pendHas = id, mark, hasMark
		w.npending++
		return
	}
	w.appendBatch()
	w.vlen = appendVerdict(w.vbuf[:], w.vlen, w.cfg.Queue, unixAFInet, id, uint32(verdict), mark, hasMark, false)
}

// appendBatch adds the pending batch verdict to the message buffer.
func (w *Worker) appendBatch() {
	if w.npending == 0 {
		return
	}
	w.npending = 0
	w.vlen = appendVerdict(w.vbuf[:], w.vlen, w.cfg.Queue, unixAFInet, w.pending, nfAccept, w.pendMark, w.pendHas, true)
}

// flushVerdicts sends every verdict built so far in one datagram.
func (w *Worker) flushVerdicts() {
	w.appendBatch()
	if w.vlen == 0 {
		return
	}
	errno := sendRaw(w.fd, w.vbuf[:w.vlen])
	w.vlen = 0
	if errno != 0 {
		w.stats.VerdictErrors.Add(1)
		w.logLimited(slog.LevelWarn, "could not send verdicts", "err", errno.Error())
	}
}

// handle is the per-packet path up to the verdict: decode, engine decision,
// counters, marks and (rate-limited) log lines, at time now. It does not
// allocate unless it logs.
func (w *Worker) handle(payload []byte, wireLen int, id, old uint32, now int64) (verdict int, mark uint32, hasMark bool) {
	var p packet.Parsed
	d, ok := w.process(payload, wireLen, now, &p)
	w.last = d // the engine's decision, valid until its next one
	if !ok {
		w.stats.Unjudged.Add(1)
		// Not judged: no judged mark, so a reset does not pass the guard.
		return nfAccept, 0, false
	}
	if d.Injected != 0 {
		// It contradicts held resets: they are dropped first.
		w.dropInjected(d, now)
	}
	if d.Verdict == policy.Hold {
		w.hold(id, &p, d, old, now)
		return nfHeld, 0, false
	}
	if d.Reason == policy.ReasonRSTAnswersReservedSYN || d.Verdict == policy.Drop {
		w.logDecision(&p, d, now)
	} else if d.Signals != 0 && d.Injected == 0 {
		w.logSignals(&p, d, now)
	}
	if w.events != nil && events.Wanted(&p, d) {
		if r := w.events.Slot(); r != nil { // nil: full, counted as lost
			r.Fill(&p, d, w.cfg.Queue, w.epochNs+now)
			w.events.Commit()
		}
	}
	monitor := w.monitor.Load()
	if d.Verdict == policy.Drop {
		if monitor {
			// [policy] mode = "monitor": decided and counted, passed,
			// with the judged mark only.
			w.stats.MonitorPassed.Add(1)
			mark, hasMark = w.acceptMark(old, 0)
			return nfAccept, mark, hasMark
		}
		if m := w.markDrop.Load(); m != 0 {
			w.stats.MarkedDrops.Add(1)
			mark, hasMark = w.acceptMark(old, m)
			return nfAccept, mark, hasMark
		}
		return nfDrop, 0, false
	}
	set := w.markAccept.Load()
	if monitor {
		set = 0 // monitor mode sets no mark of the policy's
	}
	mark, hasMark = w.acceptMark(old, set)
	return nfAccept, mark, hasMark
}

// acceptMark is the mark of an accepted packet whose mark was old: set (a
// packed MarkAccept or MarkDrop, 0 if unset) replaces the bits of its mask
// (all of them for a mark given as a plain integer), then the judged mark's
// bits are applied. hasMark false leaves the packet's mark as it is.
func (w *Worker) acceptMark(old uint32, set uint64) (mark uint32, hasMark bool) {
	mark = old
	if set != 0 {
		mark, hasMark = unpackMark(set).Apply(old), true
	}
	if j := unpackMark(w.judged.Load()); j.Mask != 0 {
		mark, hasMark = j.Apply(mark), true
	}
	return mark, hasMark
}

// process decodes the packet into p and runs the engine, recovering a
// panic: the packet is then accepted (ok false), and the panic counted and
// logged.
func (w *Worker) process(payload []byte, wireLen int, now int64, p *packet.Parsed) (d *policy.Decision, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			w.stats.Panics.Add(1)
			w.logLimited(slog.LevelError, "recovered a panic while deciding a packet; accepted it",
				"panic", fmt.Sprint(r), "packet_len", len(payload), "stack", string(debug.Stack()))
			w.none = policy.Decision{}
			d, ok = &w.none, false
		}
	}()
	packet.Decode(payload, wireLen, p)
	return w.engine.DecideRef(p, now), true
}
