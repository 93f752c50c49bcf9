package seqnum

import (
	"testing"
)

// ref64 compares with 64-bit arithmetic on unwrapped values: the slow
// reference for the wrap-safe methods (RFC 9293 3.4: comparisons are
// modulo 2^32, within half the space).
func refLess(a, b uint32) bool {
	d := int64(b) - int64(a)
	if d > 1<<31 {
		d -= 1 << 32
	} else if d <= -(1 << 31) {
		d += 1 << 32
	}
	return d > 0
}

func refInRange(v, a, b uint32) bool {
	// Walk forward from a: distance of v and of b from a, in [0, 2^32).
	dv := (int64(v) - int64(a) + 1<<32) % (1 << 32)
	db := (int64(b) - int64(a) + 1<<32) % (1 << 32)
	return dv < db
}

func TestWrap(t *testing.T) {
	tests := []struct {
		name string
		a, b uint32
		less bool
	}{
		{"plain", 1, 2, true},
		{"equal", 7, 7, false},
		{"across 2^32", 0xFFFFFFF0, 0x10, true},
		{"across 2^32 reversed", 0x10, 0xFFFFFFF0, false},
		{"just under half", 0, 1<<31 - 1, true},
		{"beyond half", 0, 1<<31 + 1, false},
	}
	for _, tt := range tests {
		if got := Value(tt.a).LessThan(Value(tt.b)); got != tt.less {
			t.Errorf("%s: %#x < %#x = %v, want %v", tt.name, tt.a, tt.b, got, tt.less)
		}
		if got := refLess(tt.a, tt.b); got != tt.less {
			t.Errorf("%s: reference disagrees", tt.name)
		}
	}
	// RFC 9293 3.4: "RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND" across the wrap.
	if !Value(5).InWindow(0xFFFFFF00, 0x200) || Value(0x101).InWindow(0xFFFFFF00, 0x200) {
		t.Errorf("InWindow across 2^32 wrong")
	}
	if Value(7).InWindow(7, 0) {
		t.Errorf("an empty window contains nothing")
	}
	if Max(0xFFFFFFFF, 3) != 3 || Min(0xFFFFFFFF, 3) != 0xFFFFFFFF {
		t.Errorf("Max/Min across the wrap wrong")
	}
	if Value(0xFFFFFFFF).Add(2) != 1 || Value(1).Sub(2) != 0xFFFFFFFF || Value(0xFFFFFFFF).Dist(1) != 2 {
		t.Errorf("Add/Sub/Dist wrong")
	}
}

// FuzzSeqnum is the differential oracle of STYLE rule 16: the wrap-safe
// methods against the slow 64-bit reference.
func FuzzSeqnum(f *testing.F) {
	f.Add(uint32(0), uint32(1), uint32(2))
	f.Add(uint32(0xFFFFFFF0), uint32(0x10), uint32(0xFFFFFFFF))
	f.Add(uint32(1<<31), uint32(0), uint32(1<<31-1))
	f.Fuzz(func(t *testing.T, v, a, b uint32) {
		if got, want := Value(a).LessThan(Value(b)), refLess(a, b); got != want {
			t.Fatalf("LessThan(%#x, %#x) = %v, ref %v", a, b, got, want)
		}
		if got, want := Value(a).LessThanEq(Value(b)), refLess(a, b) || a == b; got != want {
			t.Fatalf("LessThanEq(%#x, %#x) = %v, ref %v", a, b, got, want)
		}
		if got, want := Value(v).InRange(Value(a), Value(b)), refInRange(v, a, b); got != want {
			t.Fatalf("InRange(%#x, %#x, %#x) = %v, ref %v", v, a, b, got, want)
		}
		if got, want := Value(v).InWindow(Value(a), Size(b)), refInRange(v, a, a+b); got != want && b != 0 {
			t.Fatalf("InWindow(%#x, %#x, %#x) = %v, ref %v", v, a, b, got, want)
		}
	})
}
