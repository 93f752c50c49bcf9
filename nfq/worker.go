package nfq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/policy"
)

// Config configures one queue.
type Config struct {
	Queue uint16
	// FailOpen accepts packets when the queue is full instead of dropping
	// them (NFQA_CFG_F_FAIL_OPEN).
	FailOpen bool
	// GSO lets the kernel queue GSO super-packets unsegmented
	// (NFQA_CFG_F_GSO); with CopyRange covering only headers, they are
	// never copied whole.
	GSO bool
	// MaxQueueLen is the kernel queue's length (0: the kernel's 1024).
	MaxQueueLen uint32
	// CopyRange is how many bytes of each packet the kernel copies to us
	// (NfQnlCopyPacket); the headers are enough.
	CopyRange uint32
	// ReadBuffer is the socket receive buffer in bytes (0: the system
	// default); beyond net.core.rmem_max it is forced with SO_RCVBUFFORCE.
	ReadBuffer int
	// MarkAccept, if set, marks accepted packets. MarkDrop, if set, accepts
	// the packets the policy drops, with that mark (staged rollout).
	MarkAccept, MarkDrop *Mark
	// Judged is written on every packet the worker accepts, the ones
	// MarkDrop lets through included (GUARD-DESIGN.md): final mark =
	// Judged.Apply(MarkAccept or MarkDrop if set, else the packet's own
	// mark). A zero Mask disables it.
	Judged Mark
	// LockOSThread runs the worker's loop on a thread of its own
	// (runtime.LockOSThread). Measured with the SYN-flood benchmark, it
	// makes no difference (README, Performance); the daemon leaves it off.
	LockOSThread bool
	// Monitor accepts what the policy drops ([policy] mode = "monitor");
	// SetMonitor changes it at run time.
	Monitor bool
	// MaxHeld bounds the resets held at once ([injection] max_held; 0:
	// policy's default).
	MaxHeld int
}

// Options are what all workers share.
type Options struct {
	// Epoch is time zero of the engines' clock (the daemon's start): now
	// is the monotonic time since it, in nanoseconds.
	Epoch time.Time
	// Logger receives per-packet lines (rate-limited) and socket events.
	Logger *slog.Logger
	// LogRate and LogBurst configure each worker's per-packet log limit
	// (lines per second, bucket size).
	LogRate  float64
	LogBurst int
	// DrainTimeout bounds the drain on shutdown (default 2 s).
	DrainTimeout time.Duration
	// ProcPath is ProcPath unless testing.
	ProcPath string
}

// Worker owns one queue and one engine.
type Worker struct {
	cfg    Config
	engine *policy.Engine
	opts   Options
	log    *slog.Logger
	stats  Stats
	lim    limiter

	// marks: bit 32 set means "present", low 32 bits the mark.
	markAccept, markDrop atomic.Uint64
	judged               atomic.Uint64 // Mark.pack
	monitor              atomic.Bool   // [policy] mode = "monitor"

	// busySince is the monotonic ns at which the current packet's handling
	// began, 0 while idle: a loop stuck in a packet is not alive.
	busySince atomic.Int64
	looping   atomic.Bool

	events  *events.Ring                 // nil: no event log
	ctl     chan *ctlReq                 // control requests (control.go)
	wake    atomic.Pointer[netlink.Conn] // the bound socket, for waking the loop
	epochNs int64                        // opts.Epoch in Unix nanoseconds: event time = epochNs + now

	// Owned by the receive loop while bound.
	conn      *netlink.Conn
	rc        syscall.RawConn
	fd        int // the socket's descriptor; -1 while unbound
	readFn    func(fd uintptr) bool
	rx        rxRing
	seq       uint32 // of our configuration messages
	awaitSeq  uint32 // the configuration message awaiting its acknowledgement
	ackErrno  int32
	ackSeen   bool
	stopReq   atomic.Bool // set by the context watcher
	stopping  bool        // the drain has begun
	stopAt    time.Time
	errStreak int
	drained   uint64 // packets given a verdict after the stop began

	// The verdicts of the current burst (burst.go).
	pending  uint32 // id of the last accepted packet not yet given its verdict
	npending int    // accepted packets waiting for one batch verdict
	pendMark uint32 // the mark the pending batch carries, if pendHas
	pendHas  bool
	vbuf     [2 * maxBurst * verdictMaxLen]byte
	vlen     int
	last     *policy.Decision // the last packet's decision (tests compare it with replay)
	none     policy.Decision  // the decision of a packet whose handling panicked

	held     holdRing // held resets (hold.go)
	nextReap int64    // when the idle reap is next due (hold.go)
	timerAt  int64    // what the read deadline is set to (armTimer), 0 none
	noHold   bool     // awaiting a configuration acknowledgement: hold nothing
}

type exitCause uint8

const (
	exitNone    exitCause = iota
	exitStopped           // drained after a stop
	exitBroken            // the socket is unusable: rebind
)

const (
	drainPoll         = 10 * time.Millisecond
	maxErrStreak      = 100 // consecutive receive errors before a rebind
	defaultDrainLimit = 2 * time.Second
)

// New returns a worker for cfg deciding with e. It does not bind the queue
// (Run does).
func New(cfg Config, e *policy.Engine, opts Options) *Worker {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = defaultDrainLimit
	}
	if opts.ProcPath == "" {
		opts.ProcPath = ProcPath
	}
	if opts.Epoch.IsZero() {
		opts.Epoch = time.Now()
	}
	w := &Worker{cfg: cfg, engine: e, opts: opts, fd: -1}
	w.epochNs = opts.Epoch.UnixNano()
	w.ctl = make(chan *ctlReq, 1)
	w.rx.init(slotSize(w.copyRange()))
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = policy.DefaultMaxHeld
		w.cfg.MaxHeld = cfg.MaxHeld
	}
	w.held.init(cfg.MaxHeld)
	w.readFn = w.read
	w.log = opts.Logger.With("queue", cfg.Queue)
	w.lim.set(opts.LogRate, opts.LogBurst)
	w.SetMarks(cfg.MarkAccept, cfg.MarkDrop)
	w.SetJudged(cfg.Judged)
	w.SetMonitor(cfg.Monitor)
	return w
}

// SetEvents gives the worker the ring its event records go to (package
// events). Call it before Run.
func (w *Worker) SetEvents(r *events.Ring) { w.events = r }

// Queue returns the worker's queue number.
func (w *Worker) Queue() uint16 { return w.cfg.Queue }

// Engine returns the worker's engine (Stats and Reconfigure are safe from
// any goroutine).
func (w *Worker) Engine() *policy.Engine { return w.engine }

// Stats returns the worker's counters.
func (w *Worker) Stats() *Stats { return &w.stats }

// Reconfigure hands the engine a new configuration (applied before the next
// packet, flows kept) and updates marks and the log limit. Safe from any
// goroutine.
func (w *Worker) Reconfigure(pc policy.Config, tc conntrack.Config, markAccept, markDrop *Mark, logRate float64, logBurst int) {
	w.engine.Reconfigure(pc, tc)
	w.SetMarks(markAccept, markDrop)
	w.lim.set(logRate, logBurst)
}

// SetMarks changes the marks (safe from any goroutine).
func (w *Worker) SetMarks(accept, drop *Mark) {
	w.markAccept.Store(packMark(accept))
	w.markDrop.Store(packMark(drop))
}

// SetMonitor turns monitor mode on or off (safe from any goroutine): the
// policy decides and counts as usual, and every packet is accepted with
// the judged mark only.
func (w *Worker) SetMonitor(on bool) { w.monitor.Store(on) }

// SetJudged changes the judged mark (safe from any goroutine).
func (w *Worker) SetJudged(m Mark) { w.judged.Store(m.pack()) }

// packMark packs an optional mark for the atomics: 0 is "none" (a set
// mark always has a non-zero mask).
func packMark(m *Mark) uint64 {
	if m == nil || m.Mask == 0 {
		return 0
	}
	return m.pack()
}

// Alive reports whether the worker's queue is bound and its receive loop is
// not stuck in one packet for longer than stuck (the watchdog's test).
func (w *Worker) Alive(stuck time.Duration) bool {
	if !w.stats.Bound.Load() || !w.looping.Load() {
		return false
	}
	b := w.busySince.Load()
	return b == 0 || w.now()-b < int64(stuck)
}

func (w *Worker) now() int64 {
	n := int64(time.Since(w.opts.Epoch))
	if n <= 0 {
		n = 1 // 0 means idle in busySince
	}
	return n
}

// Run binds the queue and gives verdicts until ctx is cancelled, then
// drains (see the package documentation) and unbinds. ready is called once,
// when the queue is first bound. A failure to bind the first time is
// returned; later, an unusable socket is re-opened and re-bound with
// backoff until ctx ends.
func (w *Worker) Run(ctx context.Context, ready func()) error {
	if w.cfg.LockOSThread {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	first := true
	backoff := 100 * time.Millisecond
	for {
		err := w.bind()
		if err != nil {
			if first {
				return err
			}
			w.log.Error("could not re-bind queue; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if first {
			first = false
			if ready != nil {
				ready()
			}
		}
		cause := w.serve(ctx)
		w.stats.Bound.Store(false)
		if cause == exitStopped {
			return nil
		}
		w.stats.Rebinds.Add(1)
		w.log.Warn("netlink socket unusable; re-binding the queue")
		if ctx.Err() != nil {
			return nil
		}
	}
}

// resetLoop clears the loop's state for a new socket.
func (w *Worker) resetLoop() {
	w.npending, w.vlen, w.timerAt = 0, 0, 0 // a new socket has no deadline
	w.forgetHeld()
	w.stopping, w.drained, w.errStreak = false, 0, 0
	w.stopReq.Store(false)
	w.awaitSeq, w.ackSeen = 0, false
}

// serve runs the receive loop on the bound socket until a drained stop or
// an unusable socket. A watcher goroutine turns ctx's end into a read
// deadline in the past, which wakes the loop; the loop then drains.
func (w *Worker) serve(ctx context.Context) exitCause {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			w.stopReq.Store(true)
			w.conn.SetReadDeadline(time.Now())
		case <-done:
		}
	}()
	w.looping.Store(true)
	w.wake.Store(w.conn)
	cause := w.loop()
	close(done)
	w.looping.Store(false)
	w.wake.Store(nil)
	w.failCtl(errNotRunning)
	if cause == exitStopped {
		w.unbind()
	}
	w.closeConn()
	if cause == exitStopped {
		w.log.Info("queue unbound", "drained", w.drained, "drain_time", time.Since(w.stopAt).Round(time.Microsecond))
	}
	return cause
}

// loop reads bursts and answers them until it has a reason to stop.
func (w *Worker) loop() exitCause {
	for {
		if !w.stopping && w.stopReq.Load() {
			w.beginStop()
		}
		n, err := w.receive()
		if err == nil {
			w.errStreak = 0
			w.burst(n)
			w.serveCtl()
			continue
		}
		if c := w.onError(err); c != exitNone {
			return c
		}
	}
}

// awaitAck runs the receive loop until the acknowledgement of configuration
// message seq arrives (packets arriving meanwhile get their verdicts), or
// until timeout. It returns the acknowledgement's errno (0: success).
func (w *Worker) awaitAck(seq uint32, timeout time.Duration) (int32, error) {
	w.awaitSeq, w.ackSeen = seq, false
	w.noHold = true
	defer func() { w.awaitSeq, w.noHold = 0, false }()
	deadline := time.Now().Add(timeout)
	w.conn.SetReadDeadline(deadline)
	defer w.conn.SetReadDeadline(time.Time{})
	for !w.ackSeen {
		n, err := w.receive()
		if err != nil {
			if isTimeout(err) {
				if time.Now().Before(deadline) { // someone else's wake-up
					w.conn.SetReadDeadline(deadline)
					continue
				}
				return 0, fmt.Errorf("no answer from the kernel within %v", timeout)
			}
			return 0, err
		}
		w.burst(n)
	}
	return w.ackErrno, nil
}

// receive reads one burst: recvmmsg through the runtime poller, which parks
// the goroutine (not its thread) while the socket is empty and honours the
// connection's read deadline.
func (w *Worker) receive() (int, error) {
	w.rx.n, w.rx.errno = 0, 0
	if err := w.rc.Read(w.readFn); err != nil {
		return 0, err
	}
	if w.rx.errno != 0 {
		return 0, w.rx.errno
	}
	return w.rx.n, nil
}

// read is the poller's callback (w.readFn, made once: no closure per
// receive). false means "nothing yet, wait for readiness".
func (w *Worker) read(fd uintptr) bool {
	n, errno := w.rx.recvmmsg(fd)
	if errno == unix.EAGAIN {
		return false
	}
	w.rx.n, w.rx.errno = n, errno
	return true
}

// onError handles an error of the receive: a timeout while stopping is the
// drain's clock, the stop request's wake-up starts the drain, anything else
// is counted and, if the socket is unusable, ends the loop for a rebind.
func (w *Worker) onError(err error) exitCause {
	if isTimeout(err) {
		if !w.stopping {
			// A wake-up: a control request, the stop request (the
			// loop then begins the drain, which sets its own
			// deadline), the end of a hold or an idle reap.
			w.timerAt = -1 // whatever it was, set it again
			w.burst(0)
			w.serveCtl()
			return exitNone
		}
		w.serveCtl()
		return w.drainCheck()
	}
	if unusable(err) {
		return exitBroken
	}
	w.errStreak++
	w.stats.ReceiveErrors.Add(1)
	w.logLimited(slog.LevelWarn, "netlink receive error", "err", err)
	if w.errStreak >= maxErrStreak {
		return exitBroken
	}
	return exitNone
}

func isTimeout(err error) bool {
	var op *netlink.OpError
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &op) && op.Timeout()
}

func unusable(err error) bool {
	// RawConn.Read hands back internal/poll's ErrFileClosing ("use of
	// closed file") unconverted: no exported sentinel matches it.
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) ||
		errors.Is(err, unix.EBADF) || errors.Is(err, unix.ENOTSOCK) ||
		strings.Contains(err.Error(), "use of closed")
}

// beginStop stops new packets from entering the queue and starts the drain
// (package documentation).
func (w *Worker) beginStop() {
	w.stopAt = time.Now()
	w.stopping = true
	// Every held reset gets its verdict now (accepted, as when a hold
	// ends): nothing stays held through the drain.
	if w.held.n > 0 {
		w.releaseExpired(w.now(), true)
		w.flushVerdicts()
	}
	if err := w.closeQueue(); err != nil {
		w.log.Warn("could not close the queue to new packets; draining until the timeout", "err", err)
	}
	w.conn.SetReadDeadline(time.Now().Add(drainPoll))
}

// drainCheck ends the drain once /proc shows no packet of ours queued (or
// at the drain timeout), else waits another poll interval.
func (w *Worker) drainCheck() exitCause {
	q, bound, perr := procQueue(w.opts.ProcPath, w.cfg.Queue)
	if perr != nil || !bound || q.Total == 0 || time.Since(w.stopAt) > w.opts.DrainTimeout {
		if bound && q.Total > 0 {
			w.log.Warn("drain timed out; the kernel drops the packets still queued when the queue is unbound",
				"queued", q.Total)
		}
		return exitStopped
	}
	w.conn.SetReadDeadline(time.Now().Add(drainPoll))
	return exitNone
}

// Netlink constants of linux/netfilter/nfnetlink.h and nfnetlink_queue.h.
const (
	nfnlSubsysQueue    = 3
	nfqnlMsgConfig     = 2
	nfqaCfgQueueMaxLen = 3
)
