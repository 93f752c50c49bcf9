package conntrack

import "strconv"

// State is a flow's TCP state as the middlebox sees it (SPEC section 3).
// The names follow Linux nf_conntrack: fin_wait is one FIN seen and not yet
// acknowledged; close_wait is one FIN seen and acknowledged (the other side
// still sends); last_ack is both FINs seen and not all acknowledged;
// time_wait is both FINs acknowledged; closed is a valid reset accepted.
type State uint8

const (
	StateNone State = iota // no flow: used for "the flow as it was" of unknown flows
	StateSynSent
	StateSynRecv
	StateEstablished
	StateFinWait
	StateCloseWait
	StateLastAck
	StateTimeWait
	StateClosed

	NumStates // not a state
)

var stateNames = [NumStates]string{
	StateNone:        "none",
	StateSynSent:     "syn_sent",
	StateSynRecv:     "syn_recv",
	StateEstablished: "established",
	StateFinWait:     "fin_wait",
	StateCloseWait:   "close_wait",
	StateLastAck:     "last_ack",
	StateTimeWait:    "time_wait",
	StateClosed:      "closed",
}

func (s State) String() string {
	if s < NumStates {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Synchronized reports whether s is one of RFC 9293's synchronized states
// (established through time_wait).
func (s State) Synchronized() bool { return s >= StateEstablished && s <= StateTimeWait }

// Embryonic reports whether s is a half-open state (evicted first).
func (s State) Embryonic() bool { return s == StateSynSent || s == StateSynRecv }

// EvictCause says why a live flow was removed before its timeout.
type EvictCause uint8

const (
	EvictEmbryonic EvictCause = iota // an embryonic flow made room for a new one
	EvictLRU                         // the least recently used flow made room

	NumEvictCauses
)

func (c EvictCause) String() string {
	switch c {
	case EvictEmbryonic:
		return "embryonic"
	case EvictLRU:
		return "lru"
	default:
		return "cause(" + strconv.Itoa(int(c)) + ")"
	}
}
