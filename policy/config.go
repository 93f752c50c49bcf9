package policy

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
	// Overrides change these settings for the flows they match, the
	// first match in order (at most MaxOverrides).
	Overrides []Override
	// Injection is [injection].
	Injection Injection
}

// Default [injection] settings.
const (
	DefaultTTLTolerance = 2
	DefaultMaxHold      = int64(50e6) // 50 ms
	// DefaultMaxHeld is the default [injection] max_held (a driver's
	// bound on the resets it holds at once).
	DefaultMaxHeld = 1024
)

// DefaultConfig returns the defaults of SPEC section 6.
func DefaultConfig() Config {
	return Config{Injection: Injection{Mode: InjectionLog, TTLTolerance: DefaultTTLTolerance, MaxHold: DefaultMaxHold}}
}

// InjectionMode selects what the engine does about resets that pass every
// window check but may have been injected by an observer on the path
// ([injection] mode).
type InjectionMode uint8

const (
	// InjectionLog checks every accepted reset after the fact against what
	// its flow did next, and reports the evidence (Decision.Signal).
	InjectionLog InjectionMode = iota
	// InjectionOff looks for no evidence.
	InjectionOff
	// InjectionHold holds a reset that passed every other check
	// (VerdictHold) until its purported sender shows it did not reset
	// (the reset is then dropped as rst_injected) or the hold ends.
	InjectionHold
)

func (m InjectionMode) String() string {
	switch m {
	case InjectionOff:
		return "off"
	case InjectionHold:
		return "hold"
	}
	return "log"
}

// Injection is the [injection] part of the configuration the engine uses.
type Injection struct {
	Mode InjectionMode
	// TTLTolerance is how far a reset's TTL may be from its claimed
	// sender's baseline before it counts as evidence.
	TTLTolerance uint8
	// MaxHold is how long a held reset waits, in nanoseconds (the drivers
	// keep the deadline; the engine needs it for replay and for the
	// decision's record).
	MaxHold int64
}
