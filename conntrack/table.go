package conntrack

import "sync/atomic"

// Stats are a table's counters, written by the owning goroutine with atomic
// operations and read by the metrics collector at scrape time.
type Stats struct {
	Flows     [NumStates]atomic.Int64 // flows currently tracked, by state
	Created   atomic.Uint64
	Expired   atomic.Uint64
	Evicted   [NumEvictCauses]atomic.Uint64
	Untracked atomic.Uint64 // packets of flows that could not be tracked (table full)
	Gaps      atomic.Uint64 // resynchronisations after unseen packets
	// OneWay counts flows whose other direction has not been seen yet
	// (picked-up flows; asymmetric routing shows up here).
	OneWay atomic.Int64
}

// Table is a bounded flow table owned by one goroutine.
type Table struct {
	cfg   Config
	stats Stats
}

// NewTable returns an empty table.
func NewTable(cfg Config) *Table { return &Table{cfg: cfg} }

// Stats returns the table's counters (safe from any goroutine).
func (t *Table) Stats() *Stats { return &t.stats }

// Len returns the number of tracked flows.
func (t *Table) Len() int { return 0 }
