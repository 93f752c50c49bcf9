package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
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
	MarkAccept, MarkDrop *uint32
	// Judged is written on every packet the worker accepts, the ones
	// MarkDrop lets through included (GUARD-DESIGN.md): final mark =
	// Judged.Apply(MarkAccept or MarkDrop if set, else the packet's own
	// mark). A zero Mask disables it.
	Judged Mark
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

	// busySince is the monotonic ns at which the current packet's handling
	// began, 0 while idle: a loop stuck in a packet is not alive.
	busySince atomic.Int64
	looping   atomic.Bool

	// Owned by the receive-loop goroutine while bound.
	nf        *nfqueue.Nfqueue
	stopping  atomic.Bool
	stopAt    time.Time
	exit      chan exitCause
	errStreak int
	drained   uint64 // packets given a verdict after the stop began
	fd        int    // the socket's descriptor, for moreWaiting; -1 if unknown
	pending   uint32 // id of the last accepted packet not yet given its verdict
	npending  int    // accepted packets waiting for one batch verdict
	pendMark  uint32 // the mark the pending batch carries, if pendHas
	pendHas   bool
	vbuf      [2 * verdictMaxLen]byte // verdict messages being built
	vlen      int
	last      policy.Decision // the last packet's decision (tests compare it with replay)
}

type exitCause uint8

const (
	exitStopped exitCause = iota // drained after a stop
	exitBroken                   // the socket is unusable: rebind
)

const (
	drainPoll         = 10 * time.Millisecond
	maxBatch          = 64  // most accepts covered by one batch verdict
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
	w := &Worker{cfg: cfg, engine: e, opts: opts, exit: make(chan exitCause, 1)}
	w.log = opts.Logger.With("queue", cfg.Queue)
	w.lim.set(opts.LogRate, opts.LogBurst)
	w.SetMarks(cfg.MarkAccept, cfg.MarkDrop)
	w.SetJudged(cfg.Judged)
	return w
}

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
func (w *Worker) Reconfigure(pc policy.Config, tc conntrack.Config, markAccept, markDrop *uint32, logRate float64, logBurst int) {
	w.engine.Reconfigure(pc, tc)
	w.SetMarks(markAccept, markDrop)
	w.lim.set(logRate, logBurst)
}

// SetMarks changes the marks (safe from any goroutine).
func (w *Worker) SetMarks(accept, drop *uint32) {
	w.markAccept.Store(packMark(accept))
	w.markDrop.Store(packMark(drop))
}

// SetJudged changes the judged mark (safe from any goroutine).
func (w *Worker) SetJudged(m Mark) { w.judged.Store(m.pack()) }

func packMark(m *uint32) uint64 {
	if m == nil {
		return 0
	}
	return 1<<32 | uint64(*m)
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

// bind opens the socket, tunes it and registers the loop.
func (w *Worker) bind() error {
	flags := uint32(0)
	if w.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	if w.cfg.GSO {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      w.cfg.Queue,
		MaxQueueLen:  w.cfg.MaxQueueLen,
		MaxPacketLen: w.cfg.CopyRange,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        flags,
		AfFamily:     unix.AF_INET,
		Logger:       libLogger{w.log},
	})
	if err != nil {
		return fmt.Errorf("could not open a netfilter netlink socket for queue %d: %w (rstguard needs CAP_NET_ADMIN)", w.cfg.Queue, err)
	}
	// go-nfqueue dials without a netlink.Config, so mdlayher/netlink
	// peeks (recvmsg MSG_PEEK|MSG_TRUNC) before every receive to size a
	// new buffer: two system calls per packet. A socket with a fixed
	// message buffer reads each packet with one. The buffer holds the
	// largest message the kernel can send us: the copy range plus the
	// packet's attributes (nfqnl_build_packet_message), with room to spare.
	copyMax := int(w.cfg.CopyRange)
	if copyMax == 0 || copyMax > 0xffff {
		copyMax = 0xffff
	}
	if con, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{MessageBufferSize: copyMax + 8192}); err == nil {
		nf.Con.Close()
		nf.Con = con
	} else {
		w.log.Warn("could not open a netlink socket with a fixed message buffer; using go-nfqueue's", "err", err)
	}
	// An overflowing socket must not kill the loop with ENOBUFS: the
	// kernel counts what it could not deliver (queue_user_dropped in
	// /proc), and the metrics export it.
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		nf.Close()
		return fmt.Errorf("queue %d: could not set NETLINK_NO_ENOBUFS: %w", w.cfg.Queue, err)
	}
	if n := w.cfg.ReadBuffer; n > 0 {
		w.setReadBuffer(nf, n)
	}
	w.fd = -1
	if rc, err := nf.Con.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { w.fd = int(fd) })
	}
	w.npending = 0
	w.nf = nf
	w.stopping.Store(false)
	w.drained = 0
	w.errStreak = 0
	select {
	case <-w.exit:
	default:
	}
	w.looping.Store(true)
	if err := nf.RegisterWithErrorFunc(context.Background(), w.hook, w.onError); err != nil {
		w.looping.Store(false)
		nf.Close()
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("could not bind queue %d: %w (is another program bound to it, or is CAP_NET_ADMIN missing?)", w.cfg.Queue, err)
		}
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("could not bind queue %d: %w (another socket is bound to it)", w.cfg.Queue, err)
		}
		return fmt.Errorf("could not bind queue %d: %w", w.cfg.Queue, err)
	}
	w.stats.Bound.Store(true)
	rcvbuf, _ := nf.Con.ReadBuffer() // as the kernel reports it (twice what was set)
	w.log.Info("queue bound", "copy_range", w.cfg.CopyRange, "max_queue_len", w.cfg.MaxQueueLen,
		"fail_open", w.cfg.FailOpen, "gso", w.cfg.GSO, "socket_receive_buffer", rcvbuf)
	return nil
}

func (w *Worker) setReadBuffer(nf *nfqueue.Nfqueue, n int) {
	if err := nf.Con.SetReadBuffer(n); err != nil {
		w.log.Warn("could not set the socket receive buffer", "bytes", n, "err", err)
	}
	// The kernel doubles the value and caps it at net.core.rmem_max; with
	// CAP_NET_ADMIN, SO_RCVBUFFORCE goes past the cap.
	if got, err := nf.Con.ReadBuffer(); err == nil && got < n {
		if rc, err := nf.Con.SyscallConn(); err == nil {
			var serr error
			_ = rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
			})
			if serr != nil {
				w.log.Warn("socket receive buffer capped by net.core.rmem_max; raise it or run with CAP_NET_ADMIN",
					"wanted", n, "got", got, "err", serr)
			}
		}
	}
}

// serve waits for the loop to end: on a stop it drains first.
func (w *Worker) serve(ctx context.Context) exitCause {
	var cause exitCause
	select {
	case cause = <-w.exit:
	case <-ctx.Done():
		w.beginStop()
		cause = <-w.exit // onError returns 1 once drained (bounded)
	}
	nf := w.nf
	if cause == exitStopped {
		// The library now sends UNBIND from its loop goroutine; wait
		// for the kernel to show the queue gone before closing the
		// socket (closing would unbind too, with the same flush).
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if _, bound, err := procQueue(w.opts.ProcPath, w.cfg.Queue); err != nil || !bound {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := nf.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		w.log.Debug("closing the netlink socket", "err", err)
	}
	w.looping.Store(false)
	w.nf = nil
	if cause == exitStopped {
		w.log.Info("queue unbound", "drained", w.drained, "drain_time", time.Since(w.stopAt).Round(time.Microsecond))
	}
	return cause
}

// beginStop stops new packets from entering the queue and starts the drain
// (package documentation).
func (w *Worker) beginStop() {
	w.stopAt = time.Now()
	w.stopping.Store(true)
	// NFQA_CFG_QUEUE_MAXLEN = 0, sent without NLM_F_ACK so the reply
	// cannot be confused with a packet message by the receive loop; an
	// error would come back as an error message to onError.
	var ml [4]byte
	binary.BigEndian.PutUint32(ml[:], 0)
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: nfqaCfgQueueMaxLen, Data: ml[:]}})
	if err == nil {
		hdr := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(w.cfg.Queue >> 8), byte(w.cfg.Queue)}
		_, err = w.nf.Con.Send(netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig),
				Flags: netlink.Request,
			},
			Data: append(hdr, attrs...),
		})
	}
	if err != nil {
		w.log.Warn("could not close the queue to new packets; draining until the timeout", "err", err)
	}
	w.nf.Con.SetReadDeadline(time.Now().Add(drainPoll))
}

// Netlink constants of linux/netfilter/nfnetlink.h and nfnetlink_queue.h
// that go-nfqueue keeps unexported.
const (
	nfnlSubsysQueue    = 3
	nfqnlMsgConfig     = 2
	nfqaCfgQueueMaxLen = 3
)

// onError handles every error of the receive loop without exiting, except
// when the drain is done or the socket is unusable.
func (w *Worker) onError(err error) int {
	w.flush()
	var op *netlink.OpError
	timeout := errors.As(err, &op) && op.Timeout()
	if !timeout && errors.Is(err, os.ErrDeadlineExceeded) {
		timeout = true
	}
	if w.stopping.Load() {
		if !timeout {
			w.countError(err)
		}
		q, bound, perr := procQueue(w.opts.ProcPath, w.cfg.Queue)
		if perr != nil || !bound || q.Total == 0 || time.Since(w.stopAt) > w.opts.DrainTimeout {
			if bound && q.Total > 0 {
				w.log.Warn("drain timed out; the kernel drops the packets still queued when the queue is unbound",
					"queued", q.Total)
			}
			// Clear our deadline so the library's UNBIND can read its
			// acknowledgement.
			w.nf.Con.SetReadDeadline(time.Time{})
			w.signalExit(exitStopped)
			return 1
		}
		w.nf.Con.SetReadDeadline(time.Now().Add(drainPoll))
		return 0
	}
	if timeout {
		return 0 // no deadline of ours is set while running
	}
	w.countError(err)
	if unusable(err) || w.errStreak >= maxErrStreak {
		w.signalExit(exitBroken)
		return 1
	}
	return 0
}

func (w *Worker) countError(err error) {
	w.errStreak++
	// A verdict for a packet the kernel no longer holds comes back as an
	// error message (netlink_ack for a request that failed).
	var op *netlink.OpError
	if errors.As(err, &op) && op.Op == "receive" {
		var errno syscall.Errno
		if errors.As(op.Err, &errno) && (errno == unix.ENOENT || errno == unix.EINVAL || errno == unix.ENODEV) {
			w.stats.VerdictErrors.Add(1)
			w.logLimited(slog.LevelWarn, "the kernel rejected a verdict", "err", err)
			return
		}
	}
	w.stats.ReceiveErrors.Add(1)
	w.logLimited(slog.LevelWarn, "netlink receive error", "err", err)
}

func unusable(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) ||
		errors.Is(err, unix.EBADF) || errors.Is(err, unix.ENOTSOCK)
}

func (w *Worker) signalExit(c exitCause) {
	select {
	case w.exit <- c:
	default:
	}
}

func (w *Worker) logLimited(level slog.Level, msg string, args ...any) {
	if !w.log.Enabled(context.Background(), level) {
		return
	}
	if !w.lim.allow(w.now()) {
		w.stats.LogSuppressed.Add(1)
		return
	}
	w.log.Log(context.Background(), level, msg, args...)
}

// hook is go-nfqueue's per-packet callback: decide, then give the verdict.
// It always returns 0 (keep receiving).
func (w *Worker) hook(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	w.errStreak = 0
	old := uint32(0) // the packet's mark; NFQA_MARK is absent when it is 0
	if a.Mark != nil {
		old = *a.Mark
	}
	id := *a.PacketID
	var verdict int
	var mark uint32
	var hasMark bool
	if a.Payload == nil {
		// Nothing copied to judge (never with NfQnlCopyPacket and a
		// copy range that holds the headers): pass it untouched but
		// for the judged mark.
		w.stats.Packets.Add(1)
		verdict = nfqueue.NfAccept
		mark, hasMark = w.acceptMark(old, 0)
	} else {
		wire := 0
		if a.CapLen != nil {
			wire = int(*a.CapLen)
		}
		verdict, mark, hasMark = w.handle(*a.Payload, wire, old)
		if w.stopping.Load() {
			w.drained++
		}
	}
	w.give(id, verdict, mark, hasMark)
	return 0
}

// give sends id's verdict, or holds an accept for the batch. Accepts wait
// while more packets are already on the socket, then one
// NFQNL_MSG_VERDICT_BATCH accepts every queued packet up to the last one,
// with one mark (nfqnl_recv_verdict_batch). Earlier packets all have their
// verdicts, since this one goroutine reads and decides in id order; an
// accept whose mark differs from the batch's, and every other verdict,
// first sends the batch before it.
func (w *Worker) give(id uint32, verdict int, mark uint32, hasMark bool) {
	if w.fd < 0 {
		w.giveLib(id, verdict, mark, hasMark)
		return
	}
	if verdict == nfqueue.NfAccept {
		if w.npending > 0 && (w.pendHas != hasMark || w.pendMark != mark) {
			w.flush()
		}
		w.pending, w.pendMark, w.pendHas = id, mark, hasMark
		w.npending++
		if w.npending < maxBatch && moreWaiting(w.fd) {
			return
		}
		w.flush()
		return
	}
	w.appendBatch()
	w.vlen = appendVerdict(w.vbuf[:], w.vlen, w.cfg.Queue, unix.AF_INET, id, uint32(verdict), mark, hasMark, false)
	w.send(id)
}

// giveLib is give through go-nfqueue, for a socket whose descriptor is
// unknown: no batch carries a mark there.
func (w *Worker) giveLib(id uint32, verdict int, mark uint32, hasMark bool) {
	var err error
	if hasMark {
		err = w.nf.SetVerdictWithOption(id, verdict, nfqueue.WithMark(mark))
	} else {
		err = w.nf.SetVerdict(id, verdict)
	}
	if err != nil {
		w.stats.VerdictErrors.Add(1)
		w.logLimited(slog.LevelWarn, "could not send a verdict", "id", id, "err", err)
	}
}

// appendBatch adds the pending batch verdict to the message buffer.
func (w *Worker) appendBatch() {
	if w.npending == 0 {
		return
	}
	w.npending = 0
	w.vlen = appendVerdict(w.vbuf[:], w.vlen, w.cfg.Queue, unix.AF_INET, w.pending, nfqueue.NfAccept, w.pendMark, w.pendHas, true)
}

// flush sends the pending batch of accepts.
func (w *Worker) flush() {
	if w.fd < 0 || w.npending == 0 {
		return
	}
	w.appendBatch()
	w.send(w.pending)
}

// send writes the buffered verdict messages in one datagram.
func (w *Worker) send(id uint32) {
	errno := sendRaw(w.fd, w.vbuf[:w.vlen])
	w.vlen = 0
	if errno != 0 {
		w.stats.VerdictErrors.Add(1)
		w.logLimited(slog.LevelWarn, "could not send a verdict", "id", id, "err", errno.Error())
	}
}

// moreWaiting reports whether another message already waits on netlink
// socket fd (recv with MSG_PEEK|MSG_DONTWAIT; netlink sockets do not answer
// FIONREAD). go-nfqueue reads one datagram per callback, so this is how the
// callback learns it is the last of a burst. An error says "no", which
// flushes the batch: a packet is never held waiting for another.
// The raw syscall, unlike unix.Recvfrom, builds no source address: no
// allocation per packet.
func moreWaiting(fd int) bool {
	var b [1]byte
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
		uintptr(unix.MSG_PEEK|unix.MSG_DONTWAIT), 0, 0)
	return errno == 0 && int(n) > 0
}

// handle is the per-packet path up to the verdict: decode, engine decision,
// latency, counters, marks and (rate-limited) log lines. It does not
// allocate unless it logs.
func (w *Worker) handle(payload []byte, wireLen int, old uint32) (verdict int, mark uint32, hasMark bool) {
	start := w.now()
	w.busySince.Store(start)
	w.stats.Packets.Add(1)
	var p packet.Parsed
	d, ok := w.process(payload, wireLen, start, &p)
	end := w.now()
	w.busySince.Store(0)
	w.stats.Latency.Observe(end - start)
	w.last = d
	if !ok {
		m, has := w.acceptMark(old, 0)
		return nfqueue.NfAccept, m, has
	}
	if d.Reason == policy.ReasonRSTAnswersReservedSYN || d.Verdict == policy.Drop {
		w.logDecision(&p, &d, end)
	}
	if d.Verdict == policy.Drop {
		if m := w.markDrop.Load(); m != 0 {
			w.stats.MarkedDrops.Add(1)
			mark, hasMark = w.acceptMark(old, m)
			return nfqueue.NfAccept, mark, hasMark
		}
		return nfqueue.NfDrop, 0, false
	}
	mark, hasMark = w.acceptMark(old, w.markAccept.Load())
	return nfqueue.NfAccept, mark, hasMark
}

// acceptMark is the mark of an accepted packet whose mark was old: set (a
// packed MarkAccept or MarkDrop, 0 if unset) replaces it whole, as those
// options always did, then the judged mark's bits are applied. hasMark
// false leaves the packet's mark as it is.
func (w *Worker) acceptMark(old uint32, set uint64) (mark uint32, hasMark bool) {
	mark = old
	if set != 0 {
		mark, hasMark = uint32(set), true
	}
	if j := unpackMark(w.judged.Load()); j.Mask != 0 {
		mark, hasMark = j.Apply(mark), true
	}
	return mark, hasMark
}

// process decodes the packet into p and runs the engine, recovering a
// panic: the packet is then accepted (ok false), and the panic counted and
// logged.
func (w *Worker) process(payload []byte, wireLen int, now int64, p *packet.Parsed) (d policy.Decision, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			w.stats.Panics.Add(1)
			w.logLimited(slog.LevelError, "recovered a panic while deciding a packet; accepted it",
				"panic", fmt.Sprint(r), "packet_len", len(payload), "stack", string(debug.Stack()))
			d, ok = policy.Decision{}, false
		}
	}()
	packet.Decode(payload, wireLen, p)
	return w.engine.Decide(p, now), true
}

// logLevel is the level of a decision's line: drops of malformed packets and
// of out-of-window non-reset segments are routine (debug); dropped resets and
// RFC 3360 violators are warnings.
func logLevel(r policy.Reason) slog.Level {
	if r == policy.ReasonMalformed || r == policy.ReasonOutOfWindow {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// logDecision writes the line for a dropped packet or a reset answering a
// reserved-flag SYN, from the packet as decoded for the decision.
func (w *Worker) logDecision(p *packet.Parsed, d *policy.Decision, now int64) {
	level := logLevel(d.Reason)
	if !w.log.Enabled(context.Background(), level) {
		return
	}
	if !w.lim.allow(now) {
		w.stats.LogSuppressed.Add(1)
		return
	}
	attrs := []slog.Attr{
		slog.String("reason", d.Reason.String()),
		slog.String("state", d.State.String()),
	}
	if p.Kind == packet.KindTCP {
		attrs = append(attrs,
			slog.String("src", p.SrcAddrPort().String()),
			slog.String("dst", p.DstAddrPort().String()),
			slog.Uint64("seq", uint64(p.Seq)), slog.Uint64("ack", uint64(p.Ack)),
			slog.Uint64("ttl", uint64(p.TTL)))
	}
	if d.Checked {
		attrs = append(attrs, slog.Uint64("window_lo", uint64(d.WinLo)), slog.Uint64("window_hi", uint64(d.WinHi)))
	}
	msg := "dropped packet"
	switch {
	case d.Reason == policy.ReasonRSTAnswersReservedSYN:
		// RFC 3360 2: a reset answering a SYN with ECN or reserved bits
		// is the mark of a middlebox or host that rejects them.
		msg = "reset answers a SYN that carried ECN or reserved bits (RFC 3360 violator upstream)"
		attrs = append(attrs, slog.String("peer", p.SrcAddrPort().Addr().String()),
			slog.String("syn_flags", policy.SYNFlagNames(d.SYNFlags)))
	case p.Kind == packet.KindTCP && p.Flags&packet.RST != 0:
		msg = "dropped reset"
	}
	if d.Verdict == policy.Drop && w.markDrop.Load() != 0 {
		msg += " (accepted with the mark_drop mark instead)"
	}
	w.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// libLogger routes go-nfqueue's own messages to slog. Its errors are worth
// a warning: "Could not parse message" means a packet the kernel holds got
// no verdict (the kernel drops it when the queue is unbound).
type libLogger struct{ l *slog.Logger }

func (l libLogger) Debugf(format string, args ...any) {
	l.l.Debug("go-nfqueue: " + fmt.Sprintf(format, args...))
}
func (l libLogger) Errorf(format string, args ...any) {
	l.l.Warn("go-nfqueue: " + fmt.Sprintf(format, args...))
}
