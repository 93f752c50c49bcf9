// Package replay runs packet captures (pcap or pcapng) through the same
// decision engine the daemon uses, with the capture's timestamps as the
// clock, and renders the verdicts in the stable format of SPEC section 8.
//
// The daemon and replay are two thin drivers over one engine: both hand an
// IP packet, its length on the wire and a time to policy.Engine.Process, so
// identical configuration, packets and times give identical verdicts.
package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Link types this reader understands (tcpdump.org/linktypes.html). Several
// numbers mean "raw IP": 101 is LINKTYPE_RAW; 12 and 14 are the DLT values
// some systems write for it; 228 and 229 are raw IPv4 and raw IPv6.
const (
	linkEthernet = 1
	linkRaw12    = 12
	linkRaw14    = 14
	linkRaw      = 101
	linkSLL      = 113
	linkIPv4     = 228
	linkIPv6     = 229
	linkSLL2     = 276
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
// of Ethernet, raw IP or Linux cooked (SLL, SLL2).
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
		return nil, fmt.Errorf("%w %d (%s); replay reads Ethernet, raw IP and Linux cooked (SLL, SLL2) captures", ErrUnsupportedLinkType, uint32(lt), lt)
	}
	return &Reader{src: pr, linkType: lt}, nil
}

func supported(lt layers.LinkType) bool {
	switch lt {
	case linkEthernet, linkRaw12, linkRaw14, linkRaw, linkSLL, linkIPv4, linkIPv6, linkSLL2:
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
			return Packet{}, fmt.Errorf("frame %d: %w %d (%s); replay reads Ethernet, raw IP and Linux cooked (SLL, SLL2) captures", r.n, ErrUnsupportedLinkType, uint32(lt), lt)
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
	default:
		return nil, 0
	}
	switch etype {
	case etherIPv4, etherIPv6:
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
