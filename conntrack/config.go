package conntrack

import "time"

// Timeouts are the idle timeouts per state (SPEC section 3; the defaults
// follow Linux nf_conntrack_proto_tcp.c tcp_timeouts[]).
type Timeouts struct {
	SynSent     time.Duration
	SynRecv     time.Duration
	Established time.Duration
	FinWait     time.Duration
	CloseWait   time.Duration
	LastAck     time.Duration
	TimeWait    time.Duration
	Closed      time.Duration
}

// DefaultTimeouts returns the Linux nf_conntrack defaults.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		SynSent:     120 * time.Second,
		SynRecv:     60 * time.Second,
		Established: 5 * 24 * time.Hour,
		FinWait:     120 * time.Second,
		CloseWait:   60 * time.Second,
		LastAck:     30 * time.Second,
		TimeWait:    120 * time.Second,
		Closed:      10 * time.Second,
	}
}

// Config bounds and tunes one table (one shard: one per NFQUEUE worker).
type Config struct {
	// MaxFlows is the hard bound on tracked flows in this table.
	MaxFlows int
	Timeouts Timeouts
	// Pickup lets a non-SYN, non-RST packet of an unknown flow create a flow
	// in established (mid-stream pickup, SPEC section 3).
	Pickup bool
}

// DefaultMaxFlows is the default bound of one table.
const DefaultMaxFlows = 262144

// DefaultConfig returns the defaults of SPEC section 3.
func DefaultConfig() Config {
	return Config{MaxFlows: DefaultMaxFlows, Timeouts: DefaultTimeouts(), Pickup: true}
}
