// Package seqnum implements TCP sequence-number arithmetic modulo 2^32
// (RFC 9293 section 3.4, "serial" comparison as in RFC 1982).
//
// Every comparison of sequence numbers in rstguard goes through this
// package: no policy code compares raw uint32 values with <.
//
// It imports only the standard library; every other rstguard package may import it.
package seqnum

// Value is a TCP sequence or acknowledgement number.
type Value uint32

// Size is a distance in sequence space (a length or a window).
type Size uint32

// LessThan reports whether v precedes w modulo 2^32.
func (v Value) LessThan(w Value) bool { return int32(v-w) < 0 }

// LessThanEq reports whether v precedes or equals w modulo 2^32.
func (v Value) LessThanEq(w Value) bool { return int32(v-w) <= 0 }

// InRange reports whether a <= v < b, walking forward from a modulo 2^32.
// An empty range (a == b) contains nothing.
func (v Value) InRange(a, b Value) bool { return v-a < b-a }

// InWindow reports whether first <= v < first+size (RFC 9293 3.4:
// RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND).
func (v Value) InWindow(first Value, size Size) bool { return uint32(v-first) < uint32(size) }

// Add returns v advanced by s.
func (v Value) Add(s Size) Value { return v + Value(s) }

// Sub returns v moved back by s.
func (v Value) Sub(s Size) Value { return v - Value(s) }

// Dist returns the forward distance from v to w (w - v modulo 2^32).
func (v Value) Dist(w Value) Size { return Size(w - v) }

// Max returns whichever of a and b is later modulo 2^32.
func Max(a, b Value) Value {
	if a.LessThan(b) {
		return b
	}
	return a
}

// Min returns whichever of a and b is earlier modulo 2^32.
func Min(a, b Value) Value {
	if a.LessThan(b) {
		return a
	}
	return b
}
