// Package metrics exports rstguard's counters to Prometheus. A Collector
// reads the engines', tables' and workers' atomic counters at scrape time
// (SPEC section 7); the packet path never touches client_golang.
//
// It imports the engine packages, nfq, events and ruleset for their counters, and client_golang; never cmd.
package metrics

import (
	"runtime"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/nfq"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/ruleset"
)

// Queue is one worker's shard: its queue number, engine and counters.
type Queue struct {
	Num    uint16
	Engine *policy.Engine
	Stats  *nfq.Stats
}

// Process holds the daemon-wide counters that no engine owns.
type Process struct {
	ReloadsOK     atomic.Uint64
	ReloadsFailed atomic.Uint64
	// LastReloadFailed: the last reload failed, so the configuration in
	// force is not the file's (false after start).
	LastReloadFailed atomic.Bool
	// LastReloadSuccess is when the configuration in force was loaded, at
	// start or by the last successful reload, in Unix nanoseconds.
	LastReloadSuccess atomic.Int64
	// RestartRequired: the file sets keys a reload cannot apply (queues,
	// queue sockets, the listener) to values other than those in force.
	RestartRequired atomic.Bool
	// FlowsLimit is the flows the tables can hold, summed over the queues
	// (0: not exported).
	FlowsLimit atomic.Int64
	// Guard accounts the packets that reached the queue rule without
	// being judged (nil: the rules are not read).
	Guard *ruleset.Accountant
	// OverrideNames are the names of the [[policy.override]] entries in
	// force, by index (set at start and on reload).
	OverrideNames atomic.Pointer[[]string]
	// Events is the event log's writer (nil: no event log).
	Events *events.Writer
	// Problems of the live ruleset, by RulesetProblem.
	Problems [NumRulesetProblems]atomic.Bool
}

// RulesetProblem is something wrong with the live firewall rules.
type RulesetProblem uint8

const (
	// ProblemQueueNotBound: the rules queue to a number no worker binds.
	ProblemQueueNotBound RulesetProblem = iota
	// ProblemGuardMissing: no rule drops unjudged resets.
	ProblemGuardMissing
	// ProblemUnreadable: the rules could not be read.
	ProblemUnreadable

	NumRulesetProblems
)

func (p RulesetProblem) String() string {
	switch p {
	case ProblemQueueNotBound:
		return "queue_not_bound"
	case ProblemGuardMissing:
		return "guard_missing"
	default:
		return "unreadable"
	}
}

// Collector implements prometheus.Collector over the daemon's counters.
type Collector struct {
	queues   []Queue
	proc     *Process
	procPath string
	version  string
	goVer    string
}

// NewCollector returns a collector for queues. procPath is
// nfq.ProcPath except in tests; version is the build's version string.
func NewCollector(queues []Queue, proc *Process, procPath, version string) *Collector {
	if proc == nil {
		proc = new(Process)
	}
	return &Collector{queues: queues, proc: proc, procPath: procPath, version: version, goVer: runtime.Version()}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("rstguard_"+name, help, labels, nil)
}

var (
	descPackets = desc("packets_total",
		"Packets decided, by verdict and reason (summed over queues).", "verdict", "reason")
	descResets = desc("resets_total",
		"Resets seen, by the flow's state before the reset and by outcome.", "state", "outcome")
	descSYNFlagged = desc("syn_flagged_total",
		"SYNs and SYN-ACKs carrying ECN or reserved bits, by bit; they are tracked and accepted (RFC 3360).", "flag")
	descFlows = desc("flows_tracked",
		"Flows currently tracked, by state.", "state")
	descFlowsCreated = desc("flows_created_total",
		"Flows created in the tables.")
	descFlowsExpired = desc("flows_expired_total",
		"Flows removed after their state's idle timeout.")
	descFlowsEvicted = desc("flows_evicted_total",
		"Live flows removed before their timeout to make room, by cause.", "cause")
	descUntracked = desc("untracked_packets_total",
		"Packets of new flows accepted untracked because the table was full of live flows.")
	descGaps = desc("gap_resyncs_total",
		"Flows resynchronised after packets the daemon did not see (for example a burst that bypassed the queue).")
	descOneWay = desc("flows_one_way",
		"Tracked flows whose other direction has not been seen (asymmetric routing shows up here).")
	descQueuePackets = desc("queue_packets_total",
		"Packets received from the kernel, by queue.", "queue")
	descQueueKernelDropped = desc("queue_kernel_dropped_total",
		"Packets the kernel dropped because the queue was full (fail_open off), from /proc/net/netfilter/nfnetlink_queue.", "queue")
	descQueueUserDropped = desc("queue_user_dropped_total",
		"Packets the kernel dropped because the daemon's netlink socket buffer was full, from /proc/net/netfilter/nfnetlink_queue.", "queue")
	descQueueLength = desc("queue_length",
		"Packets waiting in the kernel queue for a verdict, from /proc/net/netfilter/nfnetlink_queue.", "queue")
	descQueueBound = desc("queue_bound",
		"Whether the queue is bound to the daemon (1) or not (0).", "queue")
	descMarkedDrops = desc("drops_marked_total",
		"Packets the policy dropped that were accepted with the mark_drop mark instead (they are also counted as drops in rstguard_packets_total).", "queue")
	descVerdictErrors = desc("queue_verdict_errors_total",
		"Verdicts the kernel did not take, by queue.", "queue")
	descReceiveErrors = desc("queue_receive_errors_total",
		"Errors reading the queue's netlink socket, by queue.", "queue")
	descRebinds = desc("queue_rebinds_total",
		"Times the queue was re-bound after its netlink socket became unusable.", "queue")
	descLatency = desc("decision_duration_seconds",
		"Time to decide one packet (parse, flow lookup, policy, flow update), by queue.", "queue")
	descVerdictLatency = desc("verdict_latency_seconds",
		"Time from the receive of a burst of packets to the send of their verdicts, observed once per packet: how long each packet waited in the daemon, by queue.", "queue")
	descUnjudged = desc("queue_unjudged_packets_total",
		"Packets accepted without a decision and so without the judged mark (no payload in the message, a message cut short, a recovered panic); the guard rule drops those that are resets.", "queue")
	descTruncated = desc("queue_truncated_messages_total",
		"Messages from the kernel larger than the receive slot (copy_range too large for the buffer); their packets are unjudged.", "queue")
	descBadMessages = desc("queue_bad_messages_total",
		"Netlink messages from the kernel that could not be parsed.", "queue")
	descGSO = desc("queue_gso_packets_total",
		"GSO super-packets queued unsegmented (queue gso = true).", "queue")
	descPanics = desc("panics_recovered_total",
		"Panics recovered while handling a packet; each such packet was accepted.", "queue")
	descLogSuppressed = desc("log_lines_suppressed_total",
		"Per-packet log lines suppressed by the log rate limit, by queue.", "queue")
	descReconfigured = desc("engine_reconfigurations_total",
		"Configurations applied by the queue's engine (one per successful reload).", "queue")
	descReloads = desc("config_reloads_total",
		"Successful configuration reloads.")
	descReloadsFailed = desc("config_reload_failed_total",
		"Configuration reloads that failed; the running configuration was kept.")
	descLastReloadOK = desc("config_last_reload_successful",
		"Whether the last configuration reload succeeded (1) or failed, the previous configuration staying in force (0); 1 after start.")
	descLastReloadTime = desc("config_last_reload_success_timestamp_seconds",
		"When the configuration in force was loaded, at start or by the last successful reload, in seconds since the Unix epoch.")
	descRestartRequired = desc("config_restart_required",
		"1 while the configuration file changes settings a reload cannot apply (queues, queue socket settings, the metrics listener): the old values stay in force until a restart.")
	descFlowsLimit = desc("flows_limit",
		"Flows the tables can hold, summed over the queues: [conntrack] max_flows rounded up to a multiple of the number of queues.")
	descUnvalidated = desc("unvalidated_packets_total",
		"Packets that reached the queue rule but were not judged (bypass or fail-open), from the shipped rules' counters, by cause.", "cause")
	descUnvalidatedResets = desc("unvalidated_resets_total",
		"Resets among the unvalidated packets; the shipped rules drop them, so none is delivered.", "cause")
	descQueueRule = desc("queue_rule_packets_total",
		"Packets that reached the shipped queue rule (IPv4 and IPv6), from its counter.")
	descRulesetProblem = desc("ruleset_problem",
		"1 while the live firewall rules have the problem: queue_not_bound (a queue the rules use has no worker), guard_missing (no rule drops unjudged resets), unreadable.", "problem")
	descTTLMismatch = desc("resets_ttl_mismatch_total",
		"Resets of tracked flows whose IP TTL (hop limit) is off the claimed sender's baseline by more than [injection] ttl_tolerance: the mark of resets injected on the path, by outcome.", "outcome")
	descInjection = desc("injection_suspected_total",
		"Evidence that a reset was injected on the path ([injection] mode log or hold), by signal: talked_after_reset, ttl_mismatch, reset_seq_changed, synack_after_refusal.", "signal")
	descHeld = desc("resets_held_total",
		"Resets held by [injection] mode = \"hold\" that got their verdict, by outcome: accepted (the hold ended), dropped (rst_injected: the purported sender went on).", "outcome")
	descHoldFull = desc("resets_hold_full_total",
		"Valid resets judged at once because [injection] max_held resets were held already.")
	descHeldNow = desc("resets_held",
		"Resets held right now, waiting for their verdict, by queue.", "queue")
	descHeldLost = desc("resets_held_lost_total",
		"Held resets lost with their netlink socket (a re-bind) before their verdict; the kernel dropped them, by queue.", "queue")
	descRevived = desc("flows_revived_total",
		"Flows brought back from closed because the endpoints went on after an accepted reset (ignored or injected), by the state the reset was accepted in.", "state")
	descFlushed = desc("flows_flushed_total",
		"Flows removed through the control socket (rstguard flows flush), by queue.", "queue")
	descMonitorPassed = desc("monitor_passed_total",
		"Packets the policy dropped that [policy] mode = \"monitor\" accepted (they are counted as drops in rstguard_packets_total too).", "queue")
	descOverridePackets = desc("policy_override_packets_total",
		"Packets decided under a [[policy.override]] entry, by its name.", "override")
	descEventsWritten = desc("events_written_total",
		"Event log lines written ([events]: one per dropped packet and per reset decision).")
	descEventsLost = desc("events_lost_total",
		"Events not written because a queue's event ring was full (the verdicts never wait for the log).")
	descEventErrors = desc("event_write_errors_total",
		"Event log lines lost to failed writes (the log line says why).")
	descBuildInfo = desc("build_info",
		"Build information; the value is always 1.", "version", "goversion")
)

var allDescs = []*prometheus.Desc{
	descPackets, descResets, descSYNFlagged, descFlows, descFlowsCreated, descFlowsExpired,
	descFlowsEvicted, descUntracked, descGaps, descOneWay, descQueuePackets, descQueueKernelDropped,
	descQueueUserDropped, descQueueLength, descQueueBound, descMarkedDrops, descVerdictErrors,
	descReceiveErrors, descRebinds, descLatency, descVerdictLatency, descUnjudged, descTruncated,
	descBadMessages, descGSO, descPanics, descLogSuppressed, descReconfigured,
	descReloads, descReloadsFailed, descLastReloadOK, descLastReloadTime, descRestartRequired,
	descFlowsLimit, descUnvalidated, descUnvalidatedResets, descQueueRule,
	descRulesetProblem, descTTLMismatch, descInjection, descHeld, descHoldFull, descHeldNow, descHeldLost, descRevived, descFlushed, descMonitorPassed, descOverridePackets, descEventsWritten, descEventsLost, descEventErrors, descBuildInfo,
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	var reasons [policy.NumReasons]uint64
	var resets [conntrack.NumStates][policy.NumOutcomes]uint64
	var syns [policy.NumSYNFlags]uint64
	var flows [conntrack.NumStates]int64
	var evicted [conntrack.NumEvictCauses]uint64
	var created, expired, untracked, gaps uint64
	var revived [conntrack.NumStates]uint64
	var ttlMismatch, held [policy.NumOutcomes]uint64
	var injection [policy.NumSignals]uint64
	var holdFull uint64
	var oneWay int64
	for _, q := range c.queues {
		s := q.Engine.Stats()
		for i := range reasons {
			reasons[i] += s.Reasons[i].Load()
		}
		for st := range resets {
			for o := range resets[st] {
				resets[st][o] += s.Resets[st][o].Load()
			}
		}
		for i := range syns {
			syns[i] += s.FlaggedSYNs[i].Load()
		}
		for o := range ttlMismatch {
			ttlMismatch[o] += s.TTLMismatch[o].Load()
			held[o] += s.Held[o].Load()
		}
		for i := range injection {
			injection[i] += s.Injection[i].Load()
		}
		holdFull += s.HoldFull.Load()
		ts := q.Engine.Table().Stats()
		for i := range flows {
			flows[i] += ts.Flows[i].Load()
		}
		for i := range evicted {
			evicted[i] += ts.Evicted[i].Load()
		}
		created += ts.Created.Load()
		expired += ts.Expired.Load()
		untracked += ts.Untracked.Load()
		gaps += ts.Gaps.Load()
		oneWay += ts.OneWay.Load()
		for i := range revived {
			revived[i] += ts.Revived[i].Load()
		}
	}
	for r := policy.Reason(0); r < policy.NumReasons; r++ {
		counter(descPackets, reasons[r], r.Verdict().String(), r.String())
	}
	for st := conntrack.State(0); st < conntrack.NumStates; st++ {
		for o := policy.Outcome(0); o < policy.NumOutcomes; o++ {
			counter(descResets, resets[st][o], st.String(), o.String())
		}
	}
	for f := policy.SYNFlag(0); f < policy.NumSYNFlags; f++ {
		counter(descSYNFlagged, syns[f], f.String())
	}
	for st := conntrack.StateSynSent; st < conntrack.NumStates; st++ {
		gauge(descFlows, float64(flows[st]), st.String())
	}
	counter(descFlowsCreated, created)
	counter(descFlowsExpired, expired)
	for cs := conntrack.EvictCause(0); cs < conntrack.NumEvictCauses; cs++ {
		counter(descFlowsEvicted, evicted[cs], cs.String())
	}
	counter(descUntracked, untracked)
	counter(descGaps, gaps)
	for o := policy.Outcome(0); o < policy.NumOutcomes; o++ {
		counter(descTTLMismatch, ttlMismatch[o], o.String())
		counter(descHeld, held[o], o.String())
	}
	for sg := policy.Signal(0); sg < policy.NumSignals; sg++ {
		counter(descInjection, injection[sg], sg.String())
	}
	counter(descHoldFull, holdFull)
	for _, st := range []conntrack.State{conntrack.StateSynSent, conntrack.StateSynRecv, conntrack.StateEstablished,
		conntrack.StateFinWait, conntrack.StateCloseWait, conntrack.StateLastAck} {
		counter(descRevived, revived[st], st.String())
	}
	gauge(descOneWay, float64(oneWay))
	if l := c.proc.FlowsLimit.Load(); l > 0 {
		gauge(descFlowsLimit, float64(l))
	}

	// Kernel queue statistics: only for our queues; a missing file (the
	// nfnetlink_queue module not loaded yet) leaves them out.
	var kernel map[uint16]nfq.ProcQueue
	if c.procPath != "" {
		if pqs, err := nfq.ReadProcQueues(c.procPath); err == nil {
			kernel = make(map[uint16]nfq.ProcQueue, len(pqs))
			for _, p := range pqs {
				kernel[p.Queue] = p
			}
		}
	}
	bounds := make([]float64, len(nfq.LatencyBounds))
	for i, b := range nfq.LatencyBounds {
		bounds[i] = float64(b) / 1e9
	}
	for _, q := range c.queues {
		ql := strconv.Itoa(int(q.Num))
		s := q.Stats
		counter(descQueuePackets, s.Packets.Load(), ql)
		gauge(descHeldNow, float64(s.Held.Load()), ql)
		counter(descHeldLost, s.HeldLost.Load(), ql)
		if p, ok := kernel[q.Num]; ok {
			counter(descQueueKernelDropped, uint64(p.Dropped), ql)
			counter(descQueueUserDropped, uint64(p.UserDropped), ql)
			gauge(descQueueLength, float64(p.Total), ql)
		}
		bound := 0.0
		if s.Bound.Load() {
			bound = 1
		}
		gauge(descQueueBound, bound, ql)
		counter(descMarkedDrops, s.MarkedDrops.Load(), ql)
		counter(descVerdictErrors, s.VerdictErrors.Load(), ql)
		counter(descReceiveErrors, s.ReceiveErrors.Load(), ql)
		counter(descRebinds, s.Rebinds.Load(), ql)
		counter(descPanics, s.Panics.Load(), ql)
		counter(descUnjudged, s.Unjudged.Load(), ql)
		counter(descMonitorPassed, s.MonitorPassed.Load(), ql)
		counter(descFlushed, s.Flushed.Load(), ql)
		counter(descTruncated, s.Truncated.Load(), ql)
		counter(descBadMessages, s.BadMessages.Load(), ql)
		counter(descGSO, s.GSOPackets.Load(), ql)
		counter(descLogSuppressed, s.LogSuppressed.Load(), ql)
		counter(descReconfigured, q.Engine.Stats().Reconfigured.Load(), ql)

		for _, hd := range []struct {
			h *nfq.Histogram
			d *prometheus.Desc
		}{{&s.Latency, descLatency}, {&s.VerdictLatency, descVerdictLatency}} {
			cum, sum := hd.h.Snapshot()
			buckets := make(map[float64]uint64, len(bounds))
			for i, b := range bounds {
				buckets[b] = cum[i]
			}
			ch <- prometheus.MustNewConstHistogram(hd.d, cum[len(cum)-1], sum, buckets, ql)
		}
	}
	counter(descReloads, c.proc.ReloadsOK.Load())
	counter(descReloadsFailed, c.proc.ReloadsFailed.Load())
	if names := c.proc.OverrideNames.Load(); names != nil {
		for i, name := range *names {
			if i >= policy.MaxOverrides {
				break
			}
			var n uint64
			for _, q := range c.queues {
				n += q.Engine.Stats().Overrides[i].Load()
			}
			counter(descOverridePackets, n, name)
		}
	}
	var evWritten, evLost, evErrors uint64
	if ev := c.proc.Events; ev != nil {
		evWritten, evLost, evErrors = ev.Written(), ev.Lost(), ev.Errors()
	}
	counter(descEventsWritten, evWritten)
	counter(descEventsLost, evLost)
	counter(descEventErrors, evErrors)
	gauge(descLastReloadOK, boolValue(!c.proc.LastReloadFailed.Load()))
	ns := c.proc.LastReloadSuccess.Load()
	gauge(descLastReloadTime, float64(ns/1e9)+float64(ns%1e9)/1e9)
	gauge(descRestartRequired, boolValue(c.proc.RestartRequired.Load()))
	if g := c.proc.Guard; g != nil {
		for cause := range ruleset.NumCauses {
			counter(descUnvalidated, g.Packets[cause].Load(), cause.String())
			counter(descUnvalidatedResets, g.Resets[cause].Load(), cause.String())
		}
		counter(descQueueRule, g.QueueRule.Load())
		for p := range NumRulesetProblems {
			v := 0.0
			if c.proc.Problems[p].Load() {
				v = 1
			}
			gauge(descRulesetProblem, v, p.String())
		}
	}
	gauge(descBuildInfo, 1, c.version, c.goVer)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
