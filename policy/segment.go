package policy

import "github.com/rstguard/rstguard/conntrack"

// reason maps what conntrack's state machine made of a packet that is not
// a reset (conntrack's Create, SYN and Segment) to its reason.
//
//   - A new flow: ReasonTracked from a SYN, ReasonPickup mid-stream
//     (SPEC 3); ReasonUnknownFlow where conntrack does not track it (pickup
//     off, or no ACK: null/FIN scans are not ours to judge, the endpoint
//     answers them); ReasonUntrackedTableFull when the table is full.
//   - SPEC 5: segments outside the window that are not resets are passed
//     by default (the endpoint discards them itself, RFC 9293 3.10.7.4
//     first check) but never move the tracked windows; drop_out_of_window
//     drops them.
//   - A segment ahead of the window after packets that bypassed us
//     (a gap): conntrack resynchronised the flow, ReasonGapResync, so a
//     missed burst never makes a later legitimate reset look forged.
func (e *Engine) reason(r conntrack.Result) Reason {
	switch r {
	case conntrack.ResultTracked:
		return ReasonTracked
	case conntrack.ResultResynced:
		return ReasonGapResync
	case conntrack.ResultPickedUp:
		return ReasonPickup
	case conntrack.ResultOutOfWindow:
		if e.set.dropOutOfWindow {
			return ReasonOutOfWindow
		}
		return ReasonOutOfWindowPassed
	case conntrack.ResultSYNSynchronized:
		return ReasonSYNSynchronized
	case conntrack.ResultUntracked:
		return ReasonUnknownFlow
	default:
		return ReasonUntrackedTableFull
	}
}
