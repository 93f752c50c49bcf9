package policy

import (
	"net/netip"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// MaxOverrides bounds [[policy.override]] entries (they are matched in
// order for every packet of a flow they may cover).
const MaxOverrides = 64

// Override changes the policy for the flows it matches ([[policy.override]]):
// the first entry, in order, whose every given condition holds applies.
// Src are the initiator's networks, Dst the responder's (the side that
// answered the first SYN; for a packet of no known flow, either direction
// of the packet), DstPorts the responder's ports. An empty condition
// matches everything. A nil setting keeps the [policy] value.
type Override struct {
	Name     string
	Src, Dst []netip.Prefix
	DstPorts []uint16

	RSTMode            *RSTMode
	DropUnknownFlowRST *bool
	DropOutOfWindow    *bool
	// Validate false accepts the resets of the flows it covers without
	// checking them (ReasonRSTNotValidated): for segments where a load
	// balancer or a stack with odd reset numbers lives.
	Validate *bool
}

// settings are the knobs a decision reads: [policy], or an override of it.
type settings struct {
	rstMode         RSTMode
	dropUnknownRST  bool
	dropOutOfWindow bool
	noValidate      bool
}

func (c *Config) base() settings {
	return settings{rstMode: c.RSTMode, dropUnknownRST: c.DropUnknownFlowRST, dropOutOfWindow: c.DropOutOfWindow}
}

// prefix16 is a prefix over the 16-byte addresses of packet.Parsed (IPv4 in
// the IPv4-mapped form): matched without building a netip.Addr per packet.
type prefix16 struct {
	addr [16]byte
	bits int
	v4   bool // an IPv4 prefix matches only IPv4 addresses, an IPv6 one only IPv6
}

func toPrefix16(p netip.Prefix) prefix16 {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return prefix16{addr: p.Addr().As16(), bits: bits, v4: p.Addr().Is4()}
}

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

func (p *prefix16) contains(a *[16]byte) bool {
	if [12]byte(a[:12]) == v4Mapped != p.v4 {
		return false
	}
	full := p.bits / 8
	for i := range full {
		if a[i] != p.addr[i] {
			return false
		}
	}
	if rem := p.bits % 8; rem != 0 {
		m := byte(0xff) << (8 - rem)
		return a[full]&m == p.addr[full]
	}
	return true
}

type compiledOverride struct {
	src, dst []prefix16
	ports    []uint16
	set      settings
}

func anyPrefix(ps []prefix16, a *[16]byte) bool {
	if len(ps) == 0 {
		return true
	}
	for i := range ps {
		if ps[i].contains(a) {
			return true
		}
	}
	return false
}

func (o *compiledOverride) match(src, dst *[16]byte, dport uint16) bool {
	if !anyPrefix(o.src, src) || !anyPrefix(o.dst, dst) {
		return false
	}
	if len(o.ports) == 0 {
		return true
	}
	for _, p := range o.ports {
		if p == dport {
			return true
		}
	}
	return false
}

// compile turns c's overrides into matchers with their effective settings.
func compile(c *Config) []compiledOverride {
	out := make([]compiledOverride, 0, len(c.Overrides))
	for _, o := range c.Overrides {
		co := compiledOverride{ports: o.DstPorts, set: c.base()}
		for _, p := range o.Src {
			co.src = append(co.src, toPrefix16(p))
		}
		for _, p := range o.Dst {
			co.dst = append(co.dst, toPrefix16(p))
		}
		if o.RSTMode != nil {
			co.set.rstMode = *o.RSTMode
		}
		if o.DropUnknownFlowRST != nil {
			co.set.dropUnknownRST = *o.DropUnknownFlowRST
		}
		if o.DropOutOfWindow != nil {
			co.set.dropOutOfWindow = *o.DropOutOfWindow
		}
		if o.Validate != nil {
			co.set.noValidate = !*o.Validate
		}
		out = append(out, co)
	}
	return out
}

// selectSettings sets e.set for packet p: [policy], or the first override
// matching p's flow. d is p's direction in its flow; known false for a
// packet of no known flow, where either orientation of p may match.
func (e *Engine) selectSettings(p *packet.Parsed, d conntrack.Dir, known bool) {
	e.set = e.baseSet
	if len(e.ovr) == 0 {
		return
	}
	ini, res, port := &p.Src, &p.Dst, p.DstPort
	if known && d == conntrack.Reply {
		ini, res, port = &p.Dst, &p.Src, p.SrcPort
	}
	for i := range e.ovr {
		o := &e.ovr[i]
		if o.match(ini, res, port) || !known && o.match(res, ini, p.SrcPort) {
			e.set = o.set
			e.stats.Overrides[i].Add(1)
			return
		}
	}
}
