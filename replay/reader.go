// Package replay runs packet captures (pcap or pcapng) through the same
// decision engine the daemon uses, with the capture's timestamps as the
// clock, and renders the verdicts in the stable format of SPEC section 8.
//
// The daemon and replay are two thin drivers over one engine: both hand an
// IP packet, its length on the wire and a time to policy.Engine.Decide, so
// identical configuration, packets and times give identical verdicts.
//
// It imports the engine packages, flowfilter and gopacket (for reading captures only, never on the daemon's path); never nfq, metrics or cmd.
package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Link types this reader understands (tcpdump.org/linktypes.html). Several
// numbers mean "raw IP": 101 is LINKTYPE_RAW; 12 and 14 are the DLT values
// some systems write for it; 228 and 229 are raw IPv4 and raw IPv6.
const (
	linkNull     = 0 // BSD loopback: 4-byte address family, the writer's byte order
	linkEthernet = 1
	linkPPP      = 9 // PPP (RFC 1661), with or without RFC 1662 address/control
	linkRaw12    = 12
	linkRaw14    = 14
	linkPPPHDLC  = 50 // PPP in HDLC-like framing (RFC 1662) or Cisco HDLC
	linkRaw      = 101
	linkLoop     = 108 // OpenBSD loopback: 4-byte address family, network byte order
	linkSLL      = 113
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276
)

// linkNames lists the link types replay reads, for error messages.
const linkNames = "Ethernet (with VLAN tags), raw IP, Linux cooked (SLL, SLL2), BSD loopback (NULL, LOOP) and PPP"

// BSD address family numbers in the 4-byte header of DLT_NULL and DLT_LOOP
// (libpcap's pcap/bsd-af.h): AF_INET is 2 everywhere, AF_INET6 differs by
// system.
const (
	afInet         = 2
	afInet6BSD     = 24 // NetBSD, OpenBSD, BSD/OS
	afInet6FreeBSD = 28 // FreeBSD, DragonFly BSD
	afInet6Darwin  = 30 // macOS, iOS
)

// PPP protocol numbers (RFC 1661 2, IANA PPP DLL protocol numbers).
const (
	pppIPv4 = 0x0021
	pppIPv6 = 0x0057
)

// EtherTypes read from link headers.
const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86DD
	etherVLAN  = 0x8100 // IEEE 802.1Q
	etherQinQ  = 0x88A8 // IEEE 802.1ad
	etherQinQ2 = 0x9100 // pre-standard QinQ, still seen in captures
)

// maxVLANTags bounds the tag stack we strip (802.1ad double tagging plus
// one more); a frame with more tags is reported as not IP.
const maxVLANTags = 3

// ErrUnsupportedLinkType is returned when a capture's link type is not one
// of Ethernet, raw IP, Linux cooked (SLL, SLL2), BSD loopback (NULL, LOOP)
// or PPP.
var ErrUnsupportedLinkType = errors.New("unsupported link type")

// Packet is one frame of a capture, with its link header stripped.
type Packet struct {
	Index int       // 1-based position in the capture
	Time  time.Time // capture timestamp
	// IP is the IP packet (starting at the IP header), or nil when the
	// frame does not carry IPv4 or IPv6 (ARP, LLDP, ...). Link-layer
	// padding after the IP packet is removed, as the kernel does before
	// netfilter sees it.
	IP []byte
	// WireLen is the IP packet's length on the wire when IP holds only a
	// prefix of it (the capture's snaplen cut the frame), else 0: exactly
	// the wireLen policy.Engine.Process and packet.Decode take.
	WireLen int
	// LinkType is the frame's link type.
	LinkType layers.LinkType
}

// packetSource is what both pcapgo readers provide.
type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Reader reads the frames of a pcap or pcapng capture.
type Reader struct {
	src      packetSource
	ng       bool
	linkType layers.LinkType // of a pcap file; pcapng frames carry their own
	n        int
}

// pcapngMagic is the block type of a pcapng Section Header Block, the first
// four bytes of every pcapng file (a palindrome, so byte order is moot).
const pcapngMagic = 0x0A0D0D0A

// NewReader detects the format of the capture in r by its magic number and
// reads its header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			if len(magic) == 0 {
				return nil, errors.New("the capture is empty (0 bytes)")
			}
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading the capture header: %w", err)
	}
	if binary.LittleEndian.Uint32(magic) == pcapngMagic {
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("reading the pcapng section header: %w", err)
		}
		return &Reader{src: ng, ng: true}, nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the pcap file header is cut short: %w", io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("not a pcap or pcapng capture (%w)", err)
	}
	lt := pr.LinkType()
	if !supported(lt) {
		return nil, fmt.Errorf("%w %d (%s); replay reads %s captures", ErrUnsupportedLinkType, uint32(lt), lt, linkNames)
	}
	return &Reader{src: pr, linkType: lt}, nil
}

func supported(lt layers.LinkType) bool {
	switch lt {
	case linkEthernet, linkRaw12, linkRaw14, linkRaw, linkSLL, linkIPv4, linkIPv6, linkSLL2,
		linkNull, linkLoop, linkPPP, linkPPPHDLC:
		return true
	}
	return false
}

// Next returns the next frame, or io.EOF after the last one. A capture cut
// short (a truncated file) gives an error wrapping io.ErrUnexpectedEOF.
func (r *Reader) Next() (Packet, error) {
	data, ci, err := r.src.ReadPacketData()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Packet{}, io.EOF
		}
		return Packet{}, fmt.Errorf("reading frame %d: %w", r.n+1, err)
	}
	r.n++
	lt := r.linkType
	if r.ng {
		if len(ci.AncillaryData) > 0 {
			lt, _ = ci.AncillaryData[0].(layers.LinkType)
		}
		if !supported(lt) {
			return Packet{}, fmt.Errorf("frame %d: %w %d (%s); replay reads %s captures", r.n, ErrUnsupportedLinkType, uint32(lt), lt, linkNames)
		}
	}
	if len(data) > ci.CaptureLength {
		data = data[:ci.CaptureLength]
	}
	p := Packet{Index: r.n, Time: ci.Timestamp.UTC(), LinkType: lt}
	ip, hdr := stripLink(lt, data)
	if ip == nil {
		return p, nil
	}
	// The frame's original length, minus the link header, is the IP
	// packet's length on the wire (plus any link padding, trimmed below).
	wire := len(ip)
	if ci.Length > len(data) {
		wire = ci.Length - hdr
	}
	if n := ipLen(ip); n > 0 && n < wire {
		wire = n // link padding (Ethernet's 60-byte minimum frame)
	}
	if len(ip) > wire {
		ip = ip[:wire]
	}
	p.IP = ip
	if wire > len(ip) {
		p.WireLen = wire
	}
	return p, nil
}

// stripLink returns the IP packet inside a frame of link type lt and the
// length of the link header, or nil when the frame carries no IPv4/IPv6.
func stripLink(lt layers.LinkType, b []byte) (ip []byte, hdr int) {
	var etype uint16
	switch lt {
	case linkRaw, linkRaw12, linkRaw14, linkIPv4, linkIPv6:
		if len(b) == 0 || (b[0]>>4 != 4 && b[0]>>4 != 6) {
			return nil, 0
		}
		return b, 0
	case linkEthernet:
		// dst(6) src(6) ethertype(2), with 802.1Q/802.1ad tags of 4 bytes
		// (TPID, TCI) before the real ethertype.
		hdr = 14
		if len(b) < hdr {
			return nil, 0
		}
		etype = binary.BigEndian.Uint16(b[12:14])
		for i := 0; i < maxVLANTags && (etype == etherVLAN || etype == etherQinQ || etype == etherQinQ2); i++ {
			if len(b) < hdr+4 {
				return nil, 0
			}
			etype = binary.BigEndian.Uint16(b[hdr+2 : hdr+4])
			hdr += 4
		}
	case linkSLL:
		// packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2).
		hdr = 16
		if len(b) < hdr {
			return nil, 0
		}
		etype = binary.BigEndian.Uint16(b[14:16])
	case linkSLL2:
		// protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1)
		// addr len(1) addr(8).
		hdr = 20
		if len(b) < hdr {
			return nil, 0
		}
		etype = binary.BigEndian.Uint16(b[0:2])
	case linkNull, linkLoop:
		return stripLoopback(lt, b)
	case linkPPP, linkPPPHDLC:
		return stripPPP(lt, b)
	default:
		return nil, 0
	}
	switch etype {
	case etherIPv4, etherIPv6:
		return b[hdr:], hdr
	}
	return nil, 0
}

// stripLoopback strips the 4-byte address family header of BSD loopback
// captures. DLT_NULL writes the family in the byte order of the capturing
// host, DLT_LOOP in network byte order; as libpcap and Wireshark do, a value
// with bits set in its upper half is read the other way round, so a capture
// made on a host of the other endianness (or a DLT_LOOP writer that got it
// wrong) still reads.
func stripLoopback(lt layers.LinkType, b []byte) (ip []byte, hdr int) {
	if len(b) < 4 {
		return nil, 0
	}
	var af uint32
	if lt == linkLoop {
		af = binary.BigEndian.Uint32(b)
	} else {
		af = binary.LittleEndian.Uint32(b)
	}
	if af&0xFFFF0000 != 0 {
		af = bits.ReverseBytes32(af)
	}
	switch af {
	case afInet, afInet6BSD, afInet6FreeBSD, afInet6Darwin:
		return b[4:], 4
	}
	return nil, 0
}

// stripPPP strips the PPP header of LINKTYPE_PPP (9) and LINKTYPE_PPP_HDLC
// (50) frames (tcpdump.org/linktypes.html):
//
//   - RFC 1662 3.1: HDLC-like framing starts with the address 0xFF and the
//     control 0x03; LINKTYPE_PPP frames may carry them or start with the
//     protocol field.
//   - RFC 1661 2 and 6.5: the protocol field is two bytes, or one when
//     Protocol-Field-Compression was negotiated (values are odd in their
//     low byte, and a one-byte field is recognised by its low bit set).
//     0x0021 is IPv4, 0x0057 IPv6.
//   - LINKTYPE_PPP_HDLC also holds Cisco HDLC (RFC 1547 4.3.1): address
//     0x0F (unicast) or 0x8F (broadcast), control 0x00, then an EtherType.
func stripPPP(lt layers.LinkType, b []byte) (ip []byte, hdr int) {
	if len(b) >= 2 && b[0] == 0xFF && b[1] == 0x03 {
		hdr = 2
	} else if lt == linkPPPHDLC {
		if len(b) < 4 || (b[0] != 0x0F && b[0] != 0x8F) {
			return nil, 0
		}
		switch binary.BigEndian.Uint16(b[2:4]) {
		case etherIPv4, etherIPv6:
			return b[4:], 4
		}
		return nil, 0
	}
	if len(b) <= hdr {
		return nil, 0
	}
	var proto uint16
	if b[hdr]&1 == 1 {
		proto = uint16(b[hdr]) // compressed: one byte
		hdr++
	} else {
		if len(b) < hdr+2 {
			return nil, 0
		}
		proto = binary.BigEndian.Uint16(b[hdr : hdr+2])
		hdr += 2
	}
	switch proto {
	case pppIPv4, pppIPv6:
		return b[hdr:], hdr
	}
	return nil, 0
}

// ipLen returns the IP packet's length from its header (IPv4 total length,
// IPv6 40 + payload length), or 0 when the header does not say (too short,
// zero length fields of GSO/jumbo packets, not IP).
func ipLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	switch b[0] >> 4 {
	case 4:
		// Below the minimum header the field is a lie; leave it to
		// packet.Decode to call the packet malformed.
		if len(b) >= 4 {
			if n := int(binary.BigEndian.Uint16(b[2:4])); n >= 20 {
				return n
			}
		}
	case 6:
		if len(b) >= 6 {
			if n := int(binary.BigEndian.Uint16(b[4:6])); n > 0 {
				return 40 + n
			}
		}
	}
	return 0
}
