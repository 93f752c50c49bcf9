package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/rstguard/rstguard/policy"
)

func TestOverrides(t *testing.T) {
	c, err := Parse("o.toml", []byte(`[policy]
rst_mode = "window"

[[policy.override]]
name = "lb"
dst = ["198.51.100.0/24", "2001:db8::1"]
dst_ports = [443, 8443]
validate = false

[[policy.override]]
src = ["192.0.2.0/24"]
rst_mode = "exact"
unknown_flow_rst = "drop"
drop_out_of_window = true
`))
	if err != nil {
		t.Fatal(err)
	}
	os := c.PolicyConfig().Overrides
	if len(os) != 2 {
		t.Fatalf("overrides %+v", os)
	}
	lb, o2 := os[0], os[1]
	if lb.Name != "lb" || len(lb.Dst) != 2 || lb.Dst[1] != netip.MustParsePrefix("2001:db8::1/128") || len(lb.DstPorts) != 2 ||
		lb.Validate == nil || *lb.Validate || lb.RSTMode != nil {
		t.Errorf("first: %+v", lb)
	}
	if o2.Name != "override2" || *o2.RSTMode != policy.RSTModeExact || !*o2.DropUnknownFlowRST || !*o2.DropOutOfWindow || o2.Validate != nil {
		t.Errorf("second: %+v", o2)
	}
	// The second matches any responder, so it can match the first's flows.
	if ov := OverrideOverlaps(os); len(ov) != 1 || !strings.Contains(ov[0], `"lb" wins`) {
		t.Errorf("overlaps: %v", ov)
	}
}

func TestOverrideErrors(t *testing.T) {
	for _, c := range []struct {
		name, body, line, key, msg string
	}{
		{"bad prefix", "[[policy.override]]\ndst = [\"198.51.100.0/33\"]\nvalidate = false\n", ":2:", "[[policy.override]] #1 dst", "neither a CIDR prefix nor an address"},
		{"port out of range", "[[policy.override]]\nvalidate = false\n\n[[policy.override]]\ndst_ports = [0]\nvalidate = true\n", ":5:", "[[policy.override]] #2 dst_ports", "not a TCP port"},
		{"unknown key with a hint", "[[policy.override]]\nvalidat = false\n", ":2:", "[[policy.override]] #1 validat", "did you mean validate?"},
		{"no setting", "[[policy.override]]\nname = \"x\"\n", ":1:", "[[policy.override]] #1", "changes nothing"},
		{"bad mode", "[[policy.override]]\nrst_mode = \"strict\"\n", ":2:", "[[policy.override]] #1 rst_mode", `use "window" or "exact"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("o.toml", []byte(c.body))
			if err == nil {
				t.Fatal("no error")
			}
			s := err.Error()
			if !strings.Contains(s, "o.toml"+c.line) || !strings.Contains(s, c.key) || !strings.Contains(s, c.msg) {
				t.Errorf("error %q, want line %s key %q and %q", s, c.line, c.key, c.msg)
			}
		})
	}
}

func TestOverrideOverlaps(t *testing.T) {
	p := func(s ...string) (out []netip.Prefix) {
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	os := []policy.Override{
		{Name: "a", Dst: p("198.51.100.0/24"), DstPorts: []uint16{443}},
		{Name: "b", Dst: p("198.51.100.128/25")},                       // overlaps a (port any)
		{Name: "c", Dst: p("203.0.113.0/24")},                          // disjoint
		{Name: "d", Dst: p("198.51.100.0/24"), DstPorts: []uint16{80}}, // overlaps b only
	}
	got := OverrideOverlaps(os)
	want := []string{`"b" (#2) can match flows "a" (#1)`, `"d" (#4) can match flows "b" (#2)`}
	if len(got) != len(want) {
		t.Fatalf("overlaps %q", got)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("%q lacks %q", got[i], want[i])
		}
	}
}
