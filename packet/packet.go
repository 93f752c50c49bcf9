// Package packet decodes IPv4/IPv6 and TCP headers into a caller-owned
// Parsed value without allocating (see Decode).
//
// Per-packet problems are never errors: Decode classifies every input into a
// Kind, and the policy turns that into a verdict and a reason.
//
// It imports only seqnum and the standard library (no conntrack, no policy, nothing with I/O).
package packet

import (
	"net/netip"

	"github.com/rstguard/rstguard/seqnum"
)

// Kind classifies a decoded packet.
type Kind uint8

const (
	// KindTCP is a TCP segment whose IP and TCP headers decoded completely.
	KindTCP Kind = iota
	// KindNotTCP is a well-formed IP packet that does not carry TCP.
	KindNotTCP
	// KindFragment is a non-first fragment (IPv4 offset > 0 or IPv6 fragment
	// header with offset > 0); it carries no TCP header to judge.
	KindFragment
	// KindMalformed is a packet whose IP or TCP header is inconsistent:
	// truncated on the wire, IHL below 5, data offset below 5 or past the
	// packet, an option whose length overruns the header.
	KindMalformed
	// KindTruncated is a packet whose headers are longer than the bytes the
	// kernel copied to us (the NFQUEUE copy range), while the IP length says
	// the packet itself is complete. It cannot be judged and is accepted.
	KindTruncated
)

// TCP header flags, as a 12-bit field: the 8 classic flags in the low byte,
// the AE bit (RFC 3540, now "AE" in RFC 9293 3.1) and the three reserved bits
// above it (bits 8..11 of the flags field).
type Flags uint16

const (
	FIN Flags = 1 << 0
	SYN Flags = 1 << 1
	RST Flags = 1 << 2
	PSH Flags = 1 << 3
	ACK Flags = 1 << 4
	URG Flags = 1 << 5
	ECE Flags = 1 << 6
	CWR Flags = 1 << 7
	AE  Flags = 1 << 8
	// Reserved covers the three remaining reserved bits (RFC 9293 3.1 "Rsrvd").
	Reserved Flags = 0x7 << 9

	// ECNReserved are the bits RFC 3360 says a middlebox must never reset
	// or drop a SYN for: ECN's ECE and CWR (RFC 3168), AE and the reserved
	// bits.
	ECNReserved = ECE | CWR | AE | Reserved
)

// Has reports whether all bits of m are set.
func (f Flags) Has(m Flags) bool { return f&m == m }

// Any reports whether any bit of m is set.
func (f Flags) Any(m Flags) bool { return f&m != 0 }

// Option presence bits in Parsed.Opts.
type OptBits uint8

const (
	OptMSS       OptBits = 1 << 0
	OptWScale    OptBits = 1 << 1
	OptSACKPerm  OptBits = 1 << 2
	OptTimestamp OptBits = 1 << 3
	OptSACK      OptBits = 1 << 4
	OptTFOCookie OptBits = 1 << 5 // kind 34 (RFC 7413) or experimental 254/0xF989
	OptUnknown   OptBits = 1 << 6 // any option kind we do not know, skipped safely
)

// MaxWScale is the largest window-scale shift RFC 7323 2.3 allows; larger
// values are clamped here, once, at parse time.
const MaxWScale = 14

// Parsed is one decoded packet. Decode fills it; the caller owns it and may
// reuse it for the next packet. It holds no pointers, so a Parsed on the stack
// never escapes.
//
// Every field is valid when Kind is KindTCP. For the other kinds, Decode
// fills in what it read before it stopped and leaves the rest zero; the
// "valid iff" notes say when a field was read. (Policy only looks past Kind
// for KindTCP; logs may show the rest.)
type Parsed struct {
	Kind      Kind
	IPVersion uint8 // 4 or 6; valid iff the first nibble was 4 or 6 (0 otherwise)
	// Proto is the transport protocol: the upper-layer header after any
	// IPv6 extension headers, or for KindFragment the protocol the
	// fragment belongs to. Valid iff IPHeaderLen != 0.
	Proto uint8
	// HaveIP is true when the fixed IP header (20 or 40 octets) was
	// copied: TTL, Src and Dst are then valid, whatever the Kind (a log
	// line or a replay record can name the hosts of a malformed packet).
	HaveIP bool
	// TTL is the IPv4 TTL or the IPv6 hop limit the packet arrived with.
	// Valid iff HaveIP.
	TTL uint8

	// Src and Dst are the IP addresses; IPv4 addresses are stored in the
	// IPv4-mapped IPv6 form (::ffff:a.b.c.d), as netip.Addr.As16 returns them.
	// Valid iff HaveIP.
	Src, Dst [16]byte
	// Ports, Flags, Seq, Ack and Window are valid for KindTCP. For
	// KindTruncated and KindMalformed they hold the fixed 20-octet TCP
	// header if Decode got that far (a bad data offset or option), else
	// zero: good for a log line, not for a decision.
	SrcPort, DstPort uint16

	Flags  Flags        // the 12-bit flags field: classic flags, AE, reserved
	Seq    seqnum.Value // SEG.SEQ
	Ack    seqnum.Value // SEG.ACK, whether or not the ACK flag is set
	Window uint16       // raw, unscaled window field
	// PayloadLen is the TCP payload length from the IP length fields (not
	// from len(b): NFQUEUE may copy only the headers). Valid iff
	// TCPHeaderLen != 0.
	PayloadLen uint32

	IPHeaderLen  uint16 // IPv4 IHL*4, or 40 plus all IPv6 extension headers; 0 if not reached
	TCPHeaderLen uint16 // data offset * 4; 0 unless the data offset was read and fits the IP payload

	// Options (decoded for every segment; cheap: they sit in the header we
	// already touched). Each value is valid iff its bit is set in Opts.
	// An option with the wrong length for its kind is ignored (its bit stays
	// clear); OptUnknown records that some option kind we do not know was
	// skipped. A repeated option: the last one wins, as in Linux.
	Opts     OptBits
	MSS      uint16
	WScale   uint8 // shift, clamped to MaxWScale; valid if Opts&OptWScale
	TSVal    uint32
	TSEcr    uint32
	SACKEdge seqnum.Value // highest right edge among SACK blocks; valid if Opts&OptSACK
}

// SegLen is the sequence space the segment occupies: payload plus one for
// SYN and one for FIN (RFC 9293 3.4, SEG.LEN).
func (p *Parsed) SegLen() seqnum.Size {
	n := seqnum.Size(p.PayloadLen)
	if p.Flags&SYN != 0 {
		n++
	}
	if p.Flags&FIN != 0 {
		n++
	}
	return n
}

// SrcAddrPort and DstAddrPort convert the addresses at the edges (logging,
// replay output); they are not used on the per-packet path.
func (p *Parsed) SrcAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(addr(p.IPVersion, p.Src), p.SrcPort)
}

// DstAddrPort: see SrcAddrPort.
func (p *Parsed) DstAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(addr(p.IPVersion, p.Dst), p.DstPort)
}

func addr(v uint8, a [16]byte) netip.Addr {
	x := netip.AddrFrom16(a)
	if v == 4 {
		return x.Unmap()
	}
	return x
}
