package conntrack

import "testing"

// TestKeyEqual: equal agrees with == on keys that differ in each field.
func TestKeyEqual(t *testing.T) {
	base := Key{PortA: 1, PortB: 2}
	base.A[15], base.B[15] = 1, 2
	vary := []func(k *Key){
		func(k *Key) {},
		func(k *Key) { k.A[0] ^= 1 }, func(k *Key) { k.A[7] ^= 1 }, func(k *Key) { k.A[8] ^= 1 }, func(k *Key) { k.A[15] ^= 1 },
		func(k *Key) { k.B[0] ^= 1 }, func(k *Key) { k.B[9] ^= 1 }, func(k *Key) { k.B[15] ^= 1 },
		func(k *Key) { k.PortA++ }, func(k *Key) { k.PortB++ }, func(k *Key) { k.V6 = true },
	}
	for i, v := range vary {
		k := base
		v(&k)
		if got, want := k.equal(&base), k == base; got != want {
			t.Errorf("variant %d: equal %v, == %v", i, got, want)
		}
	}
}
