package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Observation is what one scenario saw in one run (guard off or on).
type Observation struct {
	// Forged is the number of packets the attacker sent; Delivered how many
	// of them reached the victim host (its INPUT chain).
	Forged    int `json:"forged"`
	Delivered int `json:"delivered"`
	// Outcome is what the victim's connection did: survived, reset,
	// refused, established, timeout, ...
	Outcome string `json:"outcome"`
	// Note adds what else was observed (e.g. "data on SYN").
	Note string `json:"note,omitempty"`
	// Attempts is each attempt's outcome, in order, for scenarios that
	// attack several requests or connections.
	Attempts []string `json:"attempts,omitempty"`
	// Genuine is the number of genuine resets the server sent after the
	// attack (refusals of a closed port, SO_LINGER 0 aborts); GenuineSeen
	// how many the client's application saw as ECONNREFUSED / ECONNRESET,
	// GenuineArrived how many were seen on the client's eth0, and
	// GenuineDelayMedian and GenuineDelayMax the trip of those from the
	// server's eth0 to the client's, in seconds: with the guard on, the
	// delay its hold adds.
	Genuine            int     `json:"genuine_resets,omitempty"`
	GenuineSeen        int     `json:"genuine_resets_seen,omitempty"`
	GenuineArrived     int     `json:"genuine_resets_arrived,omitempty"`
	GenuineDelayMedian float64 `json:"genuine_reset_delay_median_seconds,omitempty"`
	GenuineDelayMax    float64 `json:"genuine_reset_delay_max_seconds,omitempty"`
	// Metrics holds the increase of the guard's counters during the
	// scenario (guard on only), keyed like `name{label="value"}`.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Err is set when the scenario could not be played (a harness failure,
	// not an outcome).
	Err string `json:"error,omitempty"`
}

// Drops is the number of packets the guard dropped during the scenario.
func (o Observation) Drops() float64 {
	var n float64
	for k, v := range o.Metrics {
		if strings.HasPrefix(k, "rstguard_packets_total{") && strings.Contains(k, `verdict="drop"`) {
			n += v
		}
	}
	return n
}

// Packets is the number of packets the guard decided during the scenario.
func (o Observation) Packets() float64 {
	var n float64
	for k, v := range o.Metrics {
		if strings.HasPrefix(k, "rstguard_packets_total{") {
			n += v
		}
	}
	return n
}

// Metric returns the increase of one series, e.g.
// Metric("rstguard_syn_flagged_total", "flag", "ece").
func (o Observation) Metric(name string, labels ...string) float64 {
	return o.Metrics[seriesKey(name, labels...)]
}

// Scenario is one attack or legitimate case, played with the guard off and
// on.
type Scenario struct {
	Name   string
	Expect string // the expected outcome with the guard
	// Mode is the guard's rst_mode for this scenario ("window" if empty).
	Mode string
	// Injection is the guard's [injection] mode for this scenario ("off",
	// "log" or "hold"); empty leaves the key out of the configuration, so
	// the daemon's default applies.
	Injection string
	Run       func(ctx context.Context, e *Env) (Observation, error)
	// CheckOn returns why the guard-on observation is wrong, or nil.
	CheckOn func(Observation) error
	// CheckOff returns why the guard-off observation does not show the
	// attack to be real, or nil; nil func when there is nothing to show.
	CheckOff func(Observation) error
}

// checkOn judges the guard-on observation: no harness error, the guard
// decided packets during the scenario (it was inline), and CheckOn.
func (s Scenario) checkOn(o Observation) error {
	if o.Err != "" {
		return errors.New(o.Err)
	}
	if o.Packets() == 0 {
		return errors.New("the guard decided no packets during the scenario: it was not inline")
	}
	return s.CheckOn(o)
}

// Result is one scenario's row of the report.
type Result struct {
	Name   string      `json:"scenario"`
	Expect string      `json:"expected"`
	Off    Observation `json:"guard_off"`
	On     Observation `json:"guard_on"`
	Pass   bool        `json:"pass"`
	Why    string      `json:"why,omitempty"`
}

// Report is the result of a whole lab run.
type Report struct {
	Results []Result `json:"scenarios"`
	// Metrics is the guard's counters over the whole guard-on run (summed
	// over daemon restarts), non-zero series only.
	Metrics  map[string]float64 `json:"metrics"`
	Seconds  float64            `json:"seconds"`
	Pass     bool               `json:"pass"`
	Topology string             `json:"topology"`
	// HA is the HA failover's report when `rstguard lab` played it too.
	HA *HAReport `json:"ha_failover,omitempty"`
}

// Options configures Run.
type Options struct {
	// Binary is the rstguard executable whose `run` subcommand is the guard.
	Binary string
	// Dir holds the generated configuration (a temporary directory if
	// empty).
	Dir string
	// Only, if set, selects scenarios by name.
	Only func(name string) bool
	// Log receives progress lines (nil: silent).
	Log io.Writer
	// OffOnly plays only the guard-off half: the attacks against the bare
	// kernel, without a binary.
	OffOnly bool
}

// Env is what a scenario runs against.
type Env struct {
	T     *Topology
	Guard bool // the guard is on (NFQUEUE rule and daemon)
	Mode  string
	// Injection is the running guard's [injection] mode ("" for the
	// daemon's default).
	Injection string

	opts   Options
	cfg    string
	daemon *Daemon

	Attacker    *Injector // raw sockets in the attacker namespace
	ClientRaw   *Injector // raw sockets in the client namespace (crafted legitimate SYNs)
	ClientSniff *Sniffer  // the client's eth0

	acc  map[string]float64 // counters of earlier daemon incarnations
	last map[string]float64 // last scrape of the current one
}

// Run plays every scenario with the guard off, then with it on, on t.
func Run(ctx context.Context, t *Topology, scenarios []Scenario, o Options) (*Report, error) {
	start := time.Now()
	if o.Only != nil {
		scenarios = slices.DeleteFunc(slices.Clone(scenarios), func(s Scenario) bool { return !o.Only(s.Name) })
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "rstguard-lab-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	e := &Env{T: t, opts: o, cfg: filepath.Join(o.Dir, "rstguard.toml"), acc: map[string]float64{}}
	if err := e.setup(); err != nil {
		return nil, err
	}
	defer e.close()
	rep := &Report{Topology: t.Prefix() + "{client,gateway,server,attacker}"}
	for _, s := range scenarios {
		rep.Results = append(rep.Results, Result{Name: s.Name, Expect: s.Expect})
	}
	modes := []bool{false, true}
	if o.OffOnly {
		modes = modes[:1]
	}
	for _, guard := range modes {
		if err := e.setGuard(ctx, guard); err != nil {
			return nil, err
		}
		for i, s := range scenarios {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			obs := e.play(ctx, s)
			if guard {
				rep.Results[i].On = obs
			} else {
				rep.Results[i].Off = obs
			}
			e.logf("guard %-3s %-28s forged %3d delivered %3d outcome %s %s%s", onOff(guard), s.Name, obs.Forged, obs.Delivered, obs.Outcome, obs.Note, errNote(obs.Err))
		}
	}
	if err := e.setGuard(ctx, false); err != nil {
		return nil, err
	}
	rep.Metrics = map[string]float64{}
	for k, v := range e.acc {
		if v != 0 {
			rep.Metrics[k] = v
		}
	}
	rep.Pass = true
	for i, s := range scenarios {
		r := &rep.Results[i]
		var why []string
		if r.Off.Err != "" {
			why = append(why, "guard off: "+r.Off.Err)
		} else if s.CheckOff != nil {
			if err := s.CheckOff(r.Off); err != nil {
				why = append(why, "guard off: "+err.Error())
			}
		}
		if o.OffOnly {
			// Nothing to judge with the guard.
		} else if err := s.checkOn(r.On); err != nil {
			why = append(why, "guard on: "+err.Error())
		}
		r.Pass = len(why) == 0
		r.Why = strings.Join(why, "; ")
		rep.Pass = rep.Pass && r.Pass
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " ERROR " + s
}

func (e *Env) logf(format string, args ...any) {
	if e.opts.Log != nil {
		fmt.Fprintf(e.opts.Log, format+"\n", args...)
	}
}

// forgedRule marks the victim's counting rules.
const forgedRule = "rstguard-lab-forged"

func (e *Env) setup() error {
	t := e.T
	// Delivery counters in the victim: forged packets carry DeliveredTTL
	// when they reach it.
	for _, r := range [][]string{
		{"iptables", "-A", "INPUT", "-p", "tcp", "-m", "ttl", "--ttl-eq", strconv.Itoa(DeliveredTTL), "-m", "comment", "--comment", forgedRule},
		{"ip6tables", "-A", "INPUT", "-p", "tcp", "-m", "hl", "--hl-eq", strconv.Itoa(DeliveredTTL), "-m", "comment", "--comment", forgedRule},
	} {
		if _, err := t.Exec(Client, r[0], r[1:]...); err != nil {
			return fmt.Errorf("victim counting rule: %w", err)
		}
	}
	var err error
	if e.Attacker, err = t.NewInjector(Attacker); err != nil {
		return err
	}
	if e.ClientRaw, err = t.NewInjector(Client); err != nil {
		return err
	}
	if e.ClientSniff, err = t.NewSniffer(Client, "eth0"); err != nil {
		return err
	}
	return nil
}

func (e *Env) close() {
	if e.ClientSniff != nil {
		e.ClientSniff.Close()
	}
	if e.Attacker != nil {
		e.Attacker.Close()
	}
	if e.ClientRaw != nil {
		e.ClientRaw.Close()
	}
}

// Delivered reads the victim's counters of forged packets (IPv4 + IPv6).
func (e *Env) Delivered() (int, error) {
	total := 0
	for _, ipt := range []string{"iptables", "ip6tables"} {
		out, err := e.T.Exec(Client, ipt, "-w", "-L", "INPUT", "-n", "-v", "-x")
		if err != nil {
			return 0, err
		}
		found := false
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, forgedRule) {
				continue
			}
			f := strings.Fields(line)
			n, err := strconv.Atoi(f[0])
			if err != nil {
				return 0, fmt.Errorf("counting rule: %q: %w", line, err)
			}
			total += n
			found = true
		}
		if !found {
			return 0, fmt.Errorf("%s counting rule %q missing in %s", ipt, forgedRule, e.T.NS(Client))
		}
	}
	return total, nil
}

// play runs one scenario and fills in the delivered count and metrics.
func (e *Env) play(ctx context.Context, s Scenario) Observation {
	mode := s.Mode
	if mode == "" {
		mode = "window"
	}
	if e.Guard && (e.Mode != mode || e.Injection != s.Injection) {
		if err := e.Reload(ctx, mode, s.Injection); err != nil {
			return Observation{Err: err.Error()}
		}
	}
	before, err := e.Delivered()
	if err != nil {
		return Observation{Err: err.Error()}
	}
	var m0 map[string]float64
	if e.Guard {
		if m0, err = e.Counters(); err != nil {
			return Observation{Err: err.Error()}
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	obs, err := s.Run(sctx, e)
	cancel()
	if err != nil {
		obs.Err = err.Error()
	}
	// Late forged packets are not a concern: each scenario reads the count
	// after its connection's fate is known, well after the injection.
	after, derr := e.Delivered()
	if derr != nil {
		obs.Err = errors.Join(err, derr).Error()
		return obs
	}
	obs.Delivered = after - before
	if e.Guard {
		m1, err := e.Counters()
		if err != nil {
			obs.Err = err.Error()
			return obs
		}
		obs.Metrics = map[string]float64{}
		for k, v := range m1 {
			if d := v - m0[k]; d != 0 {
				obs.Metrics[k] = d
			}
		}
	}
	return obs
}

// setGuard installs the shipped rules and starts the daemon (on), or stops
// the daemon and removes the rules (off).
func (e *Env) setGuard(ctx context.Context, on bool) error {
	if !on {
		if e.daemon != nil {
			if err := e.StopDaemon(); err != nil {
				return err
			}
		}
		if e.Guard {
			if err := e.T.RemoveShippedRules(); err != nil {
				return err
			}
		}
		e.Guard = false
		return nil
	}
	// The rules users install: queues 0:1, and resets the daemon did not
	// judge dropped in mangle POSTROUTING.
	if err := e.T.InstallShippedRules(); err != nil {
		return err
	}
	e.Guard = true
	return e.StartDaemon(ctx, "window", "")
}

// Config is the guard's configuration file for the lab: rst_mode = mode,
// and [injection] mode = injection unless injection is "" (the daemon's
// default then applies); eventsPath, if not "", is its event log.
func Config(mode, injection, metricsAddr, eventsPath string) string {
	cfg := fmt.Sprintf(`# rstguard lab configuration (generated)
[queue]
numbers = "0:1"

[policy]
rst_mode = %q

[metrics]
listen = %q

[events]
path = %q
`, mode, metricsAddr, eventsPath)
	if injection != "" {
		cfg += fmt.Sprintf("\n[injection]\nmode = %q\n", injection)
	}
	return cfg
}

// writeConfig writes the guard's configuration file.
func (e *Env) writeConfig(mode, injection string) error {
	return os.WriteFile(e.cfg, []byte(Config(mode, injection, e.T.metricsAddr, filepath.Join(e.opts.Dir, "events.jsonl"))), 0o644)
}

// StartDaemon writes the configuration with rst_mode = mode and
// [injection] mode = injection ("" for the default) and starts the guard,
// waiting until it is ready.
func (e *Env) StartDaemon(ctx context.Context, mode, injection string) error {
	if err := e.writeConfig(mode, injection); err != nil {
		return err
	}
	d, err := e.T.RunDaemon(ctx, e.opts.Binary, e.cfg, 10*time.Second)
	if err != nil {
		return err
	}
	e.daemon, e.Mode, e.Injection = d, mode, injection
	e.last = nil
	return nil
}

// StopDaemon stops the guard with SIGTERM, keeping its counters for the
// report.
func (e *Env) StopDaemon() error {
	if e.daemon == nil {
		return nil
	}
	if _, err := e.Counters(); err == nil {
		for k, v := range e.last {
			e.acc[k] += v
		}
	}
	e.last = nil
	err := e.daemon.Stop()
	log := e.daemon.Log()
	e.daemon = nil
	if err != nil {
		return fmt.Errorf("stop the guard: %w\ndaemon output:\n%s", err, log)
	}
	return nil
}

// Daemon is the running guard, or nil.
func (e *Env) Daemon() *Daemon { return e.daemon }

// Reload rewrites the configuration with rst_mode = mode and [injection]
// mode = injection ("" for the default) and sends SIGHUP, waiting until the
// daemon counts the reload.
func (e *Env) Reload(ctx context.Context, mode, injection string) error {
	m0, err := e.Counters()
	if err != nil {
		return err
	}
	if err := e.writeConfig(mode, injection); err != nil {
		return err
	}
	if err := e.daemon.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	const reloads = "rstguard_config_reloads_total"
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m, err := e.Counters()
		if err != nil {
			return err
		}
		if m[reloads] > m0[reloads] {
			e.Mode, e.Injection = mode, injection
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("the guard did not count a reload (%s) within 5s of SIGHUP\ndaemon output:\n%s", reloads, e.daemon.Log())
}

// counted lists the metric families the lab reports.
var counted = []string{
	"rstguard_packets_total", "rstguard_resets_total", "rstguard_syn_flagged_total",
	"rstguard_flows_created_total", "rstguard_config_reloads_total",
	"rstguard_events_written_total", "rstguard_events_lost_total",
	"rstguard_injection_suspected_total", "rstguard_resets_held_total",
}

// Counters scrapes the guard and returns its counters summed with those of
// its earlier incarnations (so they only grow across restarts).
func (e *Env) Counters() (map[string]float64, error) {
	body, err := e.T.Scrape()
	if err != nil {
		return nil, err
	}
	cur, err := ParseMetrics(body, counted...)
	if err != nil {
		return nil, err
	}
	e.last = cur
	out := maps.Clone(e.acc)
	for k, v := range cur {
		out[k] += v
	}
	return out, nil
}

// ParseMetrics parses Prometheus text and returns the samples of the named
// families (all if none named), keyed like `name{a="x",b="y"}` with labels
// sorted.
func ParseMetrics(text string, names ...string) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if len(names) > 0 && !slices.Contains(names, name) {
			continue
		}
		for _, m := range f.GetMetric() {
			var lv []string
			for _, l := range m.GetLabel() {
				lv = append(lv, l.GetName(), l.GetValue())
			}
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Untyped != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			out[seriesKey(name, lv...)] = v
		}
	}
	return out, nil
}

// seriesKey builds `name{a="x",b="y"}` from name and label pairs, sorted by
// label name.
func seriesKey(name string, labels ...string) string {
	if len(labels) < 2 {
		return name
	}
	type kv struct{ k, v string }
	var ls []kv
	for i := 0; i+1 < len(labels); i += 2 {
		ls = append(ls, kv{labels[i], labels[i+1]})
	}
	slices.SortFunc(ls, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	b.WriteString(name + "{")
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", l.k, l.v)
	}
	b.WriteByte('}')
	return b.String()
}
