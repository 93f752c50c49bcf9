package conntrack

import (
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// Dir is a direction of a flow: Original is what the initiator (the side
// whose SYN was seen first) sends, Reply what the responder sends.
type Dir uint8

const (
	Original Dir = 0
	Reply    Dir = 1
)

// Peer is what the middlebox has seen one side send (van Rooij's window
// tracking, as in Linux nf_conntrack's ip_ct_tcp_state and gVisor's
// tcpconntrack stream). Only conntrack writes it; the accessors read it.
// For the side d:
//
//   - isn: d's initial sequence number (for picked-up flows, the first
//     sequence number seen).
//   - end: the highest SEG.SEQ+SEG.LEN d has sent (SYN and FIN count one):
//     d's SND.NXT as far as we know.
//   - prevEnd: end before d's latest segment that advanced it.
//   - ack: the highest acknowledgement d has sent, a lower bound of d's
//     RCV.NXT; win: the window d advertised with it, already scaled.
//   - maxEnd: the highest ack+win d has advertised. It bounds what the other
//     side may send (Linux keeps it on the other side as td_maxend).
//   - maxWin: the largest window d has advertised (td_maxwin).
//   - sackEdge: the highest right edge of the SACK blocks d has sent.
//   - wscale: d's window-scale shift, non-zero only when both SYNs carried
//     the option (RFC 7323 2.2), clamped to 14 at parse time.
type Peer struct {
	isn      seqnum.Value
	end      seqnum.Value
	prevEnd  seqnum.Value
	ack      seqnum.Value
	maxEnd   seqnum.Value
	sackEdge seqnum.Value
	win      uint32
	maxWin   uint32
	rawWin   uint16 // the last window field as sent, unscaled
	wscale   uint8
	flags    PeerFlags
	// ttlFirst and ttlLast are the IP TTL (hop limit) of the first and of
	// the latest accepted packet from this side: its baseline, for
	// inspection (rstguard flows) and for telling injected packets apart.
	ttlFirst, ttlLast uint8
}

// TTL returns the IP TTL or hop limit the side's first accepted packet
// arrived with, and that of its latest (valid iff PeerSeen).
func (p *Peer) TTL() (first, last uint8) { return p.ttlFirst, p.ttlLast }

// ISN returns the side's initial sequence number (valid iff PeerSYN, or
// the first number seen of a picked-up side).
func (p *Peer) ISN() seqnum.Value { return p.isn }

// End returns the side's SND.NXT as far as we know.
func (p *Peer) End() seqnum.Value { return p.end }

// PrevEnd returns End before the side's latest segment that advanced it.
func (p *Peer) PrevEnd() seqnum.Value { return p.prevEnd }

// Ack returns the highest acknowledgement the side sent (valid iff PeerACK).
func (p *Peer) Ack() seqnum.Value { return p.ack }

// MaxEnd returns the highest Ack+Win the side advertised.
func (p *Peer) MaxEnd() seqnum.Value { return p.maxEnd }

// SACKEdge returns the highest SACK right edge the side sent (valid iff
// PeerSACKSeen).
func (p *Peer) SACKEdge() seqnum.Value { return p.sackEdge }

// Win returns the scaled window the side advertised with Ack.
func (p *Peer) Win() uint32 { return p.win }

// MaxWin returns the largest window the side advertised.
func (p *Peer) MaxWin() uint32 { return p.maxWin }

// WScale returns the side's window-scale shift.
func (p *Peer) WScale() uint8 { return p.wscale }

// Flags returns what was seen from the side.
func (p *Peer) Flags() PeerFlags { return p.flags }

// PeerFlags record what was seen from one side.
type PeerFlags uint16

const (
	PeerSeen       PeerFlags = 1 << iota // any packet from this side
	PeerSYN                              // its SYN was seen (ISN valid)
	PeerACK                              // it has sent an ACK (Ack, Win valid)
	PeerFIN                              // it has sent a FIN
	PeerFINAcked                         // its FIN was acknowledged by the other side
	PeerWScaleOpt                        // its SYN carried the window-scale option
	PeerSACKPerm                         // its SYN carried SACK-permitted
	PeerTimestamps                       // its SYN carried timestamps
	PeerSACKSeen                         // it has sent SACK blocks (SACKEdge valid)
	PeerAckedSYN                         // it has acknowledged the other side's SYN
)

// FlowFlags are per-flow facts.
type FlowFlags uint8

const (
	FlowPickedUp   FlowFlags = 1 << iota // created mid-stream: window scale unknown
	FlowSimOpen                          // simultaneous open
	FlowGap                              // packets were missed (resynchronised at least once)
	FlowSYNFlagged                       // the initiator's SYN carried ECN or reserved bits
)

// Flow is one tracked TCP connection. Its TCP state machine is in track.go
// (the Table's Create, SYN, Segment and Reset); callers read it through the
// accessors and never write it.
type Flow struct {
	key   Key
	peers [2]Peer // indexed by Dir
	// rstSeq is the sequence number of the reset that closed the flow,
	// rstState the state it was accepted in.
	rstSeq   seqnum.Value
	rstState State
	rstDir   Dir // the direction it was sent in
	// synFlags are the ECN/reserved bits of the initiator's SYN.
	synFlags packet.Flags
	state    State
	flags    FlowFlags
	// initSide is the Key side of the initiator.
	initSide Side
	// held is non-zero while resets of the flow are held in the queue
	// (policy's [injection] mode = "hold"): the token of that hold, with
	// heldN resets in it; the first one's sequence number and direction are
	// kept in rstSeq and rstDir (free until the flow is closed).
	heldN uint8
	held  uint32
	// rstAt is when the reset that closed the flow was accepted.
	rstAt int64

	created    int64  // ns, when the flow was inserted
	lastSeen   int64  // ns, of the last accepted packet
	movedAt    int64  // ns, when the flow was last put at the head of its list
	prev, next uint32 // LRU links within the state's list (slot index+1, 0 = none)
}

// Key returns the flow's key.
func (f *Flow) Key() Key { return f.key }

// State returns the flow's state.
func (f *Flow) State() State { return f.state }

// Peer returns what was seen of direction d (read-only).
func (f *Flow) Peer(d Dir) *Peer { return &f.peers[d] }

// Flags returns the per-flow facts.
func (f *Flow) Flags() FlowFlags { return f.flags }

// RSTSeq returns the sequence number of the reset that closed the flow
// (valid in StateClosed).
func (f *Flow) RSTSeq() seqnum.Value { return f.rstSeq }

// RSTDir returns the direction the reset that closed the flow was sent in.
func (f *Flow) RSTDir() Dir { return f.rstDir }

// RSTAt returns when the reset that closed the flow was accepted.
func (f *Flow) RSTAt() int64 { return f.rstAt }

// Holding reports whether resets of the flow are held (Held's token is
// not 0); inlined on the per-packet path.
func (f *Flow) Holding() bool { return f.held != 0 }

// Held returns the token of the hold the flow's resets are in (0: none),
// how many resets it holds, and the direction and sequence number of the
// first one.
func (f *Flow) Held() (token uint32, n uint8, d Dir, seq seqnum.Value) {
	return f.held, f.heldN, f.rstDir, f.rstSeq
}

// SYNFlags returns the ECN/reserved bits of the initiator's SYN (valid iff
// FlowSYNFlagged).
func (f *Flow) SYNFlags() packet.Flags { return f.synFlags }

// InitSide returns the Key side of the initiator.
func (f *Flow) InitSide() Side { return f.initSide }

// DirOf returns the direction of a packet sent by side s.
func (f *Flow) DirOf(s Side) Dir { return Dir(s ^ f.initSide) }

// LastSeen returns the time of the last accepted packet.
func (f *Flow) LastSeen() int64 { return f.lastSeen }

// Snapshot returns a copy of f without the table's bookkeeping (LRU links
// and times): two snapshots are equal iff the tracked TCP state is.
func (f *Flow) Snapshot() Flow {
	return Flow{key: f.key, peers: f.peers, rstSeq: f.rstSeq, rstState: f.rstState, rstDir: f.rstDir, synFlags: f.synFlags,
		state: f.state, flags: f.flags, initSide: f.initSide, held: f.held, heldN: f.heldN, rstAt: f.rstAt}
}
