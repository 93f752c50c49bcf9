// Package policy is rstguard's pure decision engine: for one packet and the
// flow as it was before it, a verdict and a reason. It does no I/O, reads no
// clock and logs nothing; the daemon, the replay tool and the tests all run
// this same code.
package policy

import (
	"sync/atomic"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/seqnum"
)

// RSTMode selects how strictly resets of synchronized flows are validated.
type RSTMode uint8

const (
	// RSTModeWindow accepts a reset anywhere in the receiver's window
	// (RFC 9293 3.10.7.4, first check).
	RSTModeWindow RSTMode = iota
	// RSTModeExact accepts only the positions a RFC 5961 host accepts.
	RSTModeExact
)

func (m RSTMode) String() string {
	if m == RSTModeExact {
		return "exact"
	}
	return "window"
}

// Config is the policy part of the configuration (SPEC section 6 [policy]).
type Config struct {
	RSTMode RSTMode
	// DropUnknownFlowRST drops resets of flows never seen
	// (unknown_flow_rst = "drop"); the default accepts them.
	DropUnknownFlowRST bool
	// DropOutOfWindow drops non-reset segments outside the window.
	DropOutOfWindow bool
}

// DefaultConfig returns the defaults of SPEC section 6.
func DefaultConfig() Config { return Config{} }

// SYNFlag indexes the counters of SYNs carrying ECN or reserved bits.
type SYNFlag uint8

const (
	SYNFlagECE SYNFlag = iota
	SYNFlagCWR
	SYNFlagAE
	SYNFlagReserved

	NumSYNFlags
)

func (f SYNFlag) String() string {
	switch f {
	case SYNFlagECE:
		return "ece"
	case SYNFlagCWR:
		return "cwr"
	case SYNFlagAE:
		return "ae"
	default:
		return "reserved"
	}
}

// SYNFlagNames names the ECN and reserved bits of f, as the flag label
// values do: "ece,cwr,ae,reserved" (empty when none is set).
func SYNFlagNames(f packet.Flags) string {
	s := ""
	for fl, bit := range [NumSYNFlags]packet.Flags{packet.ECE, packet.CWR, packet.AE, packet.Reserved} {
		if f&bit == 0 {
			continue
		}
		if s != "" {
			s += ","
		}
		s += SYNFlag(fl).String()
	}
	return s
}

// Outcome of a reset, for the resets-by-state counter.
type Outcome uint8

const (
	OutcomeAccepted Outcome = iota
	OutcomeDropped
	NumOutcomes
)

func (o Outcome) String() string {
	if o == OutcomeDropped {
		return "dropped"
	}
	return "accepted"
}

// Stats are the engine's counters. The worker that owns the engine writes
// them with atomic adds; the metrics collector reads them at scrape time.
type Stats struct {
	Reasons [NumReasons]atomic.Uint64
	// Resets by the flow's state before the reset, and outcome.
	Resets [conntrack.NumStates][NumOutcomes]atomic.Uint64
	// SYNs (and SYN-ACKs) carrying ECN or reserved bits, by bit.
	FlaggedSYNs [NumSYNFlags]atomic.Uint64
	// Reloads applied.
	Reconfigured atomic.Uint64
}

// Decision is the engine's answer for one packet: the verdict, its reason,
// and what the decision looked at, for the log line and the replay record
// the drivers build from it and from the same packet.Parsed.
type Decision struct {
	Verdict Verdict
	Reason  Reason
	// State is the flow's state before the packet (StateNone: no flow).
	State conntrack.State
	// Initiator: the packet came from the side that sent the first SYN.
	Initiator bool
	// Checked is true when the packet was a reset whose sequence number
	// was checked; WinLo and WinHi then bound the sequence numbers it could
	// have had, [WinLo, WinHi).
	Checked      bool
	WinLo, WinHi seqnum.Value
	// SYNFlags are the ECN/reserved bits of the SYN a reset answered
	// (ReasonRSTAnswersReservedSYN).
	SYNFlags packet.Flags
}
