package ruleset

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// Cause says why packets that reached the queue rule were not judged.
type Cause uint8

const (
	// CauseDaemonDown: no daemon was bound (stopped, restarting, crashed):
	// what the counters gained while no rstguard ran, accounted by the next
	// one from the state file the last one left.
	CauseDaemonDown Cause = iota
	// CauseQueueFull: the daemon ran and bound every queue the rules use,
	// so the kernel let them past a full queue (fail-open).
	CauseQueueFull
	// CauseQueueNotBound: the daemon ran but the rules send to a queue no
	// worker binds (--queue-bypass).
	CauseQueueNotBound

	NumCauses
)

func (c Cause) String() string {
	switch c {
	case CauseDaemonDown:
		return "daemon_down"
	case CauseQueueFull:
		return "queue_full"
	default:
		return "queue_not_bound"
	}
}

// Accountant turns successive reads of the rule counters into unvalidated
// packets and resets by cause. Sample is called from one goroutine; the
// totals are atomics for the metrics collector.
type Accountant struct {
	statePath string
	last      Counters
	started   bool

	Packets [NumCauses]atomic.Uint64
	Resets  [NumCauses]atomic.Uint64
	// QueueRule is the queue rule's packet counter at the last sample.
	QueueRule atomic.Uint64
}

// NewAccountant returns an accountant that keeps the counter values it has
// accounted for in statePath ("" keeps nothing: everything before the first
// sample is then ignored rather than guessed).
func NewAccountant(statePath string) *Accountant { return &Accountant{statePath: statePath} }

// Sample accounts a new read of the counters. unbound says whether some
// queue of the rules has no worker. The first sample of a daemon accounts
// what the counters gained since the state file's values (or since the
// rules were loaded, with no file) as CauseDaemonDown.
func (a *Accountant) Sample(c Counters, unbound bool) error {
	if !a.started {
		a.started = true
		prev, ok := a.load()
		if ok || a.statePath != "" {
			a.add(CauseDaemonDown, delta(prev.Unjudged, c.Unjudged), delta(prev.UnjudgedResets, c.UnjudgedResets))
		}
	} else {
		cause := CauseQueueFull
		if unbound {
			cause = CauseQueueNotBound
		}
		a.add(cause, delta(a.last.Unjudged, c.Unjudged), delta(a.last.UnjudgedResets, c.UnjudgedResets))
	}
	a.last = c
	a.QueueRule.Store(c.QueueRule)
	return a.save()
}

func (a *Accountant) add(c Cause, packets, resets uint64) {
	a.Packets[c].Add(packets)
	a.Resets[c].Add(resets)
}

// delta is what a counter gained; a counter that went backwards was reset
// (the rules were reloaded), so all of its value is new.
func delta(prev, now uint64) uint64 {
	if now < prev {
		return now
	}
	return now - prev
}

func (a *Accountant) load() (Counters, bool) {
	if a.statePath == "" {
		return Counters{}, false
	}
	b, err := os.ReadFile(a.statePath)
	if err != nil {
		return Counters{}, false
	}
	var c Counters
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return Counters{}, false
	}
	var e1, e2 error
	c.Unjudged, e1 = strconv.ParseUint(f[0], 10, 64)
	c.UnjudgedResets, e2 = strconv.ParseUint(f[1], 10, 64)
	return c, e1 == nil && e2 == nil
}

func (a *Accountant) save() error {
	if a.statePath == "" {
		return nil
	}
	tmp := a.statePath + ".tmp"
	if err := os.MkdirAll(filepath.Dir(a.statePath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", a.last.Unjudged, a.last.UnjudgedResets)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, a.statePath)
}
