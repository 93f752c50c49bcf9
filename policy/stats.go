package policy

import (
	"sync/atomic"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// Stats are the engine's counters. The worker that owns the engine writes
// them with atomic adds; the metrics collector reads them at scrape time.
type Stats struct {
	Reasons [NumReasons]atomic.Uint64
	// Resets by the flow's state before the reset, and outcome.
	Resets [conntrack.NumStates][NumOutcomes]atomic.Uint64
	// TTLMismatch counts resets of tracked flows whose TTL is off the
	// claimed sender's baseline (Decision.TTLMismatch), by outcome.
	TTLMismatch [NumOutcomes]atomic.Uint64
	// Injection counts the evidence of injected resets, by signal.
	Injection [NumSignals]atomic.Uint64
	// Held counts the resets [injection] mode = "hold" held, by how their
	// hold ended (accepted: nothing contradicted them; dropped:
	// rst_injected).
	Held [NumOutcomes]atomic.Uint64
	// HoldFull counts valid resets judged without a hold because the
	// driver had no room for another held packet ([injection] max_held).
	HoldFull atomic.Uint64
	// SYNs (and SYN-ACKs) carrying ECN or reserved bits, by bit.
	FlaggedSYNs [NumSYNFlags]atomic.Uint64
	// Reloads applied.
	Reconfigured atomic.Uint64
	// Overrides counts the packets each [[policy.override]] applied to,
	// by its index in Config.Overrides.
	Overrides [MaxOverrides]atomic.Uint64
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
