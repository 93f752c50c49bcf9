package conntrack

import (
	"net/netip"
	"testing"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
	"github.com/rstguard/rstguard/seqnum"
)

// The state machine's own tests: conversations driven through the Table's
// Create, SYN, Segment and Reset with ISNs just below 2^32, so that every
// window check and every update crosses the wrap. The policy's reset and
// SYN rules are tested in policy/; here a reset is applied as if the
// policy had let it through.

// Variables, not constants: cISN+300 must wrap as uint32 arithmetic does.
var (
	cISN uint32 = 0xFFFFFF00 // the client's data crosses 2^32 after 255 bytes
	sISN uint32 = 0xFFFFFFF0 // the server's after 15
)

func sv(v uint32) seqnum.Value { return seqnum.Value(v) }

var (
	cli = netip.MustParseAddrPort("192.0.2.10:40000")
	srv = netip.MustParseAddrPort("198.51.100.20:443")
)

// seg is a segment of the test conversation, from the client (Original)
// or the server (Reply): they are the flow's directions whenever the client
// speaks first. It is built as bytes and decoded as the daemon decodes it.
type seg struct {
	from Dir
	tcp  craft.TCP // without addresses
}

func fromC(t craft.TCP) seg { return seg{Original, t} }
func fromS(t craft.TCP) seg { return seg{Reply, t} }

// payload returns n bytes of data.
func payload(n int) []byte { return make([]byte, n) }

func (s seg) parsed() packet.Parsed {
	t := s.tcp
	t.Src, t.Dst = cli, srv
	if s.from == Reply {
		t.Src, t.Dst = srv, cli
	}
	var p packet.Parsed
	packet.Decode(t.Bytes(), 0, &p)
	return p
}

// conn is a table holding one conversation, and a test clock.
type conn struct {
	t   *testing.T
	tb  *Table
	now int64
}

func newConn(t *testing.T, cfg Config) *conn {
	return &conn{t: t, tb: NewTable(cfg), now: 1e9}
}

// send hands s to the state machine as the engine does for a packet it lets
// through: Create for a new flow, SYN or Segment for a known one (and Keep
// after ResultSYNSynchronized), Reset for a reset (reported as
// ResultTracked).
func (c *conn) send(s seg) Result {
	c.now += 1e6
	p := s.parsed()
	k, side := MakeKey(&p)
	slot, ok := c.tb.Lookup(&k, c.now)
	switch {
	case !ok:
		return c.tb.Create(&k, side, &p, c.now)
	case p.Flags&packet.RST != 0:
		c.tb.Reset(slot, c.tb.Flow(slot).DirOf(side), p.Seq, c.now)
		return ResultTracked
	case p.Flags&packet.SYN != 0:
		d := c.tb.Flow(slot).DirOf(side)
		r := c.tb.SYN(slot, d, &p, c.now)
		if r == ResultSYNSynchronized {
			c.tb.Keep(slot, c.now)
		}
		return r
	default:
		return c.tb.Segment(slot, c.tb.Flow(slot).DirOf(side), &p, c.now)
	}
}

// flow returns the conversation's flow, or nil.
func (c *conn) flow() *Flow {
	p := seg{}.parsed()
	k, _ := MakeKey(&p)
	slot, ok := c.tb.Lookup(&k, c.now)
	if !ok {
		return nil
	}
	return c.tb.Flow(slot)
}

func (c *conn) state() State {
	if f := c.flow(); f != nil {
		return f.state
	}
	return StateNone
}

// step is a segment, what the state machine must make of it and the state
// it must leave the flow in.
type step struct {
	seg   seg
	want  Result
	state State
}

// handshake is SYN, SYN-ACK, ACK with window-scale shifts cWS and sWS (-1:
// no option) and windows 64240/65160 on the SYNs, 502/509 after.
func handshake(cWS, sWS int) []step {
	opts := func(ws int) []byte {
		if ws < 0 {
			return craft.Options(craft.MSS(1460), craft.SACKPerm())
		}
		return craft.Options(craft.MSS(1460), craft.SACKPerm(), craft.WScale(uint8(ws)))
	}
	return []step{
		{fromC(craft.TCP{Flags: packet.SYN, Seq: cISN, Window: 64240, Options: opts(cWS)}), ResultTracked, StateSynSent},
		{fromS(craft.TCP{Flags: packet.SYN | packet.ACK, Seq: sISN, Ack: cISN + 1, Window: 65160, Options: opts(sWS)}), ResultTracked, StateSynRecv},
		{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 502}), ResultTracked, StateEstablished},
	}
}

// then appends more steps to a handshake.
func then(a []step, b ...step) []step { return append(append([]step{}, a...), b...) }

// closeSteps are an orderly close after handshake(...) with no data.
var closeSteps = []step{
	{fromC(craft.TCP{Flags: packet.FIN | packet.ACK, Seq: cISN + 1, Ack: sISN + 1, Window: 502}), ResultTracked, StateFinWait},
	{fromS(craft.TCP{Flags: packet.ACK, Seq: sISN + 1, Ack: cISN + 2, Window: 509}), ResultTracked, StateCloseWait},
	{fromS(craft.TCP{Flags: packet.FIN | packet.ACK, Seq: sISN + 1, Ack: cISN + 2, Window: 509}), ResultTracked, StateLastAck},
	{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 2, Ack: sISN + 2, Window: 502}), ResultTracked, StateTimeWait},
}

func noPickup(c *Config) { c.Pickup = false }

// TestTransitions has one row per transition of the state machine.
func TestTransitions(t *testing.T) {
	hs := handshake(-1, -1)
	data := func(from Dir, seq, ack uint32, n int) seg {
		return seg{from, craft.TCP{Flags: packet.ACK | packet.PSH, Seq: seq, Ack: ack, Window: 502, Payload: payload(n)}}
	}
	tests := []struct {
		name   string
		clause string
		cfg    func(*Config)
		steps  []step
		check  func(t *testing.T, c *conn)
	}{
		{name: "three-way handshake", clause: "RFC 9293 3.5 figure 7", steps: hs},
		{
			name: "data both ways across 2^32", clause: "RFC 9293 3.4 (modulo 2^32)",
			steps: then(hs,
				step{data(Original, cISN+1, sISN+1, 300), ResultTracked, StateEstablished},
				step{data(Reply, sISN+1, cISN+301, 100), ResultTracked, StateEstablished},
				step{fromC(craft.TCP{Flags: packet.ACK, Seq: cISN + 301, Ack: sISN + 101, Window: 502}), ResultTracked, StateEstablished}),
			check: func(t *testing.T, c *conn) {
				f := c.flow()
				if got := f.peers[Original].end; got != sv(cISN+301) || got > 0x100 {
					t.Errorf("client end %#x, want %#x (past the wrap)", got, cISN+301)
				}
				if got := f.peers[Reply].ack; got != sv(cISN+301) {
					t.Errorf("server ack %#x, want %#x", got, cISN+301)
				}
			},
		},
		{name: "orderly close", clause: "RFC 9293 3.6 figure 12", steps: then(hs, closeSteps...)},
		{
			name: "accepted reset closes the flow", clause: "RFC 9293 3.10.7.4 first check",
			steps: then(hs, step{fromC(craft.TCP{Flags: packet.RST, Seq: cISN + 1}), ResultTracked, StateClosed}),
			check: func(t *testing.T, c *conn) {
				if f := c.flow(); f.RSTSeq() != sv(cISN+1) {
					t.Errorf("RSTSeq %#x, want %#x", f.RSTSeq(), cISN+1)
				}
			},
		},
		{
			name: "straggler after a reset changes nothing", clause: "SPEC 4",
			steps: then(hs,
				step{fromC(craft.TCP{Flags: packet.RST, Seq: cISN + 1}), ResultTracked, StateClosed},
				step{fromS(craft.TCP{Flags: packet.ACK, Seq: sISN + 1, Ack: cISN + 1, Window: 509}), ResultTracked, StateClosed}),
		},
		{
			name: "new data after an ignored reset revives the flow", clause: "RFC 5961 3.2 (challenge ACK)",
			steps: then(hs,
				step{fromS(craft.TCP{Flags: packet.RST, Seq: sISN + 100}), ResultTracked, StateClosed},
				step{data(Original, cISN+1, sISN+1, 10), ResultTracked, StateEstablished}),
		},
		{
			name: "simultaneous open", clause: "RFC 9293 3.5 figure 8",
			steps: []step{
				{fromC(craft.TCP{Flags: packet.SYN, Seq: cISN, Window: 64240}), ResultTracked, StateSynSent},
				{fromS(craft.TCP{Flags: packet.SYN, Seq: sISN, Window: 65160}), ResultTracked, StateSynRecv},
				{fromC(craft.TCP{Flags: packet.SYN | packet.ACK, Seq: cISN, Ack: sISN + 1, Window: 64240}), ResultTracked, StateSynRecv},
				{fromS(craft.TCP{Flags: packet.SYN | packet.ACK, Seq: sISN, Ack: cISN + 1, Window: 65160}), ResultTracked, StateEstablished},
			},
			check: func(t *testing.T, c *conn) {
				if c.flow().flags&FlowSimOpen == 0 {
					t.Errorf("FlowSimOpen not set")
				}
			},
		},
		{
			name: "SYN-ACK that does not acknowledge the SYN", clause: "RFC 9293 3.10.7.3 first check",
			steps: []step{
				hs[0],
				{fromS(craft.TCP{Flags: packet.SYN | packet.ACK, Seq: sISN, Ack: cISN + 5, Window: 65160}), ResultOutOfWindow, StateSynSent},
				hs[1], hs[2],
			},
		},
		{
			name: "responder segment before its SYN", clause: "RFC 9293 3.10.7.3",
			steps: []step{hs[0], {fromS(craft.TCP{Flags: packet.ACK, Seq: sISN, Ack: cISN + 1, Window: 65160}), ResultOutOfWindow, StateSynSent}},
		},
		{
			name: "SYN with a new ISN reinitialises the initiator", clause: "RFC 9293 3.10.7.3; Linux tcp_in_window",
			steps: []step{hs[0], {fromC(craft.TCP{Flags: packet.SYN | packet.CWR | packet.ECE, Seq: cISN + 1000, Window: 64240}), ResultTracked, StateSynSent}},
			check: func(t *testing.T, c *conn) {
				f := c.flow()
				if f.peers[Original].isn != sv(cISN+1000) || f.peers[Original].end != sv(cISN+1001) {
					t.Errorf("isn %#x end %#x, want the new SYN's", f.peers[Original].isn, f.peers[Original].end)
				}
				if f.flags&FlowSYNFlagged == 0 || f.synFlags != packet.CWR|packet.ECE {
					t.Errorf("SYN flags %v (flow flags %b), want the new SYN's", f.synFlags, f.flags)
				}
			},
		},
		{
			name: "SYN in a synchronized state changes nothing", clause: "RFC 9293 3.10.7.4 fourth check; RFC 5961 4.2",
			steps: then(hs, step{fromS(craft.TCP{Flags: packet.SYN, Seq: sISN + 50, Window: 65160}), ResultSYNSynchronized, StateEstablished}),
			check: func(t *testing.T, c *conn) {
				if f := c.flow(); f.peers[Reply].end != sv(sISN+1) {
					t.Errorf("server end %#x moved", f.peers[Reply].end)
				}
			},
		},
		{
			name: "SYN with a new ISN after TIME-WAIT opens a new incarnation", clause: "RFC 9293 3.10.7.4; RFC 1122 4.2.2.13",
			steps: then(then(hs, closeSteps...), step{fromC(craft.TCP{Flags: packet.SYN, Seq: cISN + 100000, Window: 64240}), ResultTracked, StateSynSent}),
			check: func(t *testing.T, c *conn) {
				if f := c.flow(); f.peers[Original].isn != sv(cISN+100000) || f.peers[Reply].flags != 0 {
					t.Errorf("not a new incarnation: %+v", f.peers)
				}
			},
		},
		{
			name: "retransmitted SYN in TIME-WAIT is only tracked", clause: "RFC 9293 3.10.7.4",
			steps: then(then(hs, closeSteps...), step{hs[0].seg, ResultTracked, StateTimeWait}),
		},
		{
			name: "segment ahead of the window is a gap", clause: "SPEC 5 (queue bypass)",
			steps: then(hs, step{data(Original, cISN+1+100000, sISN+1, 10), ResultResynced, StateEstablished}),
			check: func(t *testing.T, c *conn) {
				if n := c.tb.Stats().Gaps.Load(); n != 1 || c.flow().flags&FlowGap == 0 {
					t.Errorf("gaps %d, FlowGap %v", n, c.flow().flags&FlowGap != 0)
				}
				if f := c.flow(); f.peers[Original].end != sv(cISN+1+100010) {
					t.Errorf("client end %#x, want past the gap", f.peers[Original].end)
				}
			},
		},
		{
			name: "segment 2^31 ahead is out of window", clause: "van Rooij check I; RFC 7323 2.3 (windows < 2^30)",
			steps: then(hs, step{data(Original, cISN+1+0x80000000, sISN+1, 10), ResultOutOfWindow, StateEstablished}),
		},
		{
			name: "old duplicate is out of window", clause: "van Rooij check II",
			steps: then(hs, step{data(Original, cISN+1-200000, sISN+1, 10), ResultOutOfWindow, StateEstablished}),
		},
		{
			name: "ACK far behind is out of window", clause: "van Rooij check IV",
			steps: then(hs, step{data(Original, cISN+1, sISN+1-100000, 0), ResultOutOfWindow, StateEstablished}),
		},
		{
			name: "mid-stream pickup", clause: "SPEC 3",
			steps: []step{
				{data(Original, cISN+1, sISN+1, 100), ResultPickedUp, StateEstablished},
				{data(Reply, sISN+1, cISN+101, 0), ResultTracked, StateEstablished},
			},
			check: func(t *testing.T, c *conn) {
				if n := c.tb.Stats().OneWay.Load(); n != 0 {
					t.Errorf("one-way gauge %d after both directions, want 0", n)
				}
				if c.flow().flags&FlowPickedUp == 0 {
					t.Errorf("FlowPickedUp not set")
				}
			},
		},
		{
			name: "picked-up SYN-ACK", clause: "SPEC 3 (restart during a handshake)",
			steps: []step{{hs[1].seg, ResultPickedUp, StateSynRecv}, hs[2]},
			check: func(t *testing.T, c *conn) {
				f := c.flow()
				if f.peers[Original].isn != sv(cISN) || f.peers[Reply].isn != sv(sISN) {
					t.Errorf("isn %#x/%#x, want %#x/%#x", f.peers[Original].isn, f.peers[Reply].isn, cISN, sISN)
				}
			},
		},
		{
			name: "no pickup: a mid-stream segment is not tracked", clause: "SPEC 3 (pickup = false)", cfg: noPickup,
			steps: []step{{data(Original, cISN+1, sISN+1, 100), ResultUntracked, StateNone}},
		},
		{
			name: "a FIN without ACK creates no flow", clause: "RFC 9293 3.10.7.4 fifth check (no ACK, drop)",
			steps: []step{{fromC(craft.TCP{Flags: packet.FIN, Seq: cISN}), ResultUntracked, StateNone}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := newConn(t, cfg)
			for i, s := range tt.steps {
				if got := c.send(s.seg); got != s.want {
					t.Fatalf("step %d (%s): result %s, want %s", i, tt.clause, got, s.want)
				}
				if got := c.state(); got != s.state {
					t.Fatalf("step %d (%s): state %s, want %s", i, tt.clause, got, s.state)
				}
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
