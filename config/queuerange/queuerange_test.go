package queuerange

import (
	"slices"
	"testing"
)

// TestParse: the flag form of [queue] numbers' range string.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint16
		ok   bool
	}{
		{"0:3", []uint16{0, 1, 2, 3}, true},
		{" 5 ", []uint16{5}, true},
		{"7:7", []uint16{7}, true},
		{"3:1", nil, false},
		{"0:65536", nil, false},
		{"-1:2", nil, false},
		{"a:b", nil, false},
		{"", nil, false},
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v (ok=%v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
