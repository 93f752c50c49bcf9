package policy

import "strconv"

// Verdict is what happens to a packet.
type Verdict uint8

const (
	Accept Verdict = iota
	Drop
	// Hold: the packet is a reset that passed every check, held for
	// [injection] mode = "hold" (Decision.HoldToken): the driver gives its
	// verdict later, from Engine.Release or a later Decision.Injected.
	Hold
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Hold:
		return "hold"
	default:
		return "verdict(" + strconv.Itoa(int(v)) + ")"
	}
}

// Reason says why a packet got its verdict. The set is closed: its String
// values are the Prometheus label values and the replay output, and they are
// stable identifiers tools depend on (SPEC section 5 and 8).
type Reason uint8

const (
	// Accepting reasons.
	ReasonTracked               Reason = iota // a segment of a tracked flow, within its windows
	ReasonRSTValid                            // a reset that passed validation; the flow is now closed
	ReasonPickup                              // first packet of a mid-stream flow; the flow was created from it
	ReasonUnknownFlow                         // a packet of no known flow that the policy lets through
	ReasonUntrackedTableFull                  // a new flow could not be tracked: the table is full of live flows
	ReasonNotTCP                              // not TCP
	ReasonFragment                            // a non-first fragment
	ReasonTruncated                           // headers longer than the bytes copied from the kernel
	ReasonOutOfWindowPassed                   // a non-reset segment outside the window, passed (drop_out_of_window = false)
	ReasonSYNSynchronized                     // a SYN in a synchronized state (the endpoint answers with a challenge ACK)
	ReasonGapResync                           // a segment ahead of the window after packets we did not see; the flow was resynchronised
	ReasonRSTAnswersReservedSYN               // a valid reset answering a SYN that carried ECN or reserved bits (RFC 3360 violator upstream)
	ReasonRSTNotValidated                     // a reset of a flow a [[policy.override]] with validate = false covers, accepted unchecked

	// Dropping reasons.
	ReasonRSTUnknownFlow   // a reset for a flow never seen, unknown_flow_rst = "drop"
	ReasonRSTSynSentNoACK  // a reset answering a SYN without the ACK bit (RFC 9293 3.10.7.3)
	ReasonRSTSynSentBadACK // a reset answering a SYN whose ACK does not acknowledge it (RFC 9293 3.10.7.3)
	ReasonRSTOutOfWindow   // a reset whose sequence number is outside the receiver's window (RFC 9293 3.10.7.4)
	ReasonRSTNotExact      // rst_mode = "exact": in the window but not at an exact position (RFC 5961 3.2)
	ReasonSYNInWindow      // rst_mode = "exact": a SYN inside the receiver's window of a synchronized flow (RFC 5961 4)
	ReasonRSTInjected      // [injection] mode = "hold": a held reset whose purported sender went on as if it had not reset
	ReasonOutOfWindow      // a non-reset segment outside the window, drop_out_of_window = true
	ReasonMalformed        // truncated or inconsistent headers

	NumReasons // the number of reasons; not a reason
)

var reasonNames = [NumReasons]string{
	ReasonTracked:               "tracked",
	ReasonRSTValid:              "rst_valid",
	ReasonPickup:                "pickup",
	ReasonUnknownFlow:           "unknown_flow",
	ReasonUntrackedTableFull:    "untracked_table_full",
	ReasonNotTCP:                "not_tcp",
	ReasonFragment:              "fragment",
	ReasonTruncated:             "truncated",
	ReasonOutOfWindowPassed:     "out_of_window_passed",
	ReasonSYNSynchronized:       "syn_synchronized",
	ReasonGapResync:             "gap_resync",
	ReasonRSTAnswersReservedSYN: "rst_answers_reserved_syn",
	ReasonRSTNotValidated:       "rst_not_validated",
	ReasonRSTUnknownFlow:        "rst_unknown_flow",
	ReasonRSTSynSentNoACK:       "rst_syn_sent_no_ack",
	ReasonRSTSynSentBadACK:      "rst_syn_sent_bad_ack",
	ReasonRSTOutOfWindow:        "rst_out_of_window",
	ReasonRSTNotExact:           "rst_not_exact",
	ReasonSYNInWindow:           "syn_in_window",
	ReasonRSTInjected:           "rst_injected",
	ReasonOutOfWindow:           "out_of_window",
	ReasonMalformed:             "malformed",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Verdict returns the verdict that goes with r.
func (r Reason) Verdict() Verdict {
	if r >= ReasonRSTUnknownFlow && r < NumReasons {
		return Drop
	}
	return Accept
}
