package policy

import (
	"sync/atomic"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
)

// Engine decides packets for one shard of flows. One goroutine owns it
// (Process, Decide, Detail, Table); Stats and Reconfigure are safe from any
// goroutine.
type Engine struct {
	cfg     Config
	table   *conntrack.Table
	pending atomic.Pointer[pendingConfig]
	stats   Stats
	detail  Detail
}

type pendingConfig struct {
	policy Config
	table  conntrack.Config
}

// NewEngine returns an engine with an empty table.
func NewEngine(pc Config, tc conntrack.Config) *Engine {
	return &Engine{cfg: pc, table: conntrack.NewTable(tc)}
}

// Reconfigure hands the engine a new configuration. The owning goroutine
// applies it before its next packet; the flow table is kept.
func (e *Engine) Reconfigure(pc Config, tc conntrack.Config) {
	e.pending.Store(&pendingConfig{policy: pc, table: tc})
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Table returns the engine's flow table (owning goroutine only, except its
// Stats).
func (e *Engine) Table() *conntrack.Table { return e.table }

// Detail describes the last decision (owning goroutine only).
func (e *Engine) Detail() *Detail { return &e.detail }

// Process decodes b (see packet.Decode for wireLen) and decides it at time
// now (nanoseconds on any monotonic clock; replay uses capture time). It is
// the daemon's and replay's per-packet entry point.
func (e *Engine) Process(b []byte, wireLen int, now int64) (Verdict, Reason) {
	var p packet.Parsed
	packet.Decode(b, wireLen, &p)
	return e.Decide(&p, now)
}

// Decide gives the verdict for p, and updates p's flow if p is accepted.
func (e *Engine) Decide(p *packet.Parsed, now int64) (Verdict, Reason) {
	// TODO: implement
	return Accept, ReasonTracked
}
