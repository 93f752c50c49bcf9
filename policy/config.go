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
}

// DefaultConfig returns the defaults of SPEC section 6.
func DefaultConfig() Config { return Config{} }
