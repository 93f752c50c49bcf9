package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rstguard/rstguard/config"
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/metrics"
	"github.com/rstguard/rstguard/nfq"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/ruleset"
)

// defaultConfigPath is read when --config is not given and the file exists.
const defaultConfigPath = "/etc/rstguard/config.toml"

func cmdRun(args []string) int {
	fs, path := runFlags(os.Stderr)
	if code, done := parseFlags(fs, args, os.Stdout); done {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "rstguard run: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	explicit := *path != ""
	journal := journalStream(os.Stderr, os.Getenv("JOURNAL_STREAM"))
	cfg, file, err := loadRunConfig(*path, explicit)
	if err != nil {
		prefix := ""
		if journal {
			prefix = journalPrefix(slog.LevelError) // journalctl -p err shows why it did not start
		}
		printConfigErrors(os.Stderr, prefix, err)
		return 1
	}
	ls := newLogSwitch(os.Stderr, journal, cfg.Log.Format, cfg.SlogLevel())
	d := &runDaemon{cfgPath: *path, explicit: explicit, cfg: cfg, logs: ls, log: ls.logger()}
	if file == "" {
		d.log.Info("no configuration file; using the built-in defaults", "looked_for", defaultConfigPath, "log_format", ls.resolvedFormat())
	} else {
		d.log.Info("configuration loaded", "file", file, "log_format", ls.resolvedFormat())
	}
	d.log.Info("configuration", "summary", cfg.Summary())
	return d.run()
}

// loadRunConfig loads the named file, or the default file if it exists, or
// the built-in defaults. An explicitly named file that is missing is an
// error.
func loadRunConfig(path string, explicit bool) (*config.Config, string, error) {
	if !explicit {
		if _, err := os.Stat(defaultConfigPath); err != nil {
			return config.Default(), "", nil
		}
		path = defaultConfigPath
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, path, err
	}
	return cfg, path, nil
}

// printConfigErrors writes every error on a line of its own, after prefix
// (a journal priority, or "").
func printConfigErrors(w io.Writer, prefix string, err error) {
	for _, e := range config.Flatten(err) {
		fmt.Fprintf(w, "%srstguard run: %s\n", prefix, strings.ReplaceAll(e.Error(), "\n", "\n"+prefix))
	}
}

// logConfigErrors logs every error with its file, line and key.
func logConfigErrors(log *slog.Logger, msg string, err error) {
	for _, e := range config.Flatten(err) {
		var ce *config.Error
		if errors.As(e, &ce) {
			log.Error(msg, "file", ce.File, "line", ce.Line, "key", ce.Key, "err", e)
			continue
		}
		log.Error(msg, "err", e)
	}
}

type runDaemon struct {
	cfgPath string
	// guardPath is the guard state file of this network namespace.
	guardPath string
	explicit  bool
	cfg       *config.Config // the running configuration
	logs      *logSwitch
	log       *slog.Logger

	workers []*nfq.Worker
	proc    metrics.Process
	// rulesNow asks watchRules for an immediate read of the rules.
	rulesNow chan struct{}
	ready    atomic.Bool

	// For the control socket's status (any goroutine).
	started time.Time
	cfgNow  atomic.Pointer[runningConfig]
	rules   atomic.Pointer[rulesSeen]
}

// nfqMark converts an optional configured mark.
func nfqMark(m *config.MaskedMark) *nfq.Mark {
	if m == nil {
		return nil
	}
	return &nfq.Mark{Value: m.Value, Mask: m.Mask}
}

// setRunning records the configuration in force for status.
func (d *runDaemon) setRunning(cfg *config.Config, file string, restartPending []string) {
	names := make([]string, len(cfg.Policy.Overrides))
	for i, o := range cfg.Policy.Overrides {
		names[i] = o.Name
	}
	d.proc.OverrideNames.Store(&names)
	d.cfgNow.Store(&runningConfig{file: file, hash: fileHash(file), summary: cfg.Summary(), restart: restartPending,
		flowLimit: cfg.TableConfig(len(cfg.Queue.Numbers)).MaxFlows})
}

// workerProcs sets GOMAXPROCS to the number of queue workers, when the
// environment does not set it and that is fewer than the runtime's default
// (the CPUs it may use). The workers are the daemon's only busy goroutines;
// every other P would only spin looking for work each time a worker waits
// for the socket, on the very CPUs the kernel needs to forward, queue and
// reinject the packets. Measured with the SYN-flood benchmark (README,
// Performance), one queue on a 2-core gateway: 0.89 of the C ceiling with
// two Ps, above it with one. It reports the value and whether it set it.
func workerProcs(queues int) (int, bool) {
	cur := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" || queues <= 0 || queues >= cur {
		return cur, false
	}
	runtime.GOMAXPROCS(queues)
	return queues, true
}

// GuardStatePath is where the daemon keeps the rule counters it has
// accounted for, so that the next daemon accounts what passed while none ran
// (the unit's RuntimeDirectory=rstguard, kept across restarts). The file
// name ends in the daemon's network namespace inode
// (guard-state.net4026531840): each namespace has its own rules and
// counters, so daemons of different namespaces on one host (lab gateways,
// two HA gateways, containers sharing /run) never overwrite each other's
// state, and a restarted daemon in the same namespace finds its own.
const GuardStatePath = "/run/rstguard/guard-state"

// guardStatePath is GuardStatePath for this process's network namespace. A
// state file of an older daemon without the suffix is taken over.
func guardStatePath() string {
	fi, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return GuardStatePath
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return GuardStatePath
	}
	p := GuardStatePath + ".net" + strconv.FormatUint(st.Ino, 10)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		os.Rename(GuardStatePath, p) // no legacy file: nothing to take over
	}
	return p
}

// rulesInterval is how often the live rules and their counters are read.
const rulesInterval = 2 * time.Second

// watchRules reads the shipped rules' counters every rulesInterval (and at
// once, and after a reload): it accounts unjudged packets and resets by
// cause and warns when the rules queue to a number no worker binds or when
// no rule keeps unjudged resets from being delivered.
// bound are the queues the workers bind ([queue] numbers, which a reload
// does not change).
func (d *runDaemon) watchRules(ctx context.Context, bound []uint16) {
	t := time.NewTicker(rulesInterval)
	defer t.Stop()
	var last [metrics.NumRulesetProblems]bool
	report := true
	for {
		d.checkRules(ctx, bound, &last, report)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report = false
		case <-d.rulesNow:
			report = true // say the state again after a reload
		}
	}
}

// recheck asks watchRules for an immediate read (after a reload).
func (d *runDaemon) recheck() {
	select {
	case d.rulesNow <- struct{}{}:
	default:
	}
}

func (d *runDaemon) checkRules(ctx context.Context, bound []uint16, last *[metrics.NumRulesetProblems]bool, report bool) {
	rctx, cancel := context.WithTimeout(ctx, rulesInterval)
	defer cancel()
	c, err := ruleset.Read(rctx)
	var now [metrics.NumRulesetProblems]bool
	var unbound []uint16
	if err != nil {
		now[metrics.ProblemUnreadable] = true
	} else {
		var missing bool
		unbound, missing = c.Problems(bound)
		d.rules.Store(&rulesSeen{queues: c.Queues, unbound: unbound})
		now[metrics.ProblemQueueNotBound] = len(unbound) > 0
		now[metrics.ProblemGuardMissing] = missing
		if err := d.proc.Guard.Sample(c, len(unbound) > 0); err != nil && report {
			d.log.Warn("could not save the guard's counter state; after a restart, what passed while the daemon was down is not accounted",
				"path", d.guardPath, "err", err)
		}
	}
	for p := range metrics.NumRulesetProblems {
		d.proc.Problems[p].Store(now[p])
		if now[p] && (report || !last[p]) {
			switch p {
			case metrics.ProblemUnreadable:
				d.log.Warn("could not read the firewall rules; unvalidated packets are not counted", "err", err)
			case metrics.ProblemQueueNotBound:
				d.log.Warn("the firewall rules queue to queues no worker binds: their packets pass unjudged; add them to [queue] numbers or narrow the rules' --queue-balance",
					"unbound", unbound, "bound", bound)
			case metrics.ProblemGuardMissing:
				d.log.Warn("no firewall rule drops resets rstguard did not judge (the \"rstguard: unjudged reset\" rule of deploy/iptables.rules): while the daemon is down or its queue is full, forged resets are delivered")
			}
		} else if !now[p] && last[p] {
			d.log.Info("firewall rule problem resolved", "problem", p.String())
		}
	}
	*last = now
}

func queueConfig(cfg *config.Config, q uint16) nfq.Config {
	return nfq.Config{
		Queue:       q,
		FailOpen:    cfg.Queue.FailOpen,
		GSO:         cfg.Queue.GSO,
		MaxQueueLen: cfg.Queue.MaxQueueLen,
		CopyRange:   cfg.Queue.CopyRange,
		ReadBuffer:  cfg.Queue.SocketReceiveBuffer,
		MarkAccept:  nfqMark(cfg.Queue.MarkAccept),
		MarkDrop:    nfqMark(cfg.Queue.MarkDrop),
		Judged:      judgedMark(cfg),
		Monitor:     cfg.Policy.Mode == "monitor",
		MaxHeld:     cfg.Injection.MaxHeld,
	}
}

// judgedMark is [guard] judged_mark in the workers' terms.
func judgedMark(cfg *config.Config) nfq.Mark {
	return nfq.Mark{Value: cfg.Guard.JudgedMark.Value, Mask: cfg.Guard.JudgedMark.Mask}
}

func (d *runDaemon) run() int {
	cfg := d.cfg
	if len(cfg.Queue.Numbers) == 0 {
		d.log.Error("no queue configured; set [queue] numbers")
		return 1
	}
	if n, set := workerProcs(len(cfg.Queue.Numbers)); set {
		d.log.Info("one processor per queue worker", "gomaxprocs", n)
	}
	epoch := time.Now()
	d.proc.LastReloadSuccess.Store(epoch.UnixNano())
	d.guardPath = guardStatePath()
	d.proc.Guard = ruleset.NewAccountant(d.guardPath)
	d.rulesNow = make(chan struct{}, 1)
	pc, tc := cfg.PolicyConfig(), cfg.TableConfig(len(cfg.Queue.Numbers))
	var mqs []metrics.Queue
	for _, q := range cfg.Queue.Numbers {
		w := nfq.New(queueConfig(cfg, q), policy.NewEngine(pc, tc), nfq.Options{
			Epoch: epoch, Logger: d.log, LogRate: cfg.Log.RateLimit, LogBurst: cfg.Log.Burst,
		})
		d.workers = append(d.workers, w)
		mqs = append(mqs, metrics.Queue{Num: q, Engine: w.Engine(), Stats: w.Stats()})
	}
	d.started = epoch
	if d.cfgNow.Load() == nil {
		d.setRunning(cfg, cfg.File, nil)
	}
	evCtx, evStop := context.WithCancel(context.Background())
	if ev, err := d.startEvents(evCtx); err != nil {
		evStop()
		d.log.Error("could not start the event log", "err", err)
		return 1
	} else if ev != nil {
		// Stopped after the workers, so their last events are written.
		defer ev.Wait()
		defer evStop()
		d.proc.Events = ev
	} else {
		evStop()
	}
	d.proc.FlowsLimit.Store(flowsLimit(tc, len(d.workers)))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var bg sync.WaitGroup
	srvCtx, srvStop := context.WithCancel(context.Background())
	defer func() { srvStop(); bg.Wait() }()
	if cfg.Metrics.Listen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			metrics.NewCollector(mqs, &d.proc, nfq.ProcPath, buildVersion()),
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
		srv, err := metrics.Listen(cfg.Metrics.Listen, metrics.Handler(reg, d.isReady))
		if err != nil {
			d.log.Error("could not start the metrics listener", "err", err)
			return 1
		}
		d.log.Info("metrics listening", "addr", srv.Addr().String())
		bg.Add(1)
		go func() { defer bg.Done(); srv.Serve(srvCtx, d.log) }()
	}

	if p := cfg.Control.Socket; p != "" {
		ln, err := listenControl(p)
		if err != nil {
			// The guard matters more than its inspection: run without.
			d.log.Error("could not open the control socket; rstguard flows and status will not work", "path", p, "err", err)
		} else {
			defer os.Remove(p)
			bg.Add(1)
			go func() { defer bg.Done(); d.serveControl(srvCtx, ln) }()
			d.log.Info("control socket listening", "path", p)
		}
	}

	// Workers: bind every queue; READY=1 once all are bound.
	type result struct {
		q   uint16
		err error
	}
	done := make(chan result, len(d.workers))
	var bound atomic.Int32
	allBound := make(chan struct{})
	for _, w := range d.workers {
		go func() {
			err := w.Run(ctx, func() {
				if int(bound.Add(1)) == len(d.workers) {
					close(allBound)
				}
			})
			done <- result{w.Queue(), err}
		}()
	}
	running := len(d.workers)
	failed := false
	select {
	case <-allBound:
		d.ready.Store(true)
		d.notify(daemon.SdNotifyReady)
		d.log.Info("ready: every queue is bound", "queues", cfg.Queue.Numbers, "version", buildVersion())
	case r := <-done:
		running--
		d.log.Error("could not bind a queue; stopping", "queue", r.q, "err", r.err)
		failed = true
		stop()
	case <-ctx.Done():
	}

	wdCtx, wdStop := context.WithCancel(ctx)
	if !failed {
		bg.Add(2)
		go func() { defer bg.Done(); d.watchdog(wdCtx) }()
		go func() { defer bg.Done(); d.watchRules(wdCtx, cfg.Queue.Numbers) }()
	}

	for !failed && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			if d.proc.Events != nil {
				d.proc.Events.Reopen() // logrotate moved the file
			}
			d.reload()
			d.recheck()
		case r := <-done:
			// Run returns early only on a stop; anything else is a bug.
			running--
			if r.err != nil {
				d.log.Error("queue worker stopped", "queue", r.q, "err", r.err)
				failed = true
				stop()
			}
		}
	}
	wdStop()
	d.ready.Store(false)
	d.notify(daemon.SdNotifyStopping)
	d.log.Info("stopping: giving queued packets their verdicts, then unbinding")
	stop() // a second SIGTERM now kills the process the default way
	timeout := time.After(10 * time.Second)
	for running > 0 {
		select {
		case r := <-done:
			running--
			if r.err != nil && !failed {
				d.log.Error("queue worker stopped with an error", "queue", r.q, "err", r.err)
				failed = true
			}
		case <-timeout:
			d.log.Error("queue workers did not stop in time", "running", running)
			return 1
		}
	}
	d.log.Info("stopped")
	if failed {
		return 1
	}
	return 0
}

// startEvents gives every worker an event ring and starts the writer
// (nil, nil when [events] writes nowhere).
func (d *runDaemon) startEvents(ctx context.Context) (*events.Writer, error) {
	ec := d.cfg.Events
	if ec.Path == "" && !ec.Journal {
		return nil, nil
	}
	rings := make([]*events.Ring, len(d.workers))
	for i, w := range d.workers {
		rings[i] = events.NewRing(ec.RingSize)
		w.SetEvents(rings[i])
	}
	var extra io.Writer
	if ec.Journal {
		extra = os.Stdout
	}
	ev, err := events.NewWriter(rings, ec.Path, extra, d.log)
	if err != nil {
		return nil, err
	}
	go ev.Run(ctx)
	d.log.Info("event log", "path", ec.Path, "journal", ec.Journal, "ring_size", ec.RingSize)
	return ev, nil
}

// isReady is /readyz: every queue has been bound, none is being re-bound,
// and the daemon is not stopping.
func (d *runDaemon) isReady() bool {
	if !d.ready.Load() {
		return false
	}
	for _, w := range d.workers {
		if !w.Stats().Bound.Load() {
			return false
		}
	}
	return true
}

// notify sends an sd_notify state; outside systemd it does nothing.
func (d *runDaemon) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		d.log.Debug("sd_notify failed", "state", state, "err", err)
	}
}

// watchdog sends WATCHDOG=1 at half of WatchdogSec, only while every queue's
// receive loop is alive (bound and not stuck in one packet).
func (d *runDaemon) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		alive := true
		for _, w := range d.workers {
			if !w.Alive(interval / 2) {
				alive = false
				d.log.Warn("queue loop not alive; withholding the watchdog ping", "queue", w.Queue())
			}
		}
		if alive {
			d.notify(daemon.SdNotifyWatchdog)
		}
	}
}

// reload applies a new configuration on SIGHUP: policy, limits, marks and
// logging, keeping every flow. A bad file keeps the running configuration.
func (d *runDaemon) reload() {
	d.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
	defer d.notify(daemon.SdNotifyReady)
	cfg, file, err := loadRunConfig(d.cfgPath, d.explicit)
	if err != nil {
		d.proc.ReloadsFailed.Add(1)
		d.proc.LastReloadFailed.Store(true)
		logConfigErrors(d.log, "reload failed; keeping the running configuration", err)
		return
	}
	old := d.cfg
	keys, changes := restartPending(old, cfg)
	if len(keys) > 0 {
		// Said at every reload until a restart applies them.
		d.log.Warn("settings changed that take effect only at the next restart; the running values stay until then",
			"keys", strings.Join(keys, ", "), "changes", strings.Join(changes, "; "))
		keepRunning(cfg, old)
	}
	d.proc.RestartRequired.Store(len(keys) > 0)
	pc, tc := cfg.PolicyConfig(), cfg.TableConfig(len(d.workers))
	for _, w := range d.workers {
		w.Reconfigure(pc, tc, nfqMark(cfg.Queue.MarkAccept), nfqMark(cfg.Queue.MarkDrop), cfg.Log.RateLimit, cfg.Log.Burst)
		w.SetJudged(judgedMark(cfg))
		w.SetMonitor(cfg.Policy.Mode == "monitor")
	}
	d.logs.set(cfg.Log.Format, cfg.SlogLevel())
	d.cfg = cfg
	d.setRunning(cfg, file, keys)
	d.proc.FlowsLimit.Store(flowsLimit(tc, len(d.workers)))
	d.proc.ReloadsOK.Add(1)
	d.proc.LastReloadFailed.Store(false)
	d.proc.LastReloadSuccess.Store(time.Now().UnixNano())
	if file == "" {
		file = "(built-in defaults)"
	}
	d.log.Info("reloaded", "file", file, "restart_required", len(keys) > 0, "log_format", d.logs.resolvedFormat(), "summary", cfg.Summary())
}

// flowsLimit is what the tables of n queues hold together.
func flowsLimit(tc conntrack.Config, n int) int64 { return int64(tc.MaxFlows) * int64(n) }

// restartKeys are the settings a reload cannot apply: the queues' sockets
// and the metrics listener are set up once, at start. get formats a value
// for the log; keep copies the running value into a new configuration.
var restartKeys = []struct {
	key  string
	get  func(*config.Config) string
	keep func(dst, running *config.Config)
}{
	{"[queue] numbers", func(c *config.Config) string { return config.QueueList(c.Queue.Numbers) },
		func(d, r *config.Config) { d.Queue.Numbers = slices.Clone(r.Queue.Numbers) }},
	{"[queue] fail_open", func(c *config.Config) string { return strconv.FormatBool(c.Queue.FailOpen) },
		func(d, r *config.Config) { d.Queue.FailOpen = r.Queue.FailOpen }},
	{"[queue] gso", func(c *config.Config) string { return strconv.FormatBool(c.Queue.GSO) },
		func(d, r *config.Config) { d.Queue.GSO = r.Queue.GSO }},
	{"[queue] max_queue_len", func(c *config.Config) string { return strconv.FormatUint(uint64(c.Queue.MaxQueueLen), 10) },
		func(d, r *config.Config) { d.Queue.MaxQueueLen = r.Queue.MaxQueueLen }},
	{"[queue] copy_range", func(c *config.Config) string { return strconv.FormatUint(uint64(c.Queue.CopyRange), 10) },
		func(d, r *config.Config) { d.Queue.CopyRange = r.Queue.CopyRange }},
	{"[queue] socket_receive_buffer", func(c *config.Config) string { return strconv.Itoa(c.Queue.SocketReceiveBuffer) },
		func(d, r *config.Config) { d.Queue.SocketReceiveBuffer = r.Queue.SocketReceiveBuffer }},
	{"[metrics] listen", func(c *config.Config) string { return strconv.Quote(c.Metrics.Listen) },
		func(d, r *config.Config) { d.Metrics.Listen = r.Metrics.Listen }},
	{"[control] socket", func(c *config.Config) string { return strconv.Quote(c.Control.Socket) },
		func(d, r *config.Config) { d.Control.Socket = r.Control.Socket }},
	// SIGHUP reopens the event log file; changing where it goes or how it
	// is buffered needs a restart.
	{"[events] path", func(c *config.Config) string { return strconv.Quote(c.Events.Path) },
		func(d, r *config.Config) { d.Events.Path = r.Events.Path }},
	{"[events] journal", func(c *config.Config) string { return strconv.FormatBool(c.Events.Journal) },
		func(d, r *config.Config) { d.Events.Journal = r.Events.Journal }},
	{"[events] ring_size", func(c *config.Config) string { return strconv.Itoa(c.Events.RingSize) },
		func(d, r *config.Config) { d.Events.RingSize = r.Events.RingSize }},
	// Each worker's ring of held resets is allocated at start.
	{"[injection] max_held", func(c *config.Config) string { return strconv.Itoa(c.Injection.MaxHeld) },
		func(d, r *config.Config) { d.Injection.MaxHeld = r.Injection.MaxHeld }},
}

// restartPending lists the restart-only keys whose value in cfg differs
// from the running configuration, and each change as "KEY RUNNING ->
// CONFIGURED".
func restartPending(running, cfg *config.Config) (keys, changes []string) {
	for _, k := range restartKeys {
		if r, c := k.get(running), k.get(cfg); r != c {
			keys = append(keys, k.key)
			changes = append(changes, k.key+" "+r+" -> "+c)
		}
	}
	return keys, changes
}

// keepRunning puts the running values of the restart-only keys into cfg,
// so that cfg describes what is in force.
func keepRunning(cfg, running *config.Config) {
	for _, k := range restartKeys {
		k.keep(cfg, running)
	}
}
