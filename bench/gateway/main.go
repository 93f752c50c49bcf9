//go:build linux

// Command gateway measures what an NFQUEUE consumer costs a Linux gateway
// (issue 3, SPEC section 10). As root:
//
//	go run ./bench/gateway [-runs 3] [-seconds 5] [-json]
//	go run ./bench/gateway -mode pps [-runs 3] [-seconds 4] [-pps-count N]
//
// -mode pps is the open-loop small-packet test (pps.go); the rest of this
// comment describes the default -mode bulk.
//
// It builds lab's topology (lab.NewTopology; namespaces rgb-client,
// rgb-gateway, rgb-server and an idle rgb-attacker), and for each configuration, interleaved within every
// run, measures iperf3 bulk TCP throughput client to server through the
// gateway and the round trip of small request/response exchanges over one
// TCP connection:
//
//	kernel          no rule: the kernel forwards alone
//	accept          bench/nfqaccept, tuned (GSO, fail-open, NoENOBUFS,
//	                128-byte copy, 4 MiB buffer, batch verdicts): the
//	                NFQUEUE ceiling
//	rstguard        rstguard run, inline, built from ./cmd/rstguard
//	engine          bench/nfqguard: rstguard's data path alone (nfq.Worker
//	                and policy.Engine per queue, default policy), without
//	                the daemon's configuration, metrics and reload
//	accept-single   tuned, but one verdict message per packet (-single)
//	accept-msgbuf   tuned, receiving into a reused 64 KiB buffer (-msgbuf)
//	accept-untuned  bench/nfqaccept -tuned=false (full copy, no GSO, no
//	                fail-open, default buffer, one verdict per packet)
//
// For the queue configurations the gateway's mangle FORWARD chain gets
// "-p tcp -j NFQUEUE --queue-balance Q --queue-bypass", as in
// deploy/iptables.rules.
// It reports per configuration the median throughput, the ratios rstguard /
// accept and each / kernel, the kernel's queue drops, packets that
// bypassed a full queue (fail-open), the consumer's CPU time per queued
// packet and the round-trip p50/p99.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	runs, seconds, pingPongs int
	queues                   string
	jsonOut                  bool
	untuned, single, guard   bool
	msgbuf                   bool
	latencyRounds            int
	pcapDir                  string
	engine                   bool
	profileDir               string
	rstguardBin, acceptBin   string
	rstguardConfig           string
	mode                     string
	ppsCount                 uint64
}

// config is one way of running the gateway.
type config struct {
	Name string `json:"name"`
	// args is the consumer's command line in the gateway namespace (nil:
	// no consumer and no rule).
	args []string
	// gso: the consumer sets NFQA_CFG_F_GSO, so one rule hit is one queued
	// packet and rule hits minus queued packets are fail-open bypasses.
	gso bool
	// Err is set when the configuration could not be measured at all.
	Err string `json:"error,omitempty"`
}

// sample is one measurement of one configuration.
type sample struct {
	Config        string  `json:"config"`
	Run           int     `json:"run"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int     `json:"retransmits"`
	// Over the iperf3 transfer:
	Queued    uint64  `json:"queued_packets"`
	CPUSecs   float64 `json:"cpu_seconds"`
	CPUPerPkt float64 `json:"cpu_ns_per_packet"`
	// UserPerPkt is the user-space part: the consumer's own code, the
	// library and the Go runtime, without the kernel's forwarding work.
	UserPerPkt float64 `json:"user_ns_per_packet"`
	// Over the whole measurement (transfer and round trips):
	RuleHits      uint64 `json:"rule_hits"`
	QueuedAll     uint64 `json:"queued_packets_all"`
	KernelDropped uint64 `json:"queue_dropped"`
	UserDropped   uint64 `json:"queue_user_dropped"`
	Bypassed      int64  `json:"failopen_bypassed"` // -1: not measurable (no GSO flag)
	// From rstguard's /metrics at the end of the measurement: the mean
	// engine decision time (parse to verdict) and the packets its policy
	// dropped (legitimate traffic only here, so it should be 0).
	DecisionNs  float64 `json:"decision_mean_ns,omitempty"`
	PolicyDrops int64   `json:"policy_drops"` // -1: not rstguard
	// Pcap is the capture of this run (-pcap), kept when there were drops.
	Pcap string `json:"pcap,omitempty"`
	// DropLog is the daemon's log lines about those drops.
	DropLog string `json:"policy_drop_log,omitempty"`
	// DropReasons breaks PolicyDrops down by reason.
	DropReasons    map[string]int64 `json:"policy_drop_reasons,omitempty"`
	RTTp50, RTTp99 int64            `json:"-"`
	RTTp50us       float64          `json:"rtt_p50_us"`
	RTTp99us       float64          `json:"rtt_p99_us"`
	Err            string           `json:"error,omitempty"`
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "measurements of each configuration (interleaved)")
	flag.IntVar(&o.seconds, "seconds", 5, "seconds of each iperf3 transfer")
	flag.IntVar(&o.pingPongs, "pingpongs", 2000, "request/response exchanges per round-trip measurement")
	flag.StringVar(&o.queues, "queues", "0:1", "NFQUEUE queues (iptables --queue-balance syntax)")
	flag.BoolVar(&o.jsonOut, "json", false, "print the samples and summary as JSON instead of a table")
	flag.BoolVar(&o.untuned, "untuned", true, "also measure the untuned accept-all program")
	flag.BoolVar(&o.single, "single", true, "also measure the tuned accept-all program with one verdict per packet")
	flag.BoolVar(&o.guard, "rstguard", true, "measure rstguard inline")
	flag.IntVar(&o.latencyRounds, "latency-rounds", 10, "after the throughput runs, this many interleaved rounds of -pingpongs/N round trips each for kernel, accept and rstguard, pooled (0: skip)")
	flag.StringVar(&o.pcapDir, "pcap", "", "capture what reaches the gateway during rstguard runs (headers, tcpdump) and keep DIR/rstguard-runN.pcap when its policy dropped packets, for rstguard replay")
	flag.BoolVar(&o.msgbuf, "msgbuf", false, "also measure the tuned accept-all program receiving into a reused buffer (-msgbuf 65536)")
	flag.BoolVar(&o.engine, "engine", true, "measure rstguard's data path alone (bench/nfqguard)")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU profiles of bench/nfqguard and the tuned bench/nfqaccept per run into this directory (engine-runN.pprof, accept-runN.pprof)")
	flag.StringVar(&o.rstguardBin, "rstguard-bin", "", "rstguard binary (default: built from ./cmd/rstguard)")
	flag.StringVar(&o.acceptBin, "nfqaccept-bin", "", "nfqaccept binary (default: built from ./bench/nfqaccept)")
	flag.StringVar(&o.rstguardConfig, "rstguard-config", "", "rstguard configuration file (default: a generated one for the queues)")
	flag.StringVar(&o.mode, "mode", "bulk", "bulk: iperf3 throughput and round trips; pps: open-loop SYN floods (syn-closed, new-flows) against kernel, c-accept, go-accept, rstguard-1q, rstguard-2q (see pps.go)")
	flag.Uint64Var(&o.ppsCount, "pps-count", 5000000, "-mode pps: most SYNs sent per workload and configuration in one run (each send is also bounded by -seconds)")
	flag.Parse()
	if o.mode != "bulk" && o.mode != "pps" || o.ppsCount < 1 || o.ppsCount > 100000000 {
		fmt.Fprintln(os.Stderr, "gateway: want -mode bulk or pps, -pps-count 1..100000000")
		os.Exit(2)
	}
	if o.runs < 1 || o.runs > 20 || o.seconds < 1 || o.seconds > 120 || o.pingPongs < 1 || o.pingPongs > 100000 {
		fmt.Fprintln(os.Stderr, "gateway: want -runs 1..20, -seconds 1..120, -pingpongs 1..100000")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	var err error
	if o.mode == "pps" {
		err = runPPS(ctx, o)
	} else {
		err = runBench(ctx, o)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func prerequisites() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run: sudo go run ./bench/gateway, or make bench-gateway as root)")
	}
	for _, tool := range []string{"ip", "iptables", "iperf3", "ss", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install -y iproute2 iptables iperf3 procps)")
		}
	}
	if _, err := os.Stat("/proc/net/netfilter/nfnetlink_queue"); err != nil {
		missing = append(missing, "kernel NFQUEUE support (/proc/net/netfilter/nfnetlink_queue: modprobe nfnetlink_queue)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

func runBench(ctx context.Context, o options) error {
	if err := prerequisites(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "rgb-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	for _, d := range []string{o.profileDir, o.pcapDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	configs := []*config{{Name: "kernel"}}
	accept := o.acceptBin
	if accept == "" {
		accept = filepath.Join(tmp, "nfqaccept")
		if err := goBuild(ctx, accept, "./bench/nfqaccept"); err != nil {
			return err
		}
	}
	configs = append(configs, &config{Name: "accept", gso: true, args: []string{accept, "-queues", o.queues}})
	if o.guard {
		c := &config{Name: "rstguard", gso: true}
		bin := o.rstguardBin
		if bin == "" {
			bin = filepath.Join(tmp, "rstguard")
			if err := goBuild(ctx, bin, "./cmd/rstguard"); err != nil {
				c.Err = err.Error()
			}
		}
		cfg := o.rstguardConfig
		if cfg == "" {
			cfg = filepath.Join(tmp, "rstguard.toml")
			if err := os.WriteFile(cfg, []byte(rstguardConfig(o.queues)), 0o644); err != nil {
				return err
			}
		}
		c.args = []string{bin, "run", "--config", cfg}
		configs = append(configs, c)
	}
	if o.engine {
		c := &config{Name: "engine", gso: true}
		bin := filepath.Join(tmp, "nfqguard")
		if err := goBuild(ctx, bin, "./bench/nfqguard"); err != nil {
			c.Err = err.Error()
		}
		c.args = []string{bin, "-queues", o.queues}
		configs = append(configs, c)
	}
	if o.msgbuf {
		configs = append(configs, &config{Name: "accept-msgbuf", gso: true, args: []string{accept, "-queues", o.queues, "-msgbuf", "65536"}})
	}
	if o.untuned {
		configs = append(configs, &config{Name: "accept-untuned", args: []string{accept, "-queues", o.queues, "-tuned=false", "-verdict", "single"}})
	}
	if o.single {
		configs = append(configs, &config{Name: "accept-single", gso: true, args: []string{accept, "-queues", o.queues, "-verdict", "single"}})
	}

	t, err := newTopology(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	pp, err := startPingPong(t)
	if err != nil {
		return err
	}
	defer pp.close()

	nq, err := countQueues(o.queues)
	if err != nil {
		return err
	}
	load0, _ := os.ReadFile("/proc/loadavg")
	var samples []sample
	for r := 1; r <= o.runs; r++ {
		// Rotate the order so no configuration always runs first.
		for i := range configs {
			c := configs[(i+r-1)%len(configs)]
			if c.Err != "" {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cc := *c
			if (c.Name == "engine" || c.Name == "accept") && o.profileDir != "" {
				cc.args = append(slices.Clone(c.args), "-cpuprofile", filepath.Join(o.profileDir, fmt.Sprintf("%s-run%d.pprof", c.Name, r)))
			}
			s := measure(ctx, t, pp, &cc, o, nq, r)
			if !o.jsonOut {
				fmt.Fprintf(os.Stderr, "run %d %-15s %7.2f Gbit/s  rtt p99 %6.1f µs  %s\n", r, c.Name, s.BitsPerSecond/1e9, s.RTTp99us, s.Err)
			}
			if s.Err != "" && s.BitsPerSecond == 0 && (c.Name == "rstguard" || c.Name == "engine") && strings.Contains(s.Err, "exited") {
				// rstguard run is not usable (not implemented, bad config):
				// say so once instead of failing every run.
				c.Err = s.Err
			}
			samples = append(samples, s)
		}
	}
	var pooled map[string][]time.Duration
	if o.latencyRounds > 0 {
		pooled = latencyRounds(ctx, t, pp, configs, o, nq)
	}
	load1, _ := os.ReadFile("/proc/loadavg")
	return report(o, configs, samples, pooled, strings.TrimSpace(string(load0)), strings.TrimSpace(string(load1)))
}

// measure runs one configuration once: start the consumer, add the rule,
// transfer, round trips, remove the rule, stop the consumer.
func measure(ctx context.Context, t *topology, pp *pingPongServer, c *config, o options, nq, runN int) (s sample) {
	s = sample{Config: c.Name, Run: runN, Bypassed: -1, PolicyDrops: -1}
	fail := func(err error) sample { s.Err = err.Error(); return s }
	p, cleanup, err := startConsumer(ctx, t, c, o, nq)
	defer cleanup()
	if err != nil {
		return fail(err)
	}
	var capt *capture
	if c.Name == "rstguard" && o.pcapDir != "" {
		if capt, err = startCapture(t, o.pcapDir, "rstguard"); err != nil {
			return fail(err)
		}
		defer func() {
			capt.stop()
			if s.PolicyDrops > 0 {
				out := filepath.Join(o.pcapDir, fmt.Sprintf("rstguard-run%d.pcap", runN))
				if err := capt.mergeTo(out); err != nil {
					s.Err = strings.TrimSpace(s.Err + " pcap: " + err.Error())
				} else {
					s.Pcap = out
				}
			} else {
				capt.remove()
			}
		}()
	}
	var q0, q1, q2 queueSnap
	var cpu0, cpu1, user0, user1 time.Duration
	if p != nil {
		if q0, err = readQueues(p.pid()); err != nil {
			return fail(err)
		}
		if user0, cpu0, err = cpuTime(p.pid()); err != nil {
			return fail(err)
		}
		cpu0 += user0
	}
	ir, err := runIperf(ctx, t, o.seconds)
	if err != nil {
		s.Err = err.Error()
	}
	s.BitsPerSecond, s.Retransmits = ir.bitsPerSecond, ir.retransmits
	if p != nil {
		if q1, err = readQueues(p.pid()); err != nil {
			return fail(err)
		}
		if user1, cpu1, err = cpuTime(p.pid()); err != nil {
			return fail(err)
		}
		cpu1 += user1
		s.Queued = q1.queued - q0.queued
		s.CPUSecs = (cpu1 - cpu0).Seconds()
		if s.Queued > 0 {
			s.CPUPerPkt = float64(cpu1-cpu0) / float64(s.Queued)
			s.UserPerPkt = float64(user1-user0) / float64(s.Queued)
		}
	}
	rtts, err := pingPong(t, pp.addr, o.pingPongs)
	if err != nil {
		s.Err = strings.TrimSpace(s.Err + " " + err.Error())
	} else {
		s.RTTp50, s.RTTp99 = int64(quantile(rtts, 0.50)), int64(quantile(rtts, 0.99))
		s.RTTp50us, s.RTTp99us = float64(s.RTTp50)/1e3, float64(s.RTTp99)/1e3
	}
	if p != nil {
		// Let the round-trip connection's FIN exchange pass, then read the
		// rule counter before the queues, so a late packet can only make
		// the bypass estimate smaller, never invent one.
		time.Sleep(300 * time.Millisecond)
		if s.RuleHits, err = ruleHits(ctx, t.gateway); err != nil {
			return fail(err)
		}
		if q2, err = readQueues(p.pid()); err != nil {
			return fail(err)
		}
		s.QueuedAll = q2.queued - q0.queued
		s.KernelDropped = q2.dropped - q0.dropped
		s.UserDropped = q2.userDropped - q0.userDropped
		if c.gso {
			s.Bypassed = max(0, int64(s.RuleHits)-int64(s.QueuedAll)-int64(s.KernelDropped))
		}
		if p.exited() {
			return fail(fmt.Errorf("%s exited during the measurement: %v: %s", c.Name, p.err, tail(p.stderr.String())))
		}
		if c.Name == "rstguard" {
			if s.DecisionNs, s.PolicyDrops, s.DropReasons, err = scrapeGuard(ctx, t); err != nil {
				s.Err = strings.TrimSpace(s.Err + " metrics: " + err.Error())
			}
			if s.PolicyDrops > 0 {
				// The daemon logs each drop (rate-limited) with the flow
				// and the window that rejected it: keep those lines.
				cleanup()
				var lines []string
				for _, l := range strings.Split(p.stderr.String(), "\n") {
					if strings.Contains(l, "drop") && len(lines) < 10 {
						lines = append(lines, l)
					}
				}
				s.DropLog = strings.Join(lines, "\n")
			}
		}
	}
	return s
}

// startConsumer starts c's consumer in the gateway (none for kernel),
// waits until it has bound its queues and adds the NFQUEUE rule. cleanup
// removes the rule and stops the consumer; call it even on error.
func startConsumer(ctx context.Context, t *topology, c *config, o options, nq int) (p *proc, cleanup func(), err error) {
	var undo []func()
	var once sync.Once
	cleanup = func() {
		once.Do(func() {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		})
	}
	if len(c.args) == 0 {
		return nil, cleanup, nil
	}
	rule := []string{"FORWARD", "-p", "tcp", "-j", "NFQUEUE", "--queue-balance", o.queues, "--queue-bypass"}
	if nq == 1 {
		rule[5] = "--queue-num"
	}
	if p, err = startIn(t.gateway, c.Name, c.args...); err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { p.stop(5 * time.Second) })
	if err := waitBound(p, nq); err != nil {
		return p, cleanup, err
	}
	if _, err := run(ctx, append([]string{"ip", "netns", "exec", t.gateway, "iptables", "-w", "-t", "mangle", "-A"}, rule...)...); err != nil {
		return p, cleanup, err
	}
	undo = append(undo, func() {
		run(context.Background(), append([]string{"ip", "netns", "exec", t.gateway, "iptables", "-w", "-t", "mangle", "-D"}, rule...)...)
	})
	return p, cleanup, nil
}

// latencyRounds measures the round trip of the kernel, accept and rstguard
// configurations in many short interleaved rounds and pools each
// configuration's samples, so that load from other processes on a shared
// machine spreads over all of them instead of landing on one run of one.
func latencyRounds(ctx context.Context, t *topology, pp *pingPongServer, configs []*config, o options, nq int) map[string][]time.Duration {
	pooled := map[string][]time.Duration{}
	per := max(100, o.pingPongs/o.latencyRounds)
	for r := 0; r < o.latencyRounds && ctx.Err() == nil; r++ {
		for i := range configs {
			c := configs[(i+r)%len(configs)]
			if c.Err != "" || (c.Name != "kernel" && c.Name != "accept" && c.Name != "rstguard") {
				continue
			}
			_, cleanup, err := startConsumer(ctx, t, c, o, nq)
			if err == nil {
				var rtts []time.Duration
				if rtts, err = pingPong(t, pp.addr, per); err == nil {
					pooled[c.Name] = append(pooled[c.Name], rtts...)
				}
			}
			cleanup()
			if err != nil && !o.jsonOut {
				fmt.Fprintf(os.Stderr, "latency round %d %s: %v\n", r+1, c.Name, err)
			}
		}
	}
	for _, v := range pooled {
		slices.Sort(v)
	}
	return pooled
}

// waitBound waits (at most 10 s) until the consumer has bound nq queues in
// its namespace.
func waitBound(p *proc, nq int) error {
	for i := 0; i < 200; i++ {
		if p.exited() {
			return fmt.Errorf("%s exited before binding its queues: %v: %s", p.name, p.err, tail(p.stderr.String()))
		}
		if q, err := readQueues(p.pid()); err == nil && q.bound >= nq {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not bind %d queues within 10 s", p.name, nq)
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		s = "..." + s[len(s)-400:]
	}
	return s
}

func countQueues(spec string) (int, error) {
	var lo, hi int
	if n, _ := fmt.Sscanf(spec, "%d:%d", &lo, &hi); n == 2 && hi >= lo {
		return hi - lo + 1, nil
	}
	if n, _ := fmt.Sscanf(spec, "%d", &lo); n == 1 && !strings.Contains(spec, ":") {
		return 1, nil
	}
	return 0, fmt.Errorf("-queues %q: want N or N:M", spec)
}

// rstguardConfig is the daemon's configuration for the benchmark: the
// queues, defaults for the rest (fail-open, GSO, headers-only copy), the
// metrics listener on the gateway's loopback, quiet logging.
// guardMetricsAddr is rstguard's metrics listener in the gateway namespace.
const guardMetricsAddr = "127.0.0.1:9813"

func rstguardConfig(queues string) string {
	var nums []string
	lo, hi := 0, 0
	if n, _ := fmt.Sscanf(queues, "%d:%d", &lo, &hi); n == 2 {
		for q := lo; q <= hi; q++ {
			nums = append(nums, strconv.Itoa(q))
		}
	} else {
		nums = []string{queues}
	}
	return fmt.Sprintf(`# generated by bench/gateway
[queue]
numbers = [%s]

[metrics]
listen = %q

[log]
level = "warn"
`, strings.Join(nums, ", "), guardMetricsAddr)
}

func goBuild(ctx context.Context, out, pkg string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := runLong(bctx, goBin, "build", "-o", out, pkg); err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	return nil
}

func execCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// summary is one configuration's medians.
type summary struct {
	Config         string    `json:"config"`
	Runs           int       `json:"runs"`
	MedianGbps     float64   `json:"median_gbit_per_second"`
	AllGbps        []float64 `json:"gbit_per_second"`
	VsKernel       float64   `json:"ratio_vs_kernel"`
	VsAccept       float64   `json:"ratio_vs_accept"`
	KernelDropped  uint64    `json:"queue_dropped"`
	UserDropped    uint64    `json:"queue_user_dropped"`
	Bypassed       int64     `json:"failopen_bypassed"`
	CPUNsPerPacket float64   `json:"cpu_ns_per_packet"`
	UserNsPerPkt   float64   `json:"user_ns_per_packet"`
	PacketsPerSec  float64   `json:"queued_packets_per_second"`
	RTTp50us       float64   `json:"rtt_p50_us"`
	RTTp99us       float64   `json:"rtt_p99_us"`
	P99VsAcceptUs  float64   `json:"rtt_p99_minus_accept_us"`
	// PairedVsAccept is the median over runs of this configuration's
	// throughput divided by accept's in the same run: less sensitive to
	// the machine's load drifting between runs than the ratio of medians.
	PairedVsAccept float64          `json:"paired_ratio_vs_accept"`
	DecisionNs     float64          `json:"decision_mean_ns,omitempty"`
	PolicyDrops    int64            `json:"policy_drops"`
	DropReasons    map[string]int64 `json:"policy_drop_reasons,omitempty"`
	Errors         []string         `json:"errors,omitempty"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// pooledLatency is one configuration's round trips pooled over the
// interleaved latency rounds.
type pooledLatency struct {
	Config        string  `json:"config"`
	Samples       int     `json:"samples"`
	P50us         float64 `json:"p50_us"`
	P90us         float64 `json:"p90_us"`
	P99us         float64 `json:"p99_us"`
	P99VsAcceptUs float64 `json:"p99_minus_accept_us"`
}

func report(o options, configs []*config, samples []sample, pooled map[string][]time.Duration, load0, load1 string) error {
	var lat []pooledLatency
	for _, name := range []string{"kernel", "accept", "rstguard"} {
		v := pooled[name]
		if len(v) == 0 {
			continue
		}
		us := func(q float64) float64 { return float64(quantile(v, q)) / 1e3 }
		l := pooledLatency{Config: name, Samples: len(v), P50us: us(0.5), P90us: us(0.9), P99us: us(0.99)}
		if a := pooled["accept"]; len(a) > 0 {
			l.P99VsAcceptUs = l.P99us - float64(quantile(a, 0.99))/1e3
		}
		lat = append(lat, l)
	}
	var sums []summary
	byName := map[string]*summary{}
	for _, c := range configs {
		sm := summary{Config: c.Name, Bypassed: -1, PolicyDrops: -1}
		var paired, decision []float64
		var gbps, cpu, user, pps, p50, p99 []float64
		for _, s := range samples {
			if s.Config != c.Name {
				continue
			}
			if s.Err != "" {
				sm.Errors = append(sm.Errors, fmt.Sprintf("run %d: %s", s.Run, s.Err))
			}
			if s.BitsPerSecond > 0 {
				sm.Runs++
				gbps = append(gbps, s.BitsPerSecond/1e9)
			}
			if s.Queued > 0 {
				cpu = append(cpu, s.CPUPerPkt)
				user = append(user, s.UserPerPkt)
				pps = append(pps, float64(s.Queued)/float64(o.seconds))
			}
			if s.RTTp99 > 0 {
				p50 = append(p50, s.RTTp50us)
				p99 = append(p99, s.RTTp99us)
			}
			if s.DecisionNs > 0 {
				decision = append(decision, s.DecisionNs)
			}
			if s.PolicyDrops >= 0 {
				sm.PolicyDrops = max(sm.PolicyDrops, 0) + s.PolicyDrops
			}
			for r, n := range s.DropReasons {
				if sm.DropReasons == nil {
					sm.DropReasons = map[string]int64{}
				}
				sm.DropReasons[r] += n
			}
			if s.BitsPerSecond > 0 {
				for _, a := range samples {
					if a.Config == "accept" && a.Run == s.Run && a.BitsPerSecond > 0 {
						paired = append(paired, s.BitsPerSecond/a.BitsPerSecond)
					}
				}
			}
			sm.KernelDropped += s.KernelDropped
			sm.UserDropped += s.UserDropped
			if s.Bypassed >= 0 {
				sm.Bypassed = max(sm.Bypassed, 0) + s.Bypassed
			}
		}
		if c.Err != "" && len(sm.Errors) == 0 {
			sm.Errors = append(sm.Errors, c.Err)
		}
		sm.AllGbps = gbps
		sm.MedianGbps, sm.CPUNsPerPacket, sm.PacketsPerSec = median(gbps), median(cpu), median(pps)
		sm.UserNsPerPkt = median(user)
		sm.PairedVsAccept, sm.DecisionNs = median(paired), median(decision)
		sm.RTTp50us, sm.RTTp99us = median(p50), median(p99)
		sums = append(sums, sm)
	}
	for i := range sums {
		byName[sums[i].Config] = &sums[i]
	}
	for i := range sums {
		if k := byName["kernel"]; k != nil && k.MedianGbps > 0 {
			sums[i].VsKernel = sums[i].MedianGbps / k.MedianGbps
		}
		if a := byName["accept"]; a != nil && a.MedianGbps > 0 {
			sums[i].VsAccept = sums[i].MedianGbps / a.MedianGbps
			if a.RTTp99us > 0 && sums[i].RTTp99us > 0 {
				sums[i].P99VsAcceptUs = sums[i].RTTp99us - a.RTTp99us
			}
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"runs": o.runs, "seconds": o.seconds, "pingpongs": o.pingPongs, "queues": o.queues,
			"loadavg_before": load0, "loadavg_after": load1,
			"summary": sums, "samples": samples, "latency_pooled": lat,
		})
	}
	fmt.Printf("gateway benchmark: %d runs x %d s iperf3, %d ping-pongs of %d B, queues %s; loadavg %s -> %s\n",
		o.runs, o.seconds, o.pingPongs, pingPongSize, o.queues, load0, load1)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "config\tGbit/s median\truns Gbit/s\tvs kernel\tvs accept\tpaired\tq drops\tuser drops\tbypassed\tCPU ns/pkt\tuser ns/pkt\tpkts/s\tRTT p50 µs\tRTT p99 µs\tp99 - accept µs\tdecide ns\tpolicy drops\t")
	for _, s := range sums {
		runsStr := make([]string, len(s.AllGbps))
		for i, g := range s.AllGbps {
			runsStr[i] = fmt.Sprintf("%.2f", g)
		}
		bypass := "-"
		if s.Bypassed >= 0 {
			bypass = fmt.Sprint(s.Bypassed)
		}
		dash := func(v float64, f string) string {
			if v == 0 {
				return "-"
			}
			return fmt.Sprintf(f, v)
		}
		drops, udrops := fmt.Sprint(s.KernelDropped), fmt.Sprint(s.UserDropped)
		if s.Config == "kernel" {
			drops, udrops = "-", "-"
		}
		pdrops := "-"
		if s.PolicyDrops >= 0 {
			pdrops = fmt.Sprint(s.PolicyDrops)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Config,
			dash(s.MedianGbps, "%.2f"), strings.Join(runsStr, " "), dash(s.VsKernel, "%.3f"), dash(s.VsAccept, "%.3f"), dash(s.PairedVsAccept, "%.3f"),
			drops, udrops, bypass, dash(s.CPUNsPerPacket, "%.0f"), dash(s.UserNsPerPkt, "%.0f"), dash(s.PacketsPerSec, "%.0f"),
			dash(s.RTTp50us, "%.1f"), dash(s.RTTp99us, "%.1f"), dash(s.P99VsAcceptUs, "%+.1f"), dash(s.DecisionNs, "%.0f"), pdrops)
	}
	w.Flush()
	if len(lat) > 0 {
		fmt.Printf("\nround trips pooled over %d interleaved rounds:\n", o.latencyRounds)
		w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "config\tsamples\tp50 µs\tp90 µs\tp99 µs\tp99 - accept µs\t")
		for _, l := range lat {
			fmt.Fprintf(w, "%s\t%d\t%.1f\t%.1f\t%.1f\t%+.1f\t\n", l.Config, l.Samples, l.P50us, l.P90us, l.P99us, l.P99VsAcceptUs)
		}
		w.Flush()
		fmt.Println()
	}
	var errs []error
	for _, s := range sums {
		if len(s.DropReasons) > 0 {
			fmt.Printf("%s: policy drops of this legitimate traffic, by reason: %v\n", s.Config, s.DropReasons)
			for _, smp := range samples {
				if smp.Config == s.Config && smp.DropLog != "" {
					fmt.Printf("  run %d log:\n    %s\n", smp.Run, strings.ReplaceAll(smp.DropLog, "\n", "\n    "))
					if smp.Pcap != "" {
						fmt.Printf("  run %d capture (before the guard): %s\n", smp.Run, smp.Pcap)
					}
				}
			}
		}
		for _, e := range s.Errors {
			fmt.Printf("%s: %s\n", s.Config, e)
		}
		if s.Runs == 0 && s.Config != "rstguard" && s.Config != "engine" {
			errs = append(errs, fmt.Errorf("%s: no successful run", s.Config))
		}
	}
	fmt.Println("bypassed = rule hits - queued - dropped: packets a full queue let through unguarded (fail-open); /proc counts none of them.")
	fmt.Println("paired = median over runs of (throughput / accept's throughput in the same run); decide ns = rstguard's mean engine decision (decision_duration histogram).")
	fmt.Println("CPU ns/pkt = consumer utime+stime over the transfer / packets queued; stime carries the kernel's forwarding work done at verdict time.")
	return errors.Join(errs...)
}
