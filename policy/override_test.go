package policy

import (
	"net/netip"
	"testing"

	"github.com/rstguard/rstguard/packet"
)

func ptrTo[T any](v T) *T { return &v }

// TestOverrides: [[policy.override]] entries change the settings of the
// flows they match (first match in order, Src = initiator networks, Dst =
// responder networks, DstPorts = responder ports), and nothing else.
func TestOverrides(t *testing.T) {
	lb := Override{Name: "lb", Dst: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, DstPorts: []uint16{443},
		Validate: ptrTo(false)}
	exact := Override{Name: "exact-clients", Src: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/25")},
		RSTMode: ptrTo(RSTModeExact)}
	dropUnknown := Override{Name: "v6", Src: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, DropUnknownFlowRST: ptrTo(true)}
	for _, c := range []struct {
		name      string
		overrides []Override
		v6        bool
		server    string // "" keeps 198.51.100.20:443
		rst       uint32 // offset of the server's reset from its next sequence
		want      Reason
		counted   int // index of the override that must count the packet, -1 none
	}{
		{"no override: far reset dropped (RFC 9293 3.10.7.4)", nil, false, "", 1 << 30, ReasonRSTOutOfWindow, -1},
		{"validate = false for the server's net: far reset accepted unchecked", []Override{lb}, false, "", 1 << 30, ReasonRSTNotValidated, 0},
		{"validate = false, another port: still validated", []Override{lb}, false, "198.51.100.20:80", 1 << 30, ReasonRSTOutOfWindow, -1},
		{"validate = false, another net: still validated", []Override{lb}, false, "203.0.113.5:443", 1 << 30, ReasonRSTOutOfWindow, -1},
		{"first match wins: exact before lb (RFC 5961 3.2)", []Override{exact, lb}, false, "", 100, ReasonRSTNotExact, 0},
		{"window mode for others: in-window reset valid", []Override{lb}, false, "203.0.113.5:443", 100, ReasonRSTValid, -1},
		{"an IPv4 prefix never matches IPv6", []Override{exact}, true, "", 100, ReasonRSTValid, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			cv := newConv(t, Config{Overrides: c.overrides})
			if c.v6 {
				cv.v6()
			}
			if c.server != "" {
				cv.server = netip.MustParseAddrPort(c.server)
			}
			cv.handshake(1000, 0xFFFFFF00, 65535, 65535, -1, -1)
			cv.must(cv.fromServer(seg{flags: packet.RST, seq: cv.sNxt + c.rst}), c.want, "the server's reset")
			for i := range c.overrides {
				n := cv.e.Stats().Overrides[i].Load()
				if i == c.counted && n == 0 || i != c.counted && n != 0 {
					t.Errorf("override %d counted %d packets", i, n)
				}
			}
		})
	}
	// A reset of no known flow: either direction of the packet may match.
	cv := newConv(t, Config{Overrides: []Override{dropUnknown}}).v6()
	cv.must(cv.fromServer(seg{flags: packet.RST, seq: 5}), ReasonRSTUnknownFlow, "unknown-flow reset towards a v6 client")
	cv = newConv(t, Config{Overrides: []Override{dropUnknown}})
	cv.must(cv.fromServer(seg{flags: packet.RST, seq: 5}), ReasonUnknownFlow, "unknown-flow reset, v4")
}

func TestPrefix16(t *testing.T) {
	for _, c := range []struct {
		prefix, addr string
		want         bool
	}{
		{"192.0.2.0/24", "192.0.2.77", true},
		{"192.0.2.0/24", "192.0.3.1", false},
		{"192.0.2.128/25", "192.0.2.127", false},
		{"192.0.2.128/25", "192.0.2.200", true},
		{"0.0.0.0/0", "203.0.113.1", true},
		{"0.0.0.0/0", "2001:db8::1", false},
		{"2001:db8::/32", "2001:db8:ffff::1", true},
		{"2001:db8::/33", "2001:db8:8000::1", false},
		{"::/0", "192.0.2.1", false}, // IPv6 prefixes match only IPv6, as netip.Prefix.Contains
		{"::/0", "2001:db8::1", true},
	} {
		p := toPrefix16(netip.MustParsePrefix(c.prefix))
		a := netip.MustParseAddr(c.addr).As16()
		if got := p.contains(&a); got != c.want {
			t.Errorf("%s contains %s: %v, want %v", c.prefix, c.addr, got, c.want)
		}
	}
}
