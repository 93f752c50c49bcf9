package conntrack

import (
	"encoding/binary"
	"math/bits"

	"github.com/rstguard/rstguard/packet"
)

// Key identifies a flow independently of direction: the two endpoints are
// stored in canonical order (the lower address, then port, first), so both
// directions of a flow map to the same Key. It is a packed, pointer-free
// value (no netip.AddrPort: that carries a zone handle; see tailscale
// net/flowtrack) that can be compared with ==.
type Key struct {
	A, B         [16]byte // IPv4 in IPv4-mapped form
	PortA, PortB uint16
	V6           bool
}

// Side says which endpoint of a Key sent a packet: 0 for A, 1 for B.
type Side uint8

// MakeKey returns the canonical key of p and the side that sent it.
func MakeKey(p *packet.Parsed) (Key, Side) {
	var k Key
	s := k.Set(p)
	return k, s
}

// Set makes k the canonical key of p and returns the side that sent it
// (MakeKey without returning the 40-byte key through the stack: the
// per-packet path builds it in place).
func (k *Key) Set(p *packet.Parsed) Side {
	k.V6 = p.IPVersion == 6
	if less(&p.Src, p.SrcPort, &p.Dst, p.DstPort) {
		k.A, k.PortA, k.B, k.PortB = p.Src, p.SrcPort, p.Dst, p.DstPort
		return 0
	}
	k.A, k.PortA, k.B, k.PortB = p.Dst, p.DstPort, p.Src, p.SrcPort
	return 1
}

func less(a *[16]byte, pa uint16, b *[16]byte, pb uint16) bool {
	a0, b0 := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if a0 != b0 {
		return a0 < b0
	}
	a1, b1 := binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	if a1 != b1 {
		return a1 < b1
	}
	return pa <= pb
}

// equal is k == *o, word by word: the compiler's == on Key calls memequal
// for each address array, a function call per lookup.
func (k *Key) equal(o *Key) bool {
	le := binary.LittleEndian
	return le.Uint64(k.A[:8]) == le.Uint64(o.A[:8]) && le.Uint64(k.A[8:]) == le.Uint64(o.A[8:]) &&
		le.Uint64(k.B[:8]) == le.Uint64(o.B[:8]) && le.Uint64(k.B[8:]) == le.Uint64(o.B[8:]) &&
		k.PortA == o.PortA && k.PortB == o.PortB && k.V6 == o.V6
}

// hash is a seeded 64-bit mix of the key (a multiply-xorshift over five
// words); the seed is per table, so flow placement is not predictable from
// outside.
func (k *Key) hash(seed uint64) uint64 {
	h := seed
	h = mix(h, binary.LittleEndian.Uint64(k.A[:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.A[8:]))
	h = mix(h, binary.LittleEndian.Uint64(k.B[:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.B[8:]))
	v := uint64(k.PortA)<<16 | uint64(k.PortB)
	if k.V6 {
		v |= 1 << 32
	}
	return mix(h, v)
}

func mix(h, v uint64) uint64 {
	hi, lo := bits.Mul64(h^v, 0x9E3779B97F4A7C15)
	return hi ^ lo
}
