package nfq

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/flowfilter"
	"github.com/rstguard/rstguard/policy"
)

// fakeLoop stands in for the receive loop: it serves control requests until
// stop is closed.
func fakeLoop(w *Worker) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	w.looping.Store(true)
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Microsecond):
				w.serveCtl()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-exited; w.looping.Store(false) }) }
}

func TestControlFlowsAndFlush(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	establish(t, w)       // 192.0.2.1:40000 -> 198.51.100.1:80, ISNs 1000 / 5000
	for i := range 3000 { // more than one step of other flows
		p := tcp4(t, seg{seq: uint32(i), syn: true})
		p[20], p[21] = byte((1024+i)>>8), byte(1024+i) // source port
		w.handle(p, 0, 0, 0, w.now())
	}
	stop := fakeLoop(w)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	all, _ := flowfilter.Parse("net 192.0.2.0/24", true)
	n, batches := 0, 0
	if err := w.Flows(ctx, &all, func(fs []FlowInfo) error { n += len(fs); batches++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 3001 {
		t.Errorf("listed %d flows, want 3001", n)
	}

	est, _ := flowfilter.Parse("port 40000 state established", true)
	var got []FlowInfo
	if err := w.Flows(ctx, &est, func(fs []FlowInfo) error { got = append(got, fs...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("established flows on port 40000: %+v", got)
	}
	f := got[0]
	if f.Src.String() != "192.0.2.1:40000" || f.Dst.String() != "198.51.100.1:80" || f.State != conntrack.StateEstablished ||
		f.Queue != 3 || f.PickedUp || f.OneWay || f.Age < 0 || f.Idle < 0 {
		t.Errorf("flow %+v", f)
	}
	o, r := f.Dir[conntrack.Original], f.Dir[conntrack.Reply]
	if o.End != 1001 || r.End != 5001 || o.Ack != 5001 || r.Ack != 1001 || !o.Seen || !r.Seen ||
		o.TTL != 64 || r.TTL != 64 || o.LastTTL != 64 {
		t.Errorf("directions %+v %+v", o, r)
	}
	// The client's segments must fall in the server's receive window,
	// which starts at what the server acknowledged.
	if o.WinLo != 1001 || o.WinHi <= o.WinLo || r.WinLo != 5001 {
		t.Errorf("windows: original [%d,%d) reply [%d,%d)", o.WinLo, o.WinHi, r.WinLo, r.WinHi)
	}

	syns, _ := flowfilter.Parse("state syn_sent", true)
	flushed, err := w.Flush(ctx, &syns)
	if err != nil || flushed != 3000 {
		t.Fatalf("flushed %d (%v), want 3000", flushed, err)
	}
	n = 0
	w.Flows(ctx, &all, func(fs []FlowInfo) error { n += len(fs); return nil })
	if n != 1 || w.stats.Flushed.Load() != 3000 {
		t.Errorf("after the flush: %d flows, flushed counter %d", n, w.stats.Flushed.Load())
	}
	// The next packet of the established flow after flushing it: picked
	// up mid-stream (pickup is on by default).
	w.Flush(ctx, &est)
	stop()
	w.handle(tcp4(t, seg{seq: 1001, ack: 5001, ackf: true, payload: 10}), 0, 0, 0, w.now())
	if w.last.Reason != policy.ReasonPickup {
		t.Errorf("after the flush the next packet is %s, want pickup", w.last.Reason)
	}
}

func TestControlNotRunning(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	var f flowfilter.Filter
	if err := w.Flows(context.Background(), &f, func([]FlowInfo) error { return nil }); err == nil {
		t.Fatal("a request to a worker that is not running must fail, not hang")
	}
}

// BenchmarkControlStep: one step of a dump (ctlStep slots) of a table of
// 1,000,000 flows, the work a request puts between two bursts; and the
// whole dump. ns/step bounds the stall a dump adds to a burst's latency.
func BenchmarkControlStep(b *testing.B) {
	pc := policy.DefaultConfig()
	tc := conntrack.DefaultConfig()
	tc.MaxFlows = 1 << 21
	e := policy.NewEngine(pc, tc)
	w := New(Config{Queue: 3}, e, Options{ProcPath: "testdata/none"})
	for i := range 1_000_000 {
		p := tcp4(b, seg{seq: uint32(i), syn: true})
		p[12], p[13], p[14], p[15] = 192, 0, byte(2+i>>24), byte(i>>16) // source address
		p[20], p[21] = byte(i>>8), byte(i)                              // source port
		w.handle(p, 0, 0, 0, w.now())
	}
	if n := e.Table().Len(); n < 999_000 {
		b.Fatalf("table holds %d flows", n)
	}
	var all flowfilter.Filter
	b.Run("step", func(b *testing.B) {
		req := &ctlReq{op: ctlDump, filter: &all, snaps: make([]conntrack.Flow, 0, ctlStep)}
		b.ReportAllocs()
		for b.Loop() {
			req.snaps = req.snaps[:0]
			w.step(req)
			if req.done {
				req.from = 0
			} else {
				req.from = req.next
			}
		}
	})
	b.Run("dump", func(b *testing.B) {
		stop := fakeLoop(w)
		defer stop()
		for b.Loop() {
			n := 0
			if err := w.Flows(context.Background(), &all, func(fs []FlowInfo) error { n += len(fs); return nil }); err != nil {
				b.Fatal(err)
			}
			if n < 999_000 {
				b.Fatalf("dumped %d", n)
			}
		}
	})
}

// BenchmarkBurstDuringDump: the receive loop's work per burst (64 packets
// decided and answered, then a pending control step served), measured per
// burst, with a 1,000,000-flow table, idle and while `rstguard flows`
// dumps the whole table without pause. Reports the p99 of the per-burst
// time in each case: the dump's cost to verdict latency.
func BenchmarkBurstDuringDump(b *testing.B) {
	tc := conntrack.DefaultConfig()
	tc.MaxFlows = 1 << 21
	w := New(Config{Queue: 3}, policy.NewEngine(policy.DefaultConfig(), tc), Options{ProcPath: "testdata/none"})
	w.lim.set(0, 0)
	for i := range 1_000_000 {
		p := tcp4(b, seg{seq: uint32(i), syn: true})
		p[12], p[13], p[14], p[15] = 192, 0, byte(2+i>>24), byte(i>>16)
		p[20], p[21] = byte(i>>8), byte(i)
		w.handle(p, 0, 0, 0, w.now())
	}
	establish(b, w)
	h := newBurstHarness(b, w)
	msgs := make([][]byte, maxBurst)
	for i := range msgs {
		p := tcp4(b, seg{seq: 1001, ack: 5001, ackf: true})
		msgs[i] = nlPacket(nlPkt{id: uint32(i), payload: p})
	}
	p99 := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)*99/100]
	}
	measure := func(n int) []time.Duration {
		ds := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			h.load(msgs)
			w.burst(len(msgs))
			w.serveCtl()
			ds = append(ds, time.Since(t0))
			h.drain()
		}
		return ds
	}
	w.looping.Store(true)
	defer w.looping.Store(false)
	for b.Loop() {
		idle := p99(measure(5000))
		ctx, cancel := context.WithCancel(context.Background())
		dumps := make(chan int, 1)
		go func() {
			n := 0
			var all flowfilter.Filter
			for ctx.Err() == nil {
				if w.Flows(ctx, &all, func([]FlowInfo) error { return nil }) == nil {
					n++
				}
			}
			dumps <- n
		}()
		busy := p99(measure(20000))
		cancel()
		n := <-dumps
		b.ReportMetric(float64(idle.Nanoseconds()), "idle-p99-ns/burst")
		b.ReportMetric(float64(busy.Nanoseconds()), "dump-p99-ns/burst")
		b.ReportMetric(float64(n), "full-dumps")
	}
}
