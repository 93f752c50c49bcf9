// Package conntrack is rstguard's flow table and TCP state machine.
//
// It owns, for every tracked connection, what the middlebox has seen each
// side send (Peer: van Rooij's window tracking), the connection's state and
// the transitions between states: the handshake, simultaneous open, the
// closing states, pickup of mid-stream flows, gaps after packets that
// bypassed us, and new incarnations after TIME-WAIT or a reset (track.go,
// as gVisor's tcpconntrack TCB owns its state behind UpdateStateInbound).
// The bounded table with its timeouts, LRU lists and reaping is table.go;
// the window estimates and updates are window.go.
//
// Callers (policy) read flows through accessors and change them only
// through the Table's Create, SYN, Segment, Reset and Keep. Time is an
// argument (now, in nanoseconds): the package reads no clock, does no I/O
// and imports only packet and seqnum, never policy or anything above it.
package conntrack
