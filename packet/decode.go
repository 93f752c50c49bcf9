package packet

import (
	"encoding/binary"

	"github.com/rstguard/rstguard/seqnum"
)

// IP protocol numbers and IPv6 extension header types (IANA "Assigned
// Internet Protocol Numbers"; RFC 8200 4).
const (
	protoHopByHop = 0
	protoTCP      = 6
	protoRouting  = 43
	protoFragment = 44
	protoESP      = 50
	protoAH       = 51
	protoNoNext   = 59
	protoDestOpts = 60
)

// maxExtHeaders bounds the IPv6 extension header walk. RFC 8200 4.1 lists at
// most 6 distinct headers in the recommended order (destination options may
// appear twice); 8 leaves room for an AH and a second routing header while
// keeping a hostile chain from costing more than a few nanoseconds.
const maxExtHeaders = 8

// TCP option kinds (IANA "TCP Option Kind Numbers").
const (
	optEOL       = 0
	optNOP       = 1
	optMSS       = 2  // RFC 9293 3.2
	optWScale    = 3  // RFC 7323 2.2
	optSACKPerm  = 4  // RFC 2018 2
	optSACK      = 5  // RFC 2018 3
	optTimestamp = 8  // RFC 7323 3.2
	optTFO       = 34 // RFC 7413 4.1.1
	optExp       = 254
	tfoExpMagic  = 0xF989 // RFC 7413 4.1.1 experimental TFO, as Linux sends it (TCPOPT_FASTOPEN_MAGIC)

	// alignedTS is NOP, NOP, timestamps kind and length: the first word of
	// a 12-octet option block holding only timestamps.
	alignedTS = optNOP<<24 | optNOP<<16 | optTimestamp<<8 | 10
)

// Decode parses b, an IPv4 or IPv6 packet starting at the IP header, into p.
// wireLen is the packet's length on the wire when the caller holds only a
// prefix of it (NFQUEUE's copy range; the kernel's NFQA_CAP_LEN), or 0 when b
// is the whole packet. Decode never allocates and never panics; every
// outcome is a Kind.
//
// The wire length is wireLen if wireLen > 0, else len(b); bytes of b beyond
// it are ignored. Lengths are checked against the IP length fields first and
// against len(b) second:
//   - a header that the IP length fields (or the wire length) cannot hold is
//     KindMalformed;
//   - a header that the IP length fields hold but that lies beyond len(b) is
//     KindTruncated: the packet is fine, our copy of it is too short. Decode
//     fills in what it could read.
//
// IPv4 (RFC 791 3.1): IHL below 5, a total length below IHL*4 or above the
// wire length is malformed. A total length of 0 is taken as the wire length:
// that is how Linux GSO and BIG TCP (iph_totlen) pass packets over 64 KiB.
// A fragment with a non-zero offset is KindFragment; a first fragment is
// parsed like any packet, and one too short to hold the whole TCP header is
// malformed (RFC 1858 3.1, tiny fragments).
//
// IPv6 (RFC 8200 4): hop-by-hop, routing, fragment, destination options and
// AH (RFC 4302 2.2) headers are walked, at most maxExtHeaders of them; a
// longer chain, or one that runs past the payload, is malformed. ESP and "no
// next header" are KindNotTCP (nothing we can read follows). A payload length
// of 0 (jumbogram, RFC 2675, or BIG TCP) is taken as the wire length. We do
// not insist that hop-by-hop comes first (RFC 8200 4.1 says it must; the
// endpoint's stack enforces that, not a middlebox).
//
// TCP (RFC 9293 3.1): a data offset below 5 or past the IP payload is
// malformed. Options are parsed on every segment (see parseOptions).
// PayloadLen comes from the IP length fields, never from len(b).
func Decode(b []byte, wireLen int, p *Parsed) {
	*p = Parsed{}
	wire := len(b)
	if wireLen > 0 {
		wire = wireLen
		if wire < len(b) {
			b = b[:wire]
		}
	}
	if len(b) == 0 {
		p.Kind = KindMalformed
		return
	}
	switch b[0] >> 4 {
	case 4:
		decode4(b, wire, p)
	case 6:
		decode6(b, wire, p)
	default:
		p.Kind = KindMalformed
	}
}

func decode4(b []byte, wire int, p *Parsed) {
	p.IPVersion = 4
	if wire < 20 {
		p.Kind = KindMalformed
		return
	}
	if len(b) < 20 {
		p.Kind = KindTruncated
		return
	}
	p.HaveIP, p.TTL = true, b[8]
	p.Src[10], p.Src[11] = 0xff, 0xff
	p.Dst[10], p.Dst[11] = 0xff, 0xff
	copy(p.Src[12:], b[12:16])
	copy(p.Dst[12:], b[16:20])
	hl := int(b[0]&0x0f) * 4
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n == 0 {
		n = wire // GSO / BIG TCP: iph_totlen in include/net/ip.h
	}
	if hl < 20 || n < hl || n > wire {
		p.Kind = KindMalformed
		return
	}
	p.Proto = b[9]
	p.IPHeaderLen = uint16(hl)
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		p.Kind = KindFragment // RFC 791: fragment offset, in 8-octet units
		return
	}
	if p.Proto != protoTCP {
		p.Kind = KindNotTCP
		return
	}
	decodeTCP(b, hl, n, p)
}

func decode6(b []byte, wire int, p *Parsed) {
	p.IPVersion = 6
	if wire < 40 {
		p.Kind = KindMalformed
		return
	}
	if len(b) < 40 {
		p.Kind = KindTruncated
		return
	}
	p.HaveIP, p.TTL = true, b[7]
	copy(p.Src[:], b[8:24])
	copy(p.Dst[:], b[24:40])
	n := 40 + int(binary.BigEndian.Uint16(b[4:6]))
	if n == 40 {
		n = wire // RFC 2675 jumbogram, Linux BIG TCP (ipv6_payload_len)
	}
	if n > wire {
		p.Kind = KindMalformed
		return
	}
	nh := b[6]
	off := 40
	for i := 0; ; i++ {
		var hl int
		switch nh {
		case protoHopByHop, protoRouting, protoDestOpts, protoFragment, protoAH:
		case protoTCP:
			p.Proto = nh
			p.IPHeaderLen = uint16(off)
			decodeTCP(b, off, n, p)
			return
		default: // ESP, no next header, any other upper layer
			p.Proto = nh
			p.IPHeaderLen = uint16(off)
			p.Kind = KindNotTCP
			return
		}
		if i == maxExtHeaders || off+8 > n {
			// Every extension header is at least 8 octets.
			p.Kind = KindMalformed
			return
		}
		if off+8 > len(b) {
			p.Kind = KindTruncated
			return
		}
		switch nh {
		case protoFragment:
			// RFC 8200 4.5: fixed 8 octets; offset in the top 13 bits.
			hl = 8
			if binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 != 0 {
				p.Proto = b[off]
				p.IPHeaderLen = uint16(off + hl)
				p.Kind = KindFragment
				return
			}
		case protoAH:
			hl = (int(b[off+1]) + 2) * 4 // RFC 4302 2.2: 4-octet units, minus 2
		default:
			hl = (int(b[off+1]) + 1) * 8 // RFC 8200 4.3-4.6: 8-octet units, not counting the first 8
		}
		if off+hl > n {
			p.Kind = KindMalformed
			return
		}
		nh = b[off]
		off += hl
	}
}

// decodeTCP decodes the TCP header at b[off:], in an IP packet whose length
// (from its header) is n, with off <= n <= the wire length.
func decodeTCP(b []byte, off, n int, p *Parsed) {
	if off+20 > n {
		p.Kind = KindMalformed // includes RFC 1858 tiny first fragments
		return
	}
	if off+20 > len(b) {
		p.Kind = KindTruncated
		return
	}
	t := b[off : off+20 : off+20]
	p.SrcPort = binary.BigEndian.Uint16(t[0:2])
	p.DstPort = binary.BigEndian.Uint16(t[2:4])
	p.Seq = seqnum.Value(binary.BigEndian.Uint32(t[4:8]))
	p.Ack = seqnum.Value(binary.BigEndian.Uint32(t[8:12]))
	p.Flags = Flags(binary.BigEndian.Uint16(t[12:14]) & 0x0fff)
	p.Window = binary.BigEndian.Uint16(t[14:16])
	hl := int(t[12]>>4) * 4
	if hl < 20 || off+hl > n {
		p.Kind = KindMalformed
		return
	}
	p.TCPHeaderLen = uint16(hl)
	p.PayloadLen = uint32(n - off - hl)
	if off+hl > len(b) {
		p.Kind = KindTruncated
		return
	}
	o := b[off+20 : off+hl : off+hl]
	if len(o) == 12 && binary.BigEndian.Uint32(o[0:4]) == alignedTS {
		// The layout every Linux segment after the handshake carries (RFC
		// 7323 Appendix A); Linux tcp_fast_parse_options takes the same
		// shortcut.
		p.Opts = OptTimestamp
		p.TSVal = binary.BigEndian.Uint32(o[4:8])
		p.TSEcr = binary.BigEndian.Uint32(o[8:12])
	} else if len(o) > 0 && !p.parseOptions(o) {
		p.Kind = KindMalformed
		return
	}
	p.Kind = KindTCP
}

// parseOptions decodes the TCP options in o into p and reports whether the
// option list is well formed.
//
// RFC 9293 3.1 and RFC 1122 4.2.2.5 ask a receiver to be prepared for any
// option and to handle an illegal option length "without crashing". Linux
// tcp_parse_options stops parsing at a bad length and keeps the segment; we
// call a length below 2 or one that overruns the header malformed instead
// (SPEC 5: "option lengths that overrun"), because the segment is either
// corrupt or crafted, and an endpoint that stopped parsing there would see a
// different segment than we judged. A known option with the wrong fixed
// length (an MSS option of length 3, say) is skipped by its length and
// ignored, as Linux does, without failing the packet. Options after EOL are
// not read (RFC 9293 3.1: EOL marks the end of the list).
func (p *Parsed) parseOptions(o []byte) bool {
	for len(o) > 0 {
		kind := o[0]
		if kind == optEOL {
			return true
		}
		if kind == optNOP {
			o = o[1:]
			continue
		}
		if len(o) < 2 {
			return false
		}
		l := int(o[1])
		if l < 2 || l > len(o) {
			return false
		}
		v := o[2:l:l]
		o = o[l:]
		switch kind {
		case optMSS:
			if len(v) == 2 {
				p.Opts |= OptMSS
				p.MSS = binary.BigEndian.Uint16(v)
			}
		case optWScale:
			if len(v) == 1 {
				// RFC 7323 2.3: a shift above 14 is used as 14 (and
				// logged, by the endpoint); clamp it here, once.
				p.Opts |= OptWScale
				p.WScale = min(v[0], MaxWScale)
			}
		case optSACKPerm:
			if len(v) == 0 {
				p.Opts |= OptSACKPerm
			}
		case optSACK:
			// RFC 2018 3: 1 to 4 blocks of two 32-bit edges; Linux
			// accepts any whole number of blocks that fits.
			if len(v) >= 8 && len(v)%8 == 0 {
				edge := seqnum.Value(binary.BigEndian.Uint32(v[4:8]))
				for v = v[8:]; len(v) >= 8; v = v[8:] {
					if e := seqnum.Value(binary.BigEndian.Uint32(v[4:8])); edge.LessThan(e) {
						edge = e
					}
				}
				p.Opts |= OptSACK
				p.SACKEdge = edge
			}
		case optTimestamp:
			if len(v) == 8 {
				p.Opts |= OptTimestamp
				p.TSVal = binary.BigEndian.Uint32(v[0:4])
				p.TSEcr = binary.BigEndian.Uint32(v[4:8])
			}
		case optTFO:
			if tfoCookieLen(len(v)) {
				p.Opts |= OptTFOCookie
			}
		case optExp:
			if len(v) >= 2 && binary.BigEndian.Uint16(v) == tfoExpMagic {
				if tfoCookieLen(len(v) - 2) {
					p.Opts |= OptTFOCookie
				}
			} else {
				p.Opts |= OptUnknown
			}
		default:
			p.Opts |= OptUnknown
		}
	}
	return true
}

// tfoCookieLen reports whether n is a valid TFO cookie length: 0 (a cookie
// request) or 4 to 16 octets, even (RFC 7413 4.1.1; Linux
// tcp_parse_fastopen_option).
func tfoCookieLen(n int) bool {
	return n == 0 || n >= 4 && n <= 16 && n%2 == 0
}

// String renders f as the replay output does (SPEC 8): the letters S F R P A
// U E C for the classic flags, in that order, then N for the AE bit and X if
// any reserved bit is set; no flags is "". Combinations of the classic flags
// come from a table built at init and cost nothing; with AE or a reserved
// bit it costs one allocation. It is not on the per-packet path.
func (f Flags) String() string {
	if f&^0xff == 0 {
		return classicFlagStrings[f]
	}
	return f.format()
}

// classicFlagStrings holds String for the 256 combinations of the classic
// flags.
var classicFlagStrings = func() (t [256]string) {
	for i := range t {
		t[i] = Flags(i).format()
	}
	return t
}()

func (f Flags) format() string {
	const letters = "SFRPAUEC"
	order := [...]Flags{SYN, FIN, RST, PSH, ACK, URG, ECE, CWR}
	var buf [10]byte
	n := 0
	for i, m := range order {
		if f&m != 0 {
			buf[n] = letters[i]
			n++
		}
	}
	if f&AE != 0 {
		buf[n] = 'N'
		n++
	}
	if f&Reserved != 0 {
		buf[n] = 'X'
		n++
	}
	return string(buf[:n])
}
