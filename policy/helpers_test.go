package policy

import (
	"net/netip"
	"testing"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// seg describes a segment for tests; conv turns it into a packet.Parsed.
type seg struct {
	flags   packet.Flags
	seq     uint32
	ack     uint32
	win     uint16
	n       uint32 // payload length
	opts    packet.OptBits
	wscale  uint8
	sackEdg uint32
	ttl     uint8 // 0: 64
}

// conv is a conversation between a client and a server through one engine,
// with a clock that the test advances (the engine is pure: no sleeps).
type conv struct {
	t      *testing.T
	e      *Engine
	now    int64
	client netip.AddrPort
	server netip.AddrPort

	// ISNs and what each side has sent, maintained by the helpers.
	cISN, sISN uint32
	cNxt, sNxt uint32

	// last is the engine's decision for the last segment sent; heldD the
	// last one that held a reset (injection_test.go).
	last, heldD Decision
}

func newConv(t *testing.T, pc Config) *conv {
	t.Helper()
	return newConvTable(t, pc, conntrack.DefaultConfig())
}

func newConvTable(t *testing.T, pc Config, tc conntrack.Config) *conv {
	return &conv{
		t:      t,
		e:      NewEngine(pc, tc),
		now:    1e9,
		client: netip.MustParseAddrPort("192.0.2.10:40000"),
		server: netip.MustParseAddrPort("198.51.100.20:443"),
	}
}

func (c *conv) v6() *conv {
	c.client = netip.MustParseAddrPort("[2001:db8:1::10]:40000")
	c.server = netip.MustParseAddrPort("[2001:db8:2::20]:443")
	return c
}

func parsed(src, dst netip.AddrPort, s seg) packet.Parsed {
	p := packet.Parsed{
		Kind:       packet.KindTCP,
		IPVersion:  4,
		Proto:      6,
		Src:        src.Addr().As16(),
		Dst:        dst.Addr().As16(),
		SrcPort:    src.Port(),
		DstPort:    dst.Port(),
		Flags:      s.flags,
		Seq:        seqnum.Value(s.seq),
		Ack:        seqnum.Value(s.ack),
		Window:     s.win,
		PayloadLen: s.n,
		Opts:       s.opts,
		WScale:     s.wscale,
		SACKEdge:   seqnum.Value(s.sackEdg),
		HaveIP:     true,
		TTL:        64,
	}
	if s.ttl != 0 {
		p.TTL = s.ttl
	}
	if src.Addr().Is6() && !src.Addr().Is4In6() {
		p.IPVersion = 6
	}
	return p
}

func (c *conv) send(fromClient bool, s seg) (Verdict, Reason) {
	c.t.Helper()
	c.now += 1e6
	src, dst := c.client, c.server
	if !fromClient {
		src, dst = dst, src
	}
	p := parsed(src, dst, s)
	c.last = c.e.Decide(&p, c.now)
	return c.last.Verdict, c.last.Reason
}

// process decodes b as the daemon and replay do and decides it.
func process(e *Engine, b []byte, wireLen int, now int64) Decision {
	var p packet.Parsed
	packet.Decode(b, wireLen, &p)
	return e.Decide(&p, now)
}

// processRef is process as the daemon runs it: the decision read in place
// (Engine.DecideRef), not copied out.
func processRef(e *Engine, b []byte, wireLen int, now int64) *Decision {
	var p packet.Parsed
	packet.Decode(b, wireLen, &p)
	return e.DecideRef(&p, now)
}

func (c *conv) fromClient(s seg) Reason { _, r := c.send(true, s); return r }
func (c *conv) fromServer(s seg) Reason { _, r := c.send(false, s); return r }

// must asserts a reason.
func (c *conv) must(got, want Reason, what string) {
	c.t.Helper()
	if got != want {
		c.t.Fatalf("%s: got reason %s (%s), want %s", what, got, got.Verdict(), want)
	}
}

// state returns the flow's current state.
func (c *conv) state() conntrack.State {
	c.t.Helper()
	p := parsed(c.client, c.server, seg{})
	k, _ := conntrack.MakeKey(&p)
	slot, ok := c.e.Table().Lookup(&k, c.now)
	if !ok {
		return conntrack.StateNone
	}
	return c.e.Table().Flow(slot).State()
}

func (c *conv) flow() conntrack.Flow {
	c.t.Helper()
	p := parsed(c.client, c.server, seg{})
	k, _ := conntrack.MakeKey(&p)
	slot, ok := c.e.Table().Lookup(&k, c.now)
	if !ok {
		c.t.Fatalf("no flow")
	}
	return *c.e.Table().Flow(slot)
}

const (
	wsOpt = packet.OptWScale | packet.OptSACKPerm | packet.OptTimestamp | packet.OptMSS
)

// handshake performs SYN, SYN-ACK, ACK with the given ISNs, windows and
// window-scale shifts (-1 for no option) and asserts that the flow is
// established.
func (c *conv) handshake(cISN, sISN uint32, cWin, sWin uint16, cWS, sWS int) {
	c.t.Helper()
	c.cISN, c.sISN = cISN, sISN
	syn := seg{flags: packet.SYN, seq: cISN, win: cWin, opts: packet.OptMSS}
	if cWS >= 0 {
		syn.opts |= packet.OptWScale
		syn.wscale = uint8(cWS)
	}
	c.must(c.fromClient(syn), ReasonTracked, "SYN")
	sa := seg{flags: packet.SYN | packet.ACK, seq: sISN, ack: cISN + 1, win: sWin, opts: packet.OptMSS}
	if sWS >= 0 {
		sa.opts |= packet.OptWScale
		sa.wscale = uint8(sWS)
	}
	c.must(c.fromServer(sa), ReasonTracked, "SYN-ACK")
	c.must(c.fromClient(seg{flags: packet.ACK, seq: cISN + 1, ack: sISN + 1, win: cWin}), ReasonTracked, "ACK")
	c.cNxt, c.sNxt = cISN+1, sISN+1
	if st := c.state(); st != conntrack.StateEstablished {
		c.t.Fatalf("after handshake: state %s, want established", st)
	}
}

// data sends n bytes from one side, acknowledging everything of the other.
func (c *conv) data(fromClient bool, n uint32, win uint16) Reason {
	c.t.Helper()
	if fromClient {
		r := c.fromClient(seg{flags: packet.ACK | packet.PSH, seq: c.cNxt, ack: c.sNxt, win: win, n: n})
		if r.Verdict() == Accept {
			c.cNxt += n
		}
		return r
	}
	r := c.fromServer(seg{flags: packet.ACK | packet.PSH, seq: c.sNxt, ack: c.cNxt, win: win, n: n})
	if r.Verdict() == Accept {
		c.sNxt += n
	}
	return r
}

func cISNv() seqnum.Value        { return seqnum.Value(cISN) }
func seqv(v uint32) seqnum.Value { return seqnum.Value(v) }

// closeBoth performs an orderly close: client FIN, server ACK+FIN, client
// ACK.
func (c *conv) closeBoth() {
	c.t.Helper()
	c.must(c.fromClient(seg{flags: packet.FIN | packet.ACK, seq: c.cNxt, ack: c.sNxt, win: 502}), ReasonTracked, "client FIN")
	c.cNxt++
	if st := c.state(); st != conntrack.StateFinWait {
		c.t.Fatalf("after first FIN: %s, want fin_wait", st)
	}
	c.must(c.fromServer(seg{flags: packet.ACK, seq: c.sNxt, ack: c.cNxt, win: 509}), ReasonTracked, "server ACK")
	if st := c.state(); st != conntrack.StateCloseWait {
		c.t.Fatalf("after ACK of FIN: %s, want close_wait", st)
	}
	c.must(c.fromServer(seg{flags: packet.FIN | packet.ACK, seq: c.sNxt, ack: c.cNxt, win: 509}), ReasonTracked, "server FIN")
	c.sNxt++
	if st := c.state(); st != conntrack.StateLastAck {
		c.t.Fatalf("after second FIN: %s, want last_ack", st)
	}
	c.must(c.fromClient(seg{flags: packet.ACK, seq: c.cNxt, ack: c.sNxt, win: 502}), ReasonTracked, "last ACK")
}
