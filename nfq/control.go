package nfq

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/flowfilter"
)

// Runtime inspection and control of a worker's flows (rstguard flows, flows
// flush): the worker owns its table without locks, so requests are served
// by the worker itself, between bursts, in bounded steps of ctlStep slots.
// A request wakes an idle worker with a read deadline in the past (the same
// wake-up as a stop); a busy one finds it after its current burst. A dump of
// a million flows is about 250 steps of a few tens of microseconds each,
// interleaved with the packets.

// ctlStep is how many table slots one request step visits. A step copies
// the flows it selects (a copy of conntrack.Flow, about 200 bytes each);
// everything else (addresses, windows, formatting) happens on the caller's
// goroutine, so a step costs the worker about 10 microseconds
// (BenchmarkControlStep).
const ctlStep = 256

// FlowInfo is one tracked flow as the control socket shows it.
type FlowInfo struct {
	Queue uint16
	// Src is the initiator (the side whose SYN was seen first, or the
	// first packet's sender for a picked-up flow), Dst the responder.
	Src, Dst netip.AddrPort
	State    conntrack.State
	Age      time.Duration // since the flow was created
	Idle     time.Duration // since its last accepted packet
	PickedUp bool          // created mid-stream, without its handshake
	OneWay   bool          // one direction has not been seen
	// Dir is indexed by conntrack.Dir: Original is what Src sends, Reply
	// what Dst sends.
	Dir [2]DirInfo
}

// DirInfo is what one side has sent and the window a reset it sends must
// hit.
type DirInfo struct {
	Seen   bool
	End    uint32 // its highest SEG.SEQ+SEG.LEN (SND.NXT as far as seen)
	Ack    uint32 // its highest acknowledgement
	Win    uint32 // its last advertised window, scaled
	MaxWin uint32
	WScale uint8
	// TTL and LastTTL: the IP TTL (hop limit) of this side's first and
	// latest accepted packets.
	TTL, LastTTL uint8
	// WinLo, WinHi: the receive window of the other side, [WinLo, WinHi):
	// where this side's segments (and resets) must fall.
	WinLo, WinHi uint32
}

type ctlOp uint8

const (
	ctlDump ctlOp = iota + 1
	ctlFlush
)

// ctlReq is one step of a request. The worker fills in out, next, done,
// flushed and err, then sends on reply.
type ctlReq struct {
	op      ctlOp
	filter  *flowfilter.Filter
	from    uint32
	snaps   []conntrack.Flow
	now     int64
	next    uint32
	done    bool
	flushed int
	err     error
	reply   chan struct{}
}

var errNotRunning = errors.New("the queue's worker is not running")

// Flows calls fn with the flows f selects, a batch per step. fn runs on the
// caller's goroutine; the flows may change between batches (as conntrack -L
// on a live table).
func (w *Worker) Flows(ctx context.Context, f *flowfilter.Filter, fn func([]FlowInfo) error) error {
	req := &ctlReq{op: ctlDump, filter: f, snaps: make([]conntrack.Flow, 0, ctlStep), reply: make(chan struct{}, 1)}
	var out []FlowInfo
	for {
		req.snaps = req.snaps[:0]
		t0 := time.Now()
		if err := w.submit(ctx, req); err != nil {
			return err
		}
		out = out[:0]
		for i := range req.snaps {
			out = append(out, w.flowInfo(&req.snaps[i], req.now))
		}
		if len(out) > 0 {
			if err := fn(out); err != nil {
				return err
			}
		}
		if req.done {
			return nil
		}
		req.from = req.next
		// Pace the dump: rest as long as the step and its processing
		// took, so that a dump of a million flows takes at most half of
		// a core and its memory traffic from the packet path.
		time.Sleep(time.Since(t0))
	}
}

// Flush removes the flows f selects and returns how many it removed. The
// next packet of a removed flow is handled as that of a new one (picked up
// mid-stream when pickup is on).
func (w *Worker) Flush(ctx context.Context, f *flowfilter.Filter) (int, error) {
	req := &ctlReq{op: ctlFlush, filter: f, reply: make(chan struct{}, 1)}
	total := 0
	for {
		if err := w.submit(ctx, req); err != nil {
			return total, err
		}
		total += req.flushed
		if req.done {
			w.stats.Flushed.Add(uint64(total))
			return total, nil
		}
		req.from = req.next
	}
}

// submit hands one step to the worker and waits for it.
func (w *Worker) submit(ctx context.Context, req *ctlReq) error {
	if !w.looping.Load() {
		return fmt.Errorf("queue %d: %w", w.cfg.Queue, errNotRunning)
	}
	req.err = nil
	select {
	case w.ctl <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c := w.wake.Load(); c != nil {
		c.SetReadDeadline(time.Now())
	}
	select {
	case <-req.reply:
		return req.err
	case <-ctx.Done():
		// The worker still owns req until it replies; the reply channel
		// is buffered, so it never blocks on us.
		return ctx.Err()
	}
}

// serveCtl serves the waiting request step, if any (the receive loop, between
// bursts).
func (w *Worker) serveCtl() {
	select {
	case req := <-w.ctl:
		w.step(req)
		req.reply <- struct{}{}
	default:
	}
}

// failCtl answers a waiting request with err (the loop is ending).
func (w *Worker) failCtl(err error) {
	for {
		select {
		case req := <-w.ctl:
			req.err = err
			req.reply <- struct{}{}
		default:
			return
		}
	}
}

func (w *Worker) step(req *ctlReq) {
	t := w.engine.Table()
	now := w.now()
	req.now = now
	req.flushed = 0
	all := req.filter.Empty()
	req.next, req.done = t.Walk(req.from, ctlStep, now, func(slot uint32, f *conntrack.Flow) {
		if !all {
			if src, dst := endpoints(f); !req.filter.MatchFlow(src, dst, f.State()) {
				return
			}
		}
		switch req.op {
		case ctlDump:
			req.snaps = append(req.snaps, *f) // a copy, timestamps included
		case ctlFlush:
			t.Remove(slot)
			req.flushed++
		}
	})
}

// endpoints returns the initiator's and the responder's address and port.
func endpoints(f *conntrack.Flow) (src, dst netip.AddrPort) {
	k := f.Key()
	a := netip.AddrPortFrom(addrOf(k.A, k.V6), k.PortA)
	b := netip.AddrPortFrom(addrOf(k.B, k.V6), k.PortB)
	if f.InitSide() == 1 {
		return b, a
	}
	return a, b
}

func addrOf(b [16]byte, v6 bool) netip.Addr {
	a := netip.AddrFrom16(b)
	if !v6 {
		return a.Unmap()
	}
	return a
}

// flowInfo describes f (a copy taken by the worker at time now); it runs
// on the caller's goroutine.
func (w *Worker) flowInfo(f *conntrack.Flow, now int64) FlowInfo {
	src, dst := endpoints(f)
	fi := FlowInfo{
		Queue: w.cfg.Queue, Src: src, Dst: dst, State: f.State(),
		Age: time.Duration(now - f.Created()), Idle: time.Duration(now - f.LastSeen()),
		PickedUp: f.Flags()&conntrack.FlowPickedUp != 0,
	}
	for d := conntrack.Original; d <= conntrack.Reply; d++ {
		p := f.Peer(d)
		win := f.RecvWindow(d ^ 1)
		ttl, last := p.TTL()
		fi.Dir[d] = DirInfo{TTL: ttl, LastTTL: last,
			Seen: p.Flags()&conntrack.PeerSeen != 0, End: uint32(p.End()), Ack: uint32(p.Ack()),
			Win: p.Win(), MaxWin: p.MaxWin(), WScale: p.WScale(), WinLo: uint32(win.Lo), WinHi: uint32(win.Hi),
		}
		if !fi.Dir[d].Seen {
			fi.OneWay = true
		}
	}
	return fi
}
