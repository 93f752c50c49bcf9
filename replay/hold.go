package replay

import (
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

// holdQueue is replay's side of [injection] mode "hold", with capture time
// as the clock: what the daemon's queue worker does with held packets and
// its timer, done between frames.
//
//   - A reset the engine holds (policy.Hold) waits for its verdict; so do
//     the frames after it, so that the output stays in capture order while
//     every line carries its final verdict.
//   - A later frame whose decision names the hold (Decision.Injected: the
//     reset's purported sender went on, Weaver, Sommer, Paxson, NDSS 2009)
//     drops the resets held under it: rst_injected, already counted by the
//     engine.
//   - Before a frame is decided, every hold whose deadline (its reset's
//     time + max_hold) is at or before the frame's time ends:
//     Engine.Release at the deadline accepts the reset with the reason it
//     was held with and closes the flow, before the frame sees it.
//   - At the end of the capture, what is left is released at its deadline.
//
// At most maxHeld resets wait at once (policy.HoldFull beyond), like the
// daemon's max_held; the frames waiting behind them are the ones of at most
// max_hold of capture time.
type holdQueue struct {
	eng     *policy.Engine
	maxHeld int
	emit    func(Frame)
	// q holds the frames not yet emitted, in capture order; q[0] waits
	// for its verdict whenever q is not empty. base is the number of
	// frames emitted before q[0].
	q    []queued
	base int
	// wait lists the entries of q that wait for their verdict, in
	// capture order, by their position counted from the first frame
	// (q[i-base]): at most maxHeld, so that each frame costs at most
	// maxHeld steps, not the length of q.
	wait []int
	// held and dropped count the resets held and those of them dropped
	// as rst_injected.
	held, dropped int
}

// queued is a frame waiting to be emitted.
type queued struct {
	f        Frame
	wait     bool        // a held reset still without its verdict
	h        policy.Held // for Engine.Release
	at, dead int64       // the reset's time and its hold's deadline
}

func newHoldQueue(eng *policy.Engine, maxHeld int, emit func(Frame)) *holdQueue {
	if maxHeld <= 0 {
		maxHeld = DefaultMaxHeld
	}
	return &holdQueue{eng: eng, maxHeld: maxHeld, emit: emit}
}

// room tells the engine whether another reset can be held.
func (hq *holdQueue) room() {
	if len(hq.wait) >= hq.maxHeld {
		hq.eng.SetHold(policy.HoldFull)
	} else {
		hq.eng.SetHold(policy.HoldRoom)
	}
}

// add takes frame f, decided at now with decision d (h: its Held, for a
// held reset).
func (hq *holdQueue) add(f *Frame, d *policy.Decision, h *policy.Held, now int64) {
	if d.Injected != 0 {
		// f's sender went on: the resets held under the token were not
		// its own.
		hq.settle(func(e *queued) bool {
			if e.h.Token != d.Injected {
				return false
			}
			hq.dropped++
			e.f.Verdict, e.f.Reason = policy.Drop, policy.ReasonRSTInjected
			e.f.HeldNS = now - e.at
			return true
		})
	}
	if f.Verdict == policy.Hold {
		hold := hq.eng.Config().Injection.MaxHold
		if hold <= 0 {
			hold = policy.DefaultMaxHold
		}
		hq.wait = append(hq.wait, hq.base+len(hq.q))
		hq.q = append(hq.q, queued{f: *f, wait: true, h: *h, at: now, dead: now + hold})
		hq.held++
	} else if len(hq.q) > 0 {
		hq.q = append(hq.q, queued{f: *f})
	} else {
		hq.out(f)
	}
	hq.flush()
}

// settle gives a verdict to the waiting entries for which give returns
// true (in capture order) and takes them off the wait list.
func (hq *holdQueue) settle(give func(*queued) bool) {
	w := hq.wait[:0]
	for _, i := range hq.wait {
		e := &hq.q[i-hq.base]
		if give(e) {
			e.wait = false
		} else {
			w = append(w, i)
		}
	}
	hq.wait = w
}

// expire ends the holds whose deadline is at or before now.
func (hq *holdQueue) expire(now int64) {
	if len(hq.wait) == 0 {
		return
	}
	hq.settle(func(e *queued) bool {
		if e.dead > now {
			return false
		}
		hq.release(e)
		return true
	})
	hq.flush()
}

// end releases every reset still held, at its deadline, and emits what is
// left.
func (hq *holdQueue) end() {
	hq.settle(func(e *queued) bool {
		hq.release(e)
		return true
	})
	hq.flush()
}

// release ends e's hold at its deadline: nothing contradicted the reset.
func (hq *holdQueue) release(e *queued) {
	d := hq.eng.Release(&e.h, e.dead)
	e.f.Verdict, e.f.Reason = d.Verdict, d.Reason
	e.f.HeldNS = e.dead - e.at
	e.f.After = conntrack.StateNone
	if s, ok := hq.eng.Table().Lookup(&e.h.Key, e.dead); ok {
		e.f.After = hq.eng.Table().Flow(s).State()
	}
}

// flush emits the frames at the head of the queue that have their
// verdicts.
func (hq *holdQueue) flush() {
	n := 0
	for n < len(hq.q) && !hq.q[n].wait {
		hq.out(&hq.q[n].f)
		n++
	}
	if n == len(hq.q) {
		hq.base += n
		hq.q = hq.q[:0]
		return
	}
	// Moving the base forward keeps the wait list's positions; append
	// copies the live tail into a new array when it needs room.
	hq.base += n
	hq.q = hq.q[n:]
}

func (hq *holdQueue) out(f *Frame) {
	if hq.emit != nil {
		hq.emit(*f)
	}
}
