package nfq

import "encoding/binary"

// Netlink messages from the kernel, parsed in place: no allocation, no copy,
// every length checked before it is used (a short or malformed message is
// reported as such, never read past).
//
// Layouts (include/uapi/linux/netlink.h, netfilter/nfnetlink.h,
// netfilter/nfnetlink_queue.h; nfqnl_build_packet_message builds them):
//
//	nlmsghdr  len u32, type u16, flags u16, seq u32, pid u32 (host order)
//	nfgenmsg  family u8, version u8, res_id be16 (the queue)
//	nlattr*   len u16, type u16 (NLA_F_NESTED and NLA_F_NET_BYTEORDER in the
//	          top bits), value, padded to 4 bytes
//
// A packet message (type NFNL_SUBSYS_QUEUE<<8 | NFQNL_MSG_PACKET) carries
// NFQA_PACKET_HDR (packet_id be32, hw_protocol be16, hook u8), NFQA_MARK
// (be32, only when the mark is not 0), NFQA_PAYLOAD (the first copy range
// bytes of the packet from its network header), NFQA_CAP_LEN (be32, the
// packet's length when the payload was cut to the copy range) and
// NFQA_SKB_INFO (be32 flags: NFQA_SKB_CSUMNOTREADY, NFQA_SKB_GSO,
// NFQA_SKB_CSUM_NOTVERIFIED), among others the worker does not use.
// An error message (NLMSG_ERROR) carries the errno (negative s32, 0 for an
// acknowledgement) and the header of the request it answers.
const (
	nlmsgHdrLen   = 16
	nfgenHdrLen   = 4
	nlaHdrLen     = 4
	nlaTypeMask   = 0x3fff // without NLA_F_NESTED, NLA_F_NET_BYTEORDER
	nlmsgNoop     = 1
	nlmsgError    = 2
	nlmsgDone     = 3
	nlmsgOverrun  = 4
	nfqnlMsgPkt   = 0
	nfqaPacketHdr = 1
	// nfqaMark (3) is in verdict.go.
	nfqaPayload = 10
	nfqaCapLen  = 13
	nfqaSkbInfo = 14

	// NFQA_SKB_INFO flags.
	skbCsumNotReady    = 1 << 0 // the checksum is not computed yet (local or GSO)
	skbGSO             = 1 << 1 // a GSO super-packet, queued unsegmented (NFQA_CFG_F_GSO)
	skbCsumNotVerified = 1 << 2 // the checksum was not verified by the NIC
)

// msgKind says what a netlink message is.
type msgKind uint8

const (
	msgPacket msgKind = iota + 1 // a queued packet (pkt filled in)
	msgError                     // NLMSG_ERROR: errno and seq filled in (errno 0: an acknowledgement)
	msgOther                     // NLMSG_NOOP, NLMSG_DONE, another nfnetlink message: nothing to do
	msgBad                       // shorter than its header says, or a packet message without its id
)

// pktMsg is one packet message. The worker owns one per burst slot; parse
// overwrites every field.
type pktMsg struct {
	id      uint32 // NFQA_PACKET_HDR packet_id: the verdict's key
	hwProto uint16 // NFQA_PACKET_HDR hw_protocol (ETH_P_IP, ETH_P_IPV6), host order
	hook    uint8  // NFQA_PACKET_HDR hook
	mark    uint32 // NFQA_MARK; 0 when absent (the kernel omits a 0 mark)
	capLen  uint32 // NFQA_CAP_LEN; 0 when absent (nothing was cut)
	skbInfo uint32 // NFQA_SKB_INFO flags; 0 when absent
	// payload is NFQA_PAYLOAD as offsets into the message buffer
	// (payOff, payLen); hasPayload false when absent.
	payOff, payLen int
	hasPayload     bool
	// errno and seq of an NLMSG_ERROR.
	errno int32
	seq   uint32
}

// parseMsg parses the netlink message at the start of b (one message; the
// caller walks a datagram with msgLen) into m. truncated says the kernel cut
// the datagram to b (MSG_TRUNC): what b holds is parsed, and an attribute
// cut short is absent.
func parseMsg(b []byte, truncated bool, m *pktMsg) msgKind {
	*m = pktMsg{}
	n := hdrLen(b, truncated)
	if n == 0 {
		return msgBad
	}
	typ := binary.NativeEndian.Uint16(b[4:])
	m.seq = binary.NativeEndian.Uint32(b[8:])
	switch typ {
	case nlmsgError:
		// struct nlmsgerr: int error; struct nlmsghdr msg; ...
		if n < nlmsgHdrLen+4 {
			return msgBad
		}
		m.errno = -int32(binary.NativeEndian.Uint32(b[nlmsgHdrLen:]))
		if n >= nlmsgHdrLen+4+nlmsgHdrLen {
			// The seq of the request it answers.
			m.seq = binary.NativeEndian.Uint32(b[nlmsgHdrLen+4+8:])
		}
		return msgError
	case nfnlSubsysQueueMsg<<8 | nfqnlMsgPkt:
	default:
		return msgOther
	}
	if n < nlmsgHdrLen+nfgenHdrLen {
		return msgBad
	}
	haveID := false
	for off := nlmsgHdrLen + nfgenHdrLen; off+nlaHdrLen <= n; {
		alen := int(binary.NativeEndian.Uint16(b[off:]))
		if alen < nlaHdrLen || off+alen > n {
			break // a truncated or malformed attribute ends the walk
		}
		v := b[off+nlaHdrLen : off+alen]
		switch binary.NativeEndian.Uint16(b[off+2:]) & nlaTypeMask {
		case nfqaPacketHdr:
			if len(v) >= 7 {
				m.id = binary.BigEndian.Uint32(v)
				m.hwProto = binary.BigEndian.Uint16(v[4:])
				m.hook = v[6]
				haveID = true
			}
		case nfqaMark:
			if len(v) >= 4 {
				m.mark = binary.BigEndian.Uint32(v)
			}
		case nfqaPayload:
			m.payOff, m.payLen, m.hasPayload = off+nlaHdrLen, len(v), true
		case nfqaCapLen:
			if len(v) >= 4 {
				m.capLen = binary.BigEndian.Uint32(v)
			}
		case nfqaSkbInfo:
			if len(v) >= 4 {
				m.skbInfo = binary.BigEndian.Uint32(v)
			}
		}
		off += (alen + 3) &^ 3 // NLA_ALIGN
	}
	if !haveID {
		return msgBad
	}
	return msgPacket
}

// msgLen is the aligned length of the message at the start of b (0 if b does
// not hold a valid header), for walking a datagram of several messages.
func msgLen(b []byte, truncated bool) int {
	n := hdrLen(b, truncated)
	if n == 0 {
		return 0
	}
	return min((n+3)&^3, len(b)) // NLMSG_ALIGN
}

// hdrLen is the length the message at the start of b claims, clamped to b
// when the datagram was truncated; 0 when b holds no valid header.
func hdrLen(b []byte, truncated bool) int {
	if len(b) < nlmsgHdrLen {
		return 0
	}
	n := int(binary.NativeEndian.Uint32(b))
	if n > len(b) && truncated {
		n = len(b)
	}
	if n < nlmsgHdrLen || n > len(b) {
		return 0
	}
	return n
}
