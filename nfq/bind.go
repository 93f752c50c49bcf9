package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Queue configuration (NFQNL_MSG_CONFIG), built by hand like the verdicts.
// go-nfqueue's RegisterWithErrorFunc binds the queue and starts its own
// receive goroutine in one call, and waits for each acknowledgement with a
// plain Execute, which fails when a packet message arrives first (the queue
// exists as soon as BIND is processed, so under load one always does). The
// worker sends the whole configuration in one message (nfqnl_recv_config
// handles NFQA_CFG_CMD first, creating the instance, then NFQA_CFG_PARAMS,
// NFQA_CFG_QUEUE_MAXLEN and NFQA_CFG_FLAGS/MASK, all under one lock) and
// reads its acknowledgement through the same receive path as the packets,
// which get their verdicts meanwhile.
const (
	nfqnlCfgCmdBind   = 1
	nfqnlCfgCmdUnbind = 2
	nfqaCfgCmd        = 1
	nfqaCfgParams     = 2
	nfqaCfgMask       = 4
	nfqaCfgFlags      = 5
	nfqnlCopyPacket   = 2

	// NFQA_CFG_F_* (nfnetlink_queue.h).
	cfgFlagFailOpen = 1 << 0
	cfgFlagGSO      = 1 << 2

	cfgMaxLen = nlmsgHdrLen + nfgenHdrLen + 8 + 12 + 3*8
)

// appendConfig writes one configuration message into b (which must hold
// cfgMaxLen bytes) and returns its length. cmd 0 sends no command; params
// false sends no copy parameters; maxLen < 0 sends no queue length.
func appendConfig(b []byte, queue uint16, seq uint32, ack bool, cmd uint8, params bool, copyRange uint32, maxLen int64, flags, mask uint32) int {
	off := nlmsgHdrLen
	b[off], b[off+1] = unix.AF_UNSPEC, unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[off+2:], queue)
	off += nfgenHdrLen
	attr := func(typ uint16, n int) []byte {
		binary.NativeEndian.PutUint16(b[off:], uint16(nlaHdrLen+n))
		binary.NativeEndian.PutUint16(b[off+2:], typ)
		v := b[off+nlaHdrLen : off+nlaHdrLen+n]
		end := off + (nlaHdrLen+n+3)&^3
		clear(b[off+nlaHdrLen+n : end]) // padding
		off = end
		return v
	}
	if cmd != 0 {
		v := attr(nfqaCfgCmd, 4) // struct nfqnl_msg_config_cmd
		v[0], v[1] = cmd, 0
		binary.BigEndian.PutUint16(v[2:], unix.AF_INET) // pf: unused since Linux 3.8
	}
	if params {
		v := attr(nfqaCfgParams, 5) // struct nfqnl_msg_config_params, packed
		binary.BigEndian.PutUint32(v, copyRange)
		v[4] = nfqnlCopyPacket
	}
	if maxLen >= 0 {
		binary.BigEndian.PutUint32(attr(nfqaCfgQueueMaxLen, 4), uint32(maxLen))
	}
	if mask != 0 {
		binary.BigEndian.PutUint32(attr(nfqaCfgFlags, 4), flags)
		binary.BigEndian.PutUint32(attr(nfqaCfgMask, 4), mask)
	}
	fl := uint16(unix.NLM_F_REQUEST)
	if ack {
		fl |= unix.NLM_F_ACK
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(off))
	binary.NativeEndian.PutUint16(b[4:], nfnlSubsysQueue<<8|nfqnlMsgConfig)
	binary.NativeEndian.PutUint16(b[6:], fl)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.NativeEndian.PutUint32(b[12:], 0)
	return off
}

// open dials the netfilter netlink socket and tunes it. mdlayher/netlink
// owns the socket: creation, the runtime poller, deadlines, options.
func (w *Worker) open() (*netlink.Conn, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("could not open a netfilter netlink socket for queue %d: %w (rstguard needs CAP_NET_ADMIN)", w.cfg.Queue, err)
	}
	// An overflowing socket must not fail the receive with ENOBUFS: the
	// kernel counts what it could not deliver (queue_user_dropped in
	// /proc), and the metrics export it.
	if err := conn.SetOption(netlink.NoENOBUFS, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("queue %d: could not set NETLINK_NO_ENOBUFS: %w", w.cfg.Queue, err)
	}
	if n := w.cfg.ReadBuffer; n > 0 {
		w.setReadBuffer(conn, n)
	}
	return conn, nil
}

func (w *Worker) setReadBuffer(conn *netlink.Conn, n int) {
	if err := conn.SetReadBuffer(n); err != nil {
		w.log.Warn("could not set the socket receive buffer", "bytes", n, "err", err)
	}
	// The kernel doubles the value and caps it at net.core.rmem_max; with
	// CAP_NET_ADMIN, SO_RCVBUFFORCE goes past the cap.
	if got, err := conn.ReadBuffer(); err == nil && got < n {
		if rc, err := conn.SyscallConn(); err == nil {
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

// bindTimeout bounds the wait for the kernel's answer to the bind.
const bindTimeout = 2 * time.Second

// bind opens the socket, binds the queue with its configuration and waits
// for the acknowledgement, judging the packets that arrive before it.
func (w *Worker) bind() error {
	conn, err := w.open()
	if err != nil {
		return err
	}
	rc, err := conn.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { w.fd = int(fd) })
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("queue %d: netlink socket without a descriptor: %w", w.cfg.Queue, err)
	}
	w.conn, w.rc = conn, rc
	w.resetLoop()

	var flags uint32
	if w.cfg.FailOpen {
		flags |= cfgFlagFailOpen
	}
	if w.cfg.GSO {
		flags |= cfgFlagGSO
	}
	maxLen := int64(-1) // the kernel's default (1024)
	if w.cfg.MaxQueueLen > 0 {
		maxLen = int64(w.cfg.MaxQueueLen)
	}
	w.seq++
	seq := w.seq
	var msg [cfgMaxLen]byte
	n := appendConfig(msg[:], w.cfg.Queue, seq, true, nfqnlCfgCmdBind, true, w.copyRange(), maxLen, flags, cfgFlagFailOpen|cfgFlagGSO)
	if errno := sendRaw(w.fd, msg[:n]); errno != 0 {
		w.closeConn()
		return fmt.Errorf("could not send the bind of queue %d: %w", w.cfg.Queue, errno)
	}
	errno, err := w.awaitAck(seq, bindTimeout)
	if err == nil && errno != 0 {
		err = syscall.Errno(errno)
	}
	if err != nil {
		w.closeConn()
		switch {
		case errors.Is(err, unix.EPERM):
			return fmt.Errorf("could not bind queue %d: %w (is another program bound to it, or is CAP_NET_ADMIN missing?)", w.cfg.Queue, err)
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("could not bind queue %d: %w (another socket is bound to it)", w.cfg.Queue, err)
		}
		return fmt.Errorf("could not bind queue %d: %w", w.cfg.Queue, err)
	}
	w.stats.Bound.Store(true)
	rcvbuf, _ := conn.ReadBuffer() // as the kernel reports it (twice what was set)
	w.log.Info("queue bound", "copy_range", w.cfg.CopyRange, "max_queue_len", w.cfg.MaxQueueLen,
		"fail_open", w.cfg.FailOpen, "gso", w.cfg.GSO, "socket_receive_buffer", rcvbuf, "burst", maxBurst)
	return nil
}

// copyRange is the copy range asked of the kernel: the configured one, or
// all of the packet (the kernel caps it at its maximum) when 0.
func (w *Worker) copyRange() uint32 {
	if w.cfg.CopyRange == 0 || w.cfg.CopyRange > 0xffff {
		return 0xffff
	}
	return w.cfg.CopyRange
}

// closeQueue sets the queue's maximum length to 0 (no acknowledgement is
// asked, so only an error comes back): from now on the kernel sends new
// packets down the fail-open path (or drops them, fail_open off) and the
// worker drains what is queued.
func (w *Worker) closeQueue() error {
	var msg [cfgMaxLen]byte
	w.seq++
	n := appendConfig(msg[:], w.cfg.Queue, w.seq, false, 0, false, 0, 0, 0, 0)
	if errno := sendRaw(w.fd, msg[:n]); errno != 0 {
		return errno
	}
	return nil
}

// unbind asks the kernel to destroy the queue (no acknowledgement: the
// socket is closed next, which would destroy it too). The kernel drops
// whatever is still queued (nfqnl_flush), so it is sent after the drain.
func (w *Worker) unbind() {
	var msg [cfgMaxLen]byte
	w.seq++
	n := appendConfig(msg[:], w.cfg.Queue, w.seq, false, nfqnlCfgCmdUnbind, false, 0, -1, 0, 0)
	sendRaw(w.fd, msg[:n])
}

func (w *Worker) closeConn() {
	if w.conn != nil {
		if err := w.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			w.log.Debug("closing the netlink socket", "err", err)
		}
	}
	w.conn, w.rc, w.fd = nil, nil, -1
}
