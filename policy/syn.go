package policy

import (
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// countFlaggedSYN counts SYNs and SYN-ACKs that carry ECN or reserved bits.
// RFC 3360 (BCP 60) 2.1/3: a middlebox must not reset or drop a SYN because
// of these bits; rstguard never does, it only counts them.
func (e *Engine) countFlaggedSYN(fl packet.Flags) {
	if fl&packet.ECNReserved == 0 {
		return
	}
	if fl&packet.ECE != 0 {
		e.stats.FlaggedSYNs[SYNFlagECE].Add(1)
	}
	if fl&packet.CWR != 0 {
		e.stats.FlaggedSYNs[SYNFlagCWR].Add(1)
	}
	if fl&packet.AE != 0 {
		e.stats.FlaggedSYNs[SYNFlagAE].Add(1)
	}
	if fl&packet.Reserved != 0 {
		e.stats.FlaggedSYNs[SYNFlagReserved].Add(1)
	}
}

// handleSYN handles a SYN or SYN-ACK of a known flow. conntrack applies the
// handshake (retransmissions, a new ISN, simultaneous open, the SYN-ACK's
// acknowledgement of the SYN, a new incarnation after TIME-WAIT or a reset);
// what is left to the policy is a SYN in a synchronized state:
//
//   - RFC 9293 3.10.7.4 (fourth check) and RFC 5961 4.2: the endpoint
//     answers it with a challenge ACK; it is passed untouched and counted,
//     and it changes nothing.
//   - rst_mode = "exact" protects endpoints that lack RFC 5961: an RFC 793
//     stack resets a synchronized connection on a SYN inside its window
//     (RFC 793 p. 71, "If the SYN is in the window it is an error, send a
//     reset"), the blind SYN attack of RFC 5961 4.1, so such a SYN is
//     dropped. One outside the window passes: the endpoint answers it with
//     an ACK (a challenge ACK), which is what lets a peer that rebooted and
//     lost the connection recover: its reset in answer to that ACK carries
//     the exact sequence number and closes the flow, and its next SYN opens
//     a new incarnation. A rebooted peer whose new ISN happens to fall
//     inside the old window recovers the same way once the surviving
//     endpoint sends anything (data, a keepalive): the peer answers with
//     such a reset.
func (e *Engine) handleSYN(f *conntrack.Flow, slot uint32, d conntrack.Dir, p *packet.Parsed, now int64) Reason {
	res := e.table.SYN(slot, d, p, now)
	if res != conntrack.ResultSYNSynchronized {
		return e.reason(res)
	}
	if e.set.rstMode == RSTModeExact && f.RecvWindow(d^1).Contains(p.Seq) {
		return ReasonSYNInWindow
	}
	e.table.Keep(slot, now)
	return ReasonSYNSynchronized
}
