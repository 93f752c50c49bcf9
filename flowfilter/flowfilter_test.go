package flowfilter

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rstguard/rstguard/conntrack"
)

func TestStateTerms(t *testing.T) {
	a, b := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("198.51.100.1:443")
	for _, c := range []struct {
		filter string
		st     conntrack.State
		want   bool
	}{
		{"state established", conntrack.StateEstablished, true},
		{"state ESTABLISHED port 443", conntrack.StateEstablished, true},
		{"state established", conntrack.StateSynSent, false},
		{"net 192.0.2.0/24 state closed", conntrack.StateClosed, true},
		{"net 203.0.113.0/24 state closed", conntrack.StateClosed, false},
		{"192.0.2.1:40000 198.51.100.1:443", conntrack.StateFinWait, true},
	} {
		f, err := Parse(c.filter, true)
		if err != nil {
			t.Fatalf("%q: %v", c.filter, err)
		}
		if got := f.MatchFlow(a, b, c.st); got != c.want {
			t.Errorf("%q on %v: %v, want %v", c.filter, c.st, got, c.want)
		}
		if got := f.MatchFlow(b, a, c.st); got != c.want {
			t.Errorf("%q reversed: %v, want %v", c.filter, got, c.want)
		}
	}
	if f, _ := Parse("state established", true); f.Match(a, b, true) {
		t.Error("a state term matched a packet")
	}
	if _, err := Parse("state established", false); err == nil || !strings.Contains(err.Error(), "no one state") {
		t.Errorf("state term where not allowed: %v", err)
	}
	if _, err := Parse("state open", true); err == nil || !strings.Contains(err.Error(), "established") {
		t.Errorf("bad state: %v", err)
	}
}
