package nfq

import (
	"math"
	"sync/atomic"
)

// Stats are one worker's counters. The worker writes them with atomic
// operations; the metrics collector reads them at scrape time, so the packet
// path never touches client_golang, never allocates and never takes a lock.
type Stats struct {
	// Packets received from the kernel (each got exactly one verdict
	// attempt).
	Packets atomic.Uint64
	// MarkedDrops counts packets the policy dropped that were accepted with
	// the mark_drop mark instead (staged rollout). They are counted as drops
	// by the engine's reason counters as well.
	MarkedDrops atomic.Uint64
	// VerdictErrors counts verdicts the kernel did not take (a send error,
	// or an error message for a verdict, e.g. ENOENT for an unknown id).
	VerdictErrors atomic.Uint64
	// ReceiveErrors counts errors reading the netlink socket, other than
	// the read deadlines the worker sets itself.
	ReceiveErrors atomic.Uint64
	// Rebinds counts re-opened sockets after the socket became unusable.
	Rebinds atomic.Uint64
	// Panics counts recovered panics while handling one packet (that
	// packet was accepted).
	Panics atomic.Uint64
	// LogSuppressed counts per-packet log lines the rate limit suppressed.
	LogSuppressed atomic.Uint64
	// Unjudged counts packets accepted without a decision, and so without
	// the judged mark: a message without its payload, or cut short
	// (Truncated), or a recovered panic (Panics).
	Unjudged atomic.Uint64
	// Truncated counts messages larger than a receive slot (MSG_TRUNC).
	Truncated atomic.Uint64
	// BadMessages counts netlink messages from the kernel that could not
	// be parsed (no packet id, lengths that do not add up).
	BadMessages atomic.Uint64
	// GSOPackets counts GSO super-packets queued unsegmented
	// (NFQA_SKB_INFO NFQA_SKB_GSO).
	GSOPackets atomic.Uint64
	// MonitorPassed counts packets the policy dropped that monitor mode
	// accepted (also counted as drops by the engine's reason counters).
	MonitorPassed atomic.Uint64
	// Flushed counts flows removed through the control socket.
	Flushed atomic.Uint64
	// Held is the number of resets held right now ([injection] mode =
	// "hold"); HeldLost counts held resets whose socket was lost before
	// their verdict (the kernel dropped them with it).
	Held     atomic.Int64
	HeldLost atomic.Uint64
	// Bound is true while the queue is bound to this worker's socket.
	Bound atomic.Bool
	// Latency is the decision time of one packet (parse, flow lookup,
	// policy, flow update): a burst's decision time divided by its
	// packets, observed once per packet of the burst.
	Latency Histogram
	// VerdictLatency is from the receive of a burst to the send of its
	// verdicts, observed once per packet of the burst: how long each
	// packet waited in the daemon.
	VerdictLatency Histogram
}

// LatencyBounds are the upper bounds, in nanoseconds, of the decision
// latency histogram's buckets (the +Inf bucket is implicit). The engine
// targets 100 ns per established data packet (SPEC section 10); the upper
// buckets catch table growth, reaping bursts and scheduler noise.
var LatencyBounds = [...]int64{100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000}

// NumLatencyBuckets is the number of buckets including +Inf.
const NumLatencyBuckets = len(LatencyBounds) + 1

// Histogram is a fixed-bucket histogram of nanosecond durations with atomic
// counters: Observe is lock-free and allocation-free, and a reader at scrape
// time sees every bucket's count (not cumulative; see Snapshot).
type Histogram struct {
	buckets [NumLatencyBuckets]atomic.Uint64
	sumNs   atomic.Uint64
}

// Observe adds one duration of ns nanoseconds.
func (h *Histogram) Observe(ns int64) { h.ObserveN(ns, 1) }

// ObserveN adds n observations of ns nanoseconds.
func (h *Histogram) ObserveN(ns int64, n uint64) {
	if ns < 0 {
		ns = 0
	}
	i := 0
	for i < len(LatencyBounds) && ns > LatencyBounds[i] {
		i++
	}
	h.buckets[i].Add(n)
	h.sumNs.Add(n * uint64(ns))
}

// Snapshot returns the cumulative bucket counts (count of observations <=
// each bound, the last entry being +Inf, i.e. the total) and the sum in
// seconds, in the form Prometheus histograms take.
func (h *Histogram) Snapshot() (cumulative [NumLatencyBuckets]uint64, sumSeconds float64) {
	var c uint64
	for i := range h.buckets {
		c += h.buckets[i].Load()
		cumulative[i] = c
	}
	return cumulative, float64(h.sumNs.Load()) / 1e9
}

// limiter is a token bucket for per-packet log lines, owned by one worker
// goroutine: no lock, no allocation. Its rate and burst may be changed from
// any goroutine (reload) through atomics.
type limiter struct {
	rateBits atomic.Uint64 // math.Float64bits(lines per second)
	burst    atomic.Int64

	tokens float64
	last   int64 // ns
}

func (l *limiter) set(rate float64, burst int) {
	if rate < 0 || math.IsNaN(rate) {
		rate = 0
	}
	switch {
	case rate == 0:
		burst = 0 // [log] rate_limit = 0 disables per-packet lines
	case burst < 1:
		burst = 1 // a positive rate with no burst would log nothing
	}
	l.rateBits.Store(math.Float64bits(rate))
	l.burst.Store(int64(burst))
}

// allow reports whether one line may be logged at time now (ns). A rate of
// 0 suppresses every line.
func (l *limiter) allow(now int64) bool {
	rate := math.Float64frombits(l.rateBits.Load())
	burst := float64(l.burst.Load())
	if l.last == 0 {
		l.tokens = burst
	} else if d := now - l.last; d > 0 {
		l.tokens += float64(d) * rate / 1e9
	}
	l.last = now
	if l.tokens > burst {
		l.tokens = burst
	}
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	return false
}
