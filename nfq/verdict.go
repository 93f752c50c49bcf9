package nfq

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Verdict messages, built by hand into a buffer the worker owns: go-nfqueue
// allocates several slices per verdict and offers no batch verdict with a
// mark, which the judged mark (GUARD-DESIGN.md) needs on every accept.
//
// Layout (include/uapi/linux/netfilter/nfnetlink_queue.h):
//
//	nlmsghdr   len u32, type u16 = NFNL_SUBSYS_QUEUE<<8 | NFQNL_MSG_VERDICT(_BATCH),
//	           flags u16 = NLM_F_REQUEST, seq u32, pid u32   (host order)
//	nfgenmsg   family u8, version u8 = NFNETLINK_V0, res_id be16 = queue
//	NFQA_VERDICT_HDR  nla(len 12, type 2): verdict be32, id be32
//	NFQA_MARK         nla(len 8, type 3): mark be32 (optional)
//
// nfqnl_recv_verdict_batch gives the verdict and the mark to every queued
// packet with an id up to and including id, so a batch is only correct for a
// run of packets that all end with the same verdict and mark.
const (
	nfnlSubsysQueueMsg   = 3
	nfqnlMsgVerdict      = 1
	nfqnlMsgVerdictBatch = 3
	nfqaVerdictHdr       = 2
	nfqaMark             = 3
	verdictMsgLen        = 16 + 4 + 12
	verdictMarkLen       = 8
	verdictMaxLen        = verdictMsgLen + verdictMarkLen
)

// appendVerdict writes one verdict message into b[off:] and returns the new
// offset. b must have room for verdictMaxLen bytes past off.
func appendVerdict(b []byte, off int, queue uint16, family uint8, id uint32, verdict uint32, mark uint32, hasMark, batch bool) int {
	n := verdictMsgLen
	if hasMark {
		n += verdictMarkLen
	}
	m := b[off : off+n]
	typ := uint16(nfnlSubsysQueueMsg<<8 | nfqnlMsgVerdict)
	if batch {
		typ = nfnlSubsysQueueMsg<<8 | nfqnlMsgVerdictBatch
	}
	binary.NativeEndian.PutUint32(m[0:], uint32(n))
	binary.NativeEndian.PutUint16(m[4:], typ)
	binary.NativeEndian.PutUint16(m[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(m[8:], 0)
	binary.NativeEndian.PutUint32(m[12:], 0)
	m[16], m[17] = family, unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(m[18:], queue)
	binary.NativeEndian.PutUint16(m[20:], 12)
	binary.NativeEndian.PutUint16(m[22:], nfqaVerdictHdr)
	binary.BigEndian.PutUint32(m[24:], verdict)
	binary.BigEndian.PutUint32(m[28:], id)
	if hasMark {
		binary.NativeEndian.PutUint16(m[32:], 8)
		binary.NativeEndian.PutUint16(m[34:], nfqaMark)
		binary.BigEndian.PutUint32(m[36:], mark)
	}
	return off + n
}

// sendRaw writes the verdict messages in b to the kernel in one datagram
// (netlink_rcv_skb walks every message of it). The raw system call builds no
// address: no allocation. The destination is the kernel (port id 0), the
// socket's default.
func sendRaw(fd int, b []byte) unix.Errno {
	if len(b) == 0 {
		return 0
	}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		if errno != unix.EINTR {
			return errno
		}
	}
}
