package policy

import (
	"testing"

	"github.com/rstguard/rstguard/packet"
)

// TestSYNFlagNames: the names in log lines are the flag label values.
func TestSYNFlagNames(t *testing.T) {
	for _, tc := range []struct {
		f    packet.Flags
		want string
	}{
		{0, ""},
		{packet.SYN | packet.ACK, ""},
		{packet.ECE | packet.CWR, "ece,cwr"},
		{packet.AE, "ae"},
		{packet.Reserved & (packet.Reserved >> 1), "reserved"},
		{packet.ECNReserved | packet.SYN, "ece,cwr,ae,reserved"},
	} {
		if got := SYNFlagNames(tc.f); got != tc.want {
			t.Errorf("SYNFlagNames(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}
