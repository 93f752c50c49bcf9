// Package craft builds IPv4 and IPv6 TCP packets, byte for byte, for
// tests, the lab and attack injection (production code: the lab forges
// attacks with it, so bad input is an error, never a panic). Packets carry correct IP and TCP
// checksums, so they can be sent through raw sockets to real Linux stacks.
//
// It is hand-written with encoding/binary rather than gopacket's layers
// because it must set the AE and reserved TCP bits and write malformed
// extension chains on purpose; its tests cross-check it against gopacket's
// decoder.
package craft

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/rstguard/rstguard/packet"
)

// IPv6 extension header types (RFC 8200 4) and protocol numbers.
const (
	HopByHop = 0
	TCPProto = 6
	Routing  = 43
	FragHdr  = 44
	AH       = 51
	DestOpts = 60
)

// TCP describes one TCP segment in an IP packet. The address family comes
// from Src and Dst (both IPv4, or both IPv6; an IPv4-mapped address counts as
// IPv4).
type TCP struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    packet.Flags // all 12 bits are written, AE and reserved included
	Window   uint16
	Urgent   uint16
	// Options are the raw TCP options (see MSS, WScale, ...); Bytes pads
	// them with zeros (EOL) to a multiple of 4 octets.
	Options []byte
	Payload []byte
	TTL     uint8  // IPv4 TTL or IPv6 hop limit; 0 means 64
	ID      uint16 // IPv4 identification
	// IPv6Ext is a raw extension header chain inserted between the IPv6
	// header and TCP (see Chain); IPv6ExtType is the type of its first
	// header. Bytes walks the chain and sets the last header's Next Header
	// to TCP; a chain it cannot walk is inserted as is.
	IPv6Ext     []byte
	IPv6ExtType uint8
}

// Bytes is Build for tests, whose segments are literals: it panics on an
// error.
func (t TCP) Bytes() []byte {
	b, err := t.Build()
	if err != nil {
		panic(err)
	}
	return b
}

// Build returns the complete IP packet with correct checksums, or an error
// if Src and Dst are not valid addresses of one family, the options exceed
// the 40 octets a TCP header holds, or the packet exceeds 65535 octets.
func (t TCP) Build() ([]byte, error) {
	opts := t.Options
	if r := len(opts) % 4; r != 0 {
		opts = append(opts[:len(opts):len(opts)], make([]byte, 4-r)...)
	}
	if len(opts) > 40 {
		return nil, fmt.Errorf("craft: %d octets of TCP options, at most 40 fit in the header", len(opts))
	}
	thl := 20 + len(opts)
	tcp := make([]byte, thl+len(t.Payload))
	binary.BigEndian.PutUint16(tcp[0:], t.Src.Port())
	binary.BigEndian.PutUint16(tcp[2:], t.Dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], t.Seq)
	binary.BigEndian.PutUint32(tcp[8:], t.Ack)
	binary.BigEndian.PutUint16(tcp[12:], uint16(thl/4)<<12|uint16(t.Flags&0x0fff))
	binary.BigEndian.PutUint16(tcp[14:], t.Window)
	binary.BigEndian.PutUint16(tcp[18:], t.Urgent)
	copy(tcp[20:], opts)
	copy(tcp[thl:], t.Payload)

	ttl := t.TTL
	if ttl == 0 {
		ttl = 64
	}
	src, dst := t.Src.Addr().Unmap(), t.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("craft: Src and Dst must be addresses of one family, got %v and %v", t.Src, t.Dst)
	}
	// IPv4 total length covers the header; the IPv6 payload length does not.
	if n := len(t.IPv6Ext) + thl + len(t.Payload); (src.Is4() && 20+n > 0xffff) || n > 0xffff {
		return nil, fmt.Errorf("craft: %d octets of TCP segment do not fit the IP length field", n)
	}
	var out []byte
	if src.Is4() {
		out = make([]byte, 20+len(tcp))
		ip := out[:20]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(len(out)))
		binary.BigEndian.PutUint16(ip[4:], t.ID)
		ip[6] = 0x40 // DF, as Linux sends TCP
		ip[8] = ttl
		ip[9] = TCPProto
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip, 0))
		copy(out[20:], tcp)
		tcp = out[20:]
	} else {
		ext := t.IPv6Ext
		out = make([]byte, 40+len(ext)+len(tcp))
		ip := out[:40]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(out)-40))
		ip[6] = TCPProto
		if len(ext) > 0 {
			ip[6] = t.IPv6ExtType
		}
		ip[7] = ttl
		s16, d16 := src.As16(), dst.As16()
		copy(ip[8:], s16[:])
		copy(ip[24:], d16[:])
		copy(out[40:], ext)
		if len(ext) > 0 {
			if last := lastNextHeader(t.IPv6ExtType, out[40:40+len(ext)]); last >= 0 {
				out[40+last] = TCPProto
			}
		}
		copy(out[40+len(ext):], tcp)
		tcp = out[40+len(ext):]
	}
	binary.BigEndian.PutUint16(tcp[16:], Checksum(tcp, pseudoSum(src, dst, len(tcp))))
	return out, nil
}

// lastNextHeader returns the offset in chain of the Next Header byte of the
// chain's last header, or -1 if the chain cannot be walked.
func lastNextHeader(typ uint8, chain []byte) int {
	off := 0
	for {
		if off+8 > len(chain) {
			return -1
		}
		var hl int
		switch typ {
		case FragHdr:
			hl = 8
		case AH:
			hl = (int(chain[off+1]) + 2) * 4
		case HopByHop, Routing, DestOpts:
			hl = (int(chain[off+1]) + 1) * 8
		default:
			return -1
		}
		if off+hl == len(chain) {
			return off
		}
		typ = chain[off]
		off += hl
	}
}

// pseudoSum is the unfolded sum of the TCP pseudo-header (RFC 9293 3.1 for
// IPv4, RFC 8200 8.1 for IPv6).
func pseudoSum(src, dst netip.Addr, n int) uint32 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = sum(a[:], 0)
		s = sum(b[:], s)
	} else {
		a, b := src.As16(), dst.As16()
		s = sum(a[:], 0)
		s = sum(b[:], s)
	}
	return s + TCPProto + uint32(n)
}

func sum(b []byte, s uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// Checksum returns the Internet checksum (RFC 1071) of b, starting from the
// unfolded partial sum initial (a pseudo-header's sum, or 0). The checksum
// field inside b must be zero, or the result is 0 for a correct packet.
func Checksum(b []byte, initial uint32) uint16 {
	s := sum(b, initial)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// NOP is the no-operation option (kind 1), for alignment.
func NOP() []byte { return []byte{1} }

// MSS is the maximum segment size option (kind 2, RFC 9293 3.2).
func MSS(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }

// WScale is the window scale option (kind 3, RFC 7323 2.2), shift s
// unclamped, so tests can send shifts above 14.
func WScale(s uint8) []byte { return []byte{3, 3, s} }

// SACKPerm is the SACK-permitted option (kind 4, RFC 2018 2).
func SACKPerm() []byte { return []byte{4, 2} }

// Timestamp is the timestamps option (kind 8, RFC 7323 3.2).
func Timestamp(val, ecr uint32) []byte {
	b := []byte{8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[2:], val)
	binary.BigEndian.PutUint32(b[6:], ecr)
	return b
}

// SACK is the SACK option (kind 5, RFC 2018 3) with the given [left, right)
// edges.
func SACK(blocks ...[2]uint32) []byte {
	b := make([]byte, 2+8*len(blocks))
	b[0], b[1] = 5, byte(len(b))
	for i, bl := range blocks {
		binary.BigEndian.PutUint32(b[2+8*i:], bl[0])
		binary.BigEndian.PutUint32(b[6+8*i:], bl[1])
	}
	return b
}

// TFOCookie is the TCP Fast Open cookie option (kind 34, RFC 7413 4.1.1); an
// empty cookie is a cookie request.
func TFOCookie(c []byte) []byte {
	return append([]byte{34, byte(2 + len(c))}, c...)
}

// TFOCookieExp is the pre-RFC experimental encoding of the TFO option (kind
// 254 with the RFC 6994 magic 0xF989), which Linux still accepts and answers
// in kind.
func TFOCookieExp(c []byte) []byte {
	return append([]byte{254, byte(4 + len(c)), 0xF9, 0x89}, c...)
}

// Options concatenates options, for TCP.Options.
func Options(opts ...[]byte) []byte {
	var b []byte
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

// Ext is one IPv6 extension header for Chain: its type and its body after
// the Next Header and length octets.
type Ext struct {
	Type uint8
	Body []byte
}

// PadN returns a hop-by-hop or destination options header (typ HopByHop or
// DestOpts) of 8*units octets holding a single PadN option (RFC 8200 4.2).
func PadN(typ uint8, units int) Ext {
	body := make([]byte, 8*units-2)
	body[0] = 1 // PadN
	body[1] = byte(len(body) - 2)
	return Ext{Type: typ, Body: body}
}

// RoutingHdr returns an empty routing header (type 0 with segments left 0,
// RFC 8200 4.4: ignored by the receiver since nothing is left).
func RoutingHdr() Ext { return Ext{Type: Routing, Body: make([]byte, 6)} }

// Fragment returns an IPv6 fragment header (RFC 8200 4.5) for the given
// offset in octets (a multiple of 8) and more-fragments flag.
func Fragment(offset int, more bool, id uint32) Ext {
	body := make([]byte, 6)
	v := uint16(offset) & 0xfff8
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(body[0:], v)
	binary.BigEndian.PutUint32(body[2:], id)
	return Ext{Type: FragHdr, Body: body}
}

// AuthHdr returns an authentication header (RFC 4302 2) with an ICV of
// icvWords 4-octet words (not a valid ICV: rstguard does not check it).
func AuthHdr(icvWords int) Ext {
	return Ext{Type: AH, Body: make([]byte, 10+4*icvWords)}
}

// Chain encodes exts as an extension header chain, filling in each Next
// Header and length field; the last Next Header is TCP. It returns the first
// header's type (for TCP.IPv6ExtType) and the bytes (for TCP.IPv6Ext).
func Chain(exts ...Ext) (first uint8, chain []byte) {
	for i, e := range exts {
		next := uint8(TCPProto)
		if i+1 < len(exts) {
			next = exts[i+1].Type
		}
		hl := 2 + len(e.Body)
		var l byte
		if e.Type == AH {
			l = byte(hl/4 - 2)
		} else {
			l = byte(hl/8 - 1)
		}
		chain = append(chain, next, l)
		chain = append(chain, e.Body...)
	}
	if len(exts) > 0 {
		first = exts[0].Type
	}
	return first, chain
}

// Fragment4 returns an IPv4 fragment of pkt, a complete unfragmented IPv4
// packet without options (as Bytes builds): the IP payload octets
// [offset, offset+size) (offset a multiple of 8), with more-fragments set
// unless the fragment reaches the end. The header checksum is recomputed.
func Fragment4(pkt []byte, offset, size int) []byte {
	payload := pkt[20:]
	end := min(offset+size, len(payload))
	out := make([]byte, 20+end-offset)
	copy(out, pkt[:20])
	copy(out[20:], payload[offset:end])
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	v := uint16(offset/8) & 0x1fff
	if end < len(payload) {
		v |= 0x2000 // MF
	}
	binary.BigEndian.PutUint16(out[6:], v)
	out[10], out[11] = 0, 0
	binary.BigEndian.PutUint16(out[10:], Checksum(out[:20], 0))
	return out
}
