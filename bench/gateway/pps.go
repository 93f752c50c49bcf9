//go:build linux

package main

// -mode pps: open-loop small-packet load (issue 7 item 6). A raw socket in
// the client namespace sends bare TCP SYNs through the gateway as fast as
// one core can, bounded by -pps-count packets and -seconds, for two
// workloads:
//
//	syn-closed  SYNs from the client's own address (192.0.2.2), source
//	            port cycling 1024..65535, to a closed port on the server
//	            (198.51.100.2:9): the server answers each with a reset
//	new-flows   the same, but the source address also cycles over
//	            192.0.2.10..192.0.2.250 (the client's documentation
//	            prefix, RFC 5737), so every SYN opens a new flow and
//	            --queue-balance spreads them over the queues
//
// and these configurations, interleaved within every run:
//
//	kernel       no queue rule (a counting rule with target ACCEPT)
//	c-accept     bench/nfqaccept-c: accept-all in C, recvmmsg of 64,
//	             one batch verdict per receive: the ceiling
//	go-accept    bench/nfqaccept, tuned, queue 0
//	rstguard-1q  rstguard run, queue 0
//	rstguard-2q  rstguard run, queues 0:1 (--queue-balance)
//
// Per run and configuration it reports packets offered (sent), rule hits
// (the gateway's mangle FORWARD counter: both directions, so the server's
// resets count too), packets judged by the consumer's own counter, judged
// per second of sending, bypassed = rule hits - judged (fail-open and the
// rule's --queue-bypass), and the consumer's utime+stime per judged packet.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/lab"
)

// ppsClosedPort is a port nothing listens on in the server namespace
// (discard, RFC 863).
const ppsClosedPort = 9

var ppsWorkloads = []string{"syn-closed", "new-flows"}

// ppsConfig is one consumer setup for the pps mode.
type ppsConfig struct {
	Name   string
	args   []string // nil: kernel alone
	queues string   // iptables --queue-num / --queue-balance
	guard  bool     // judged count from rstguard's /metrics
	Err    string
}

// ppsSample is one run of one configuration under one workload.
type ppsSample struct {
	Config    string  `json:"config"`
	Workload  string  `json:"workload"`
	Run       int     `json:"run"`
	Offered   uint64  `json:"offered"`
	SendSecs  float64 `json:"send_seconds"`
	RuleHits  uint64  `json:"rule_hits"`
	Judged    uint64  `json:"judged"` // the consumer's own count
	Queued    uint64  `json:"queued"` // /proc id_sequence
	Dropped   uint64  `json:"queue_dropped"`
	Bypassed  int64   `json:"bypassed"` // rule hits - judged; -1 for kernel
	JudgedPPS float64 `json:"judged_per_second"`
	CPUPerPkt float64 `json:"cpu_ns_per_judged"`
	Err       string  `json:"error,omitempty"`
}

func runPPS(ctx context.Context, o options) error {
	if err := prerequisites(); err != nil {
		return err
	}
	if _, err := exec.LookPath("cc"); err != nil {
		return errors.New("missing cc for bench/nfqaccept-c (apt-get install -y gcc libnetfilter-queue-dev libmnl-dev)")
	}
	tmp, err := os.MkdirTemp("", "rgb-pps-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	cbin := filepath.Join(tmp, "nfqaccept-c")
	if _, err := runLong(ctx, "cc", "-O2", "-Wall", "-o", cbin, "bench/nfqaccept-c/nfqaccept.c", "-lnetfilter_queue", "-lmnl"); err != nil {
		return fmt.Errorf("build bench/nfqaccept-c (run from the repository root; apt-get install -y libnetfilter-queue-dev libmnl-dev): %w", err)
	}
	accept := o.acceptBin
	if accept == "" {
		accept = filepath.Join(tmp, "nfqaccept")
		if err := goBuild(ctx, accept, "./bench/nfqaccept"); err != nil {
			return err
		}
	}
	guard := o.rstguardBin
	if guard == "" {
		guard = filepath.Join(tmp, "rstguard")
		if err := goBuild(ctx, guard, "./cmd/rstguard"); err != nil {
			return err
		}
	}
	cfg1, cfg2 := filepath.Join(tmp, "rstguard-1q.toml"), filepath.Join(tmp, "rstguard-2q.toml")
	if err := errors.Join(os.WriteFile(cfg1, []byte(rstguardConfig("0")), 0o644), os.WriteFile(cfg2, []byte(rstguardConfig("0:1")), 0o644)); err != nil {
		return err
	}
	configs := []*ppsConfig{
		{Name: "kernel"},
		{Name: "c-accept", queues: "0", args: []string{cbin, "-q", "0", "-r", "128"}},
		{Name: "go-accept", queues: "0", args: []string{accept, "-queues", "0"}},
		{Name: "rstguard-1q", queues: "0", guard: true, args: []string{guard, "run", "--config", cfg1}},
		{Name: "rstguard-2q", queues: "0:1", guard: true, args: []string{guard, "run", "--config", cfg2}},
	}

	t, err := newTopology(ctx)
	if err != nil {
		return err
	}
	defer t.close()

	load0, _ := os.ReadFile("/proc/loadavg")
	var samples []ppsSample
	for r := 1; r <= o.runs; r++ {
		for _, wl := range ppsWorkloads {
			for _, c := range configs { // A B C D E in every run
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if c.Err != "" {
					continue
				}
				s := measurePPS(ctx, t, c, wl, o, r)
				if !o.jsonOut {
					fmt.Fprintf(os.Stderr, "run %d %-10s %-11s offered %8d  judged %8d  %9.0f judged/s  %s\n",
						r, wl, c.Name, s.Offered, s.Judged, s.JudgedPPS, s.Err)
				}
				samples = append(samples, s)
			}
		}
	}
	load1, _ := os.ReadFile("/proc/loadavg")
	return reportPPS(o, configs, samples, strings.TrimSpace(string(load0)), strings.TrimSpace(string(load1)))
}

// measurePPS: start the consumer, add the rule, flood, read the counters,
// stop the consumer (which prints its count), remove the rule.
func measurePPS(ctx context.Context, t *topology, c *ppsConfig, wl string, o options, runN int) (s ppsSample) {
	s = ppsSample{Config: c.Name, Workload: wl, Run: runN, Bypassed: -1}
	fail := func(err error) ppsSample { s.Err = err.Error(); return s }
	rule := []string{"FORWARD", "-p", "tcp", "-j", "ACCEPT"}
	target := "ACCEPT"
	var p *proc
	nq := 0
	if c.args != nil {
		target = "NFQUEUE"
		var err error
		if nq, err = countQueues(c.queues); err != nil {
			return fail(err)
		}
		rule = []string{"FORWARD", "-p", "tcp", "-j", "NFQUEUE", "--queue-balance", c.queues, "--queue-bypass"}
		if nq == 1 {
			rule[5] = "--queue-num"
		}
		if p, err = startIn(t.gateway, c.Name, c.args...); err != nil {
			return fail(err)
		}
		defer p.stop(5 * time.Second)
		if err := waitBound(p, nq); err != nil {
			return fail(err)
		}
		if c.guard {
			// rstguard binds before its metrics listener answers.
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := t.lab.WaitReady(wctx)
			cancel()
			if err != nil {
				return fail(fmt.Errorf("rstguard not ready: %w", err))
			}
		}
	}
	ipt := []string{"ip", "netns", "exec", t.gateway, "iptables", "-w", "-t", "mangle"}
	if _, err := run(ctx, append(append(ipt, "-A"), rule...)...); err != nil {
		return fail(err)
	}
	defer run(context.Background(), append(append(ipt, "-D"), rule...)...)

	var q0, q1 queueSnap
	var judged0 uint64
	var cpu0 time.Duration
	var err error
	if p != nil {
		if q0, err = readQueues(p.pid()); err != nil {
			return fail(err)
		}
		if cpu0, err = procCPU(p.pid()); err != nil {
			return fail(err)
		}
		if c.guard {
			if judged0, err = scrapeJudged(ctx, t); err != nil {
				return fail(err)
			}
		}
	}
	sent, secs, err := flood(t.client, wl, o.ppsCount, time.Duration(o.seconds)*time.Second)
	s.Offered, s.SendSecs = sent, secs
	if err != nil {
		return fail(err)
	}
	// Let the queue drain and the server's last resets pass.
	time.Sleep(300 * time.Millisecond)
	out, err := run(ctx, append(ipt, "-L", "FORWARD", "-v", "-x", "-n")...)
	if err != nil {
		return fail(err)
	}
	if s.RuleHits, err = parseRuleHits(out, target); err != nil {
		return fail(err)
	}
	if p == nil {
		return s
	}
	if p.exited() {
		return fail(fmt.Errorf("%s exited during the flood: %v: %s", c.Name, p.err, tail(p.stderr.String())))
	}
	if q1, err = readQueues(p.pid()); err != nil {
		return fail(err)
	}
	s.Queued, s.Dropped = q1.queued-q0.queued, q1.dropped-q0.dropped
	cpu1, err := procCPU(p.pid())
	if err != nil {
		return fail(err)
	}
	cpu := cpu1 - cpu0
	if c.guard {
		j, err := scrapeJudged(ctx, t)
		if err != nil {
			return fail(err)
		}
		s.Judged = j - judged0
		p.stop(5 * time.Second)
	} else {
		p.stop(5 * time.Second)
		if s.Judged, err = parseJudged(p.stdout.String()); err != nil {
			return fail(fmt.Errorf("%s: %w", c.Name, err))
		}
	}
	s.Bypassed = int64(s.RuleHits) - int64(s.Judged)
	if secs > 0 {
		s.JudgedPPS = float64(s.Judged) / secs
	}
	if s.Judged > 0 {
		s.CPUPerPkt = float64(cpu) / float64(s.Judged)
	}
	return s
}

// procCPU is utime+stime of pid (all its threads, since it started).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	u, st, err := parseStat(b)
	return u + st, err
}

// parseStat returns utime and stime of one /proc/PID/stat line. The
// command name (field 2) may hold spaces and parentheses; the fields after
// the last ")" are fixed: state is field 3, utime 14, stime 15 (proc(5)).
func parseStat(b []byte) (user, sys time.Duration, err error) {
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, errors.New("/proc/PID/stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name, want 13 or more", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("/proc/PID/stat: %w", err)
	}
	return time.Duration(ut) * time.Second / clockTicks, time.Duration(st) * time.Second / clockTicks, nil
}

// parseJudged reads the "packets" count from the last JSON line of an
// accept-all program's standard output (bench/nfqaccept and
// bench/nfqaccept-c print the same keys on SIGTERM).
func parseJudged(stdout string) (uint64, error) {
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	var v struct {
		Packets *uint64 `json:"packets"`
	}
	if err := json.Unmarshal([]byte(last), &v); err != nil || v.Packets == nil {
		return 0, fmt.Errorf("no {\"packets\":N} line at the end of its output %q (did it get SIGTERM and exit cleanly?)", tail(stdout))
	}
	return *v.Packets, nil
}

// parseRuleHits returns the packet counter of the first rule with target in
// `iptables -L CHAIN -v -x -n` output.
func parseRuleHits(out, target string) (uint64, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == target {
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s rule in the gateway's mangle FORWARD chain", target)
}

// scrapeJudged sums rstguard_packets_total (packets decided, every verdict
// and reason, all queues) from rstguard's /metrics.
func scrapeJudged(ctx context.Context, t *topology) (uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := t.lab.ScrapeAddr(sctx, guardMetricsAddr)
	if err != nil {
		return 0, err
	}
	return sumCounter(body, "rstguard_packets_total")
}

// sumCounter sums every sample of one counter in Prometheus text format
// (lab.ParseMetrics, the lab's parser).
func sumCounter(body, name string) (uint64, error) {
	samples, err := lab.ParseMetrics(body, name)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	if len(samples) == 0 {
		return 0, fmt.Errorf("metrics: no %s samples", name)
	}
	var sum float64
	for _, v := range samples {
		sum += v
	}
	return uint64(sum), nil
}

// mmsghdr is struct mmsghdr (sendmmsg(2)).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

const floodBatch = 64

// flood sends SYNs for workload wl from the client namespace over one raw
// socket (IP_HDRINCL), in sendmmsg batches of 64, until count packets or d
// has passed. Sources are only the client's documentation prefix.
func flood(ns, wl string, count uint64, d time.Duration) (sent uint64, secs float64, err error) {
	var spread bool
	switch wl {
	case "syn-closed":
	case "new-flows":
		spread = true
	default:
		return 0, 0, fmt.Errorf("workload %q: want syn-closed or new-flows", wl)
	}
	err = inNetns(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket in %s (needs CAP_NET_RAW): %w", ns, err)
		}
		defer unix.Close(fd)
		dst := lab.ServerV4.As4()
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst}); err != nil {
			return fmt.Errorf("connect raw socket to %s: %w", lab.ServerV4, err)
		}
		var pkts [floodBatch][40]byte
		var iov [floodBatch]unix.Iovec
		var msgs [floodBatch]mmsghdr
		for i := range msgs {
			iov[i].Base = &pkts[i][0]
			iov[i].SetLen(40)
			msgs[i].hdr.Iov = &iov[i]
			msgs[i].hdr.SetIovlen(1)
		}
		var g synGen
		g.init(lab.ClientV4, lab.ServerV4, spread)
		start := time.Now()
		deadline := start.Add(d)
		for sent < count && time.Now().Before(deadline) {
			n := min(uint64(floodBatch), count-sent)
			for i := uint64(0); i < n; i++ {
				g.next(&pkts[i])
			}
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
			if e != 0 {
				if e == unix.ENOBUFS || e == unix.EAGAIN || e == unix.EINTR {
					runtime.Gosched()
					continue
				}
				return fmt.Errorf("sendmmsg: %w", e)
			}
			sent += uint64(r)
		}
		secs = time.Since(start).Seconds()
		return nil
	})
	return sent, secs, err
}

// synGen writes bare 40-byte IPv4 TCP SYNs (RFC 9293 section 3.1, no
// options) with cycling source ports and, when spread, source addresses
// 192.0.2.10..192.0.2.250 within the client's prefix.
type synGen struct {
	src, dst [4]byte
	spread   bool
	port     uint16
	host     byte
	seq      uint32
}

func (g *synGen) init(src, dst netip.Addr, spread bool) {
	g.src, g.dst, g.spread, g.port, g.host = src.As4(), dst.As4(), spread, 1024, 10
}

func (g *synGen) next(b *[40]byte) {
	src := g.src
	if g.spread {
		src[3] = g.host
		if g.host++; g.host > 250 {
			g.host = 10
		}
		if g.host == 10 {
			g.port++
		}
	} else {
		g.port++
	}
	if g.port < 1024 {
		g.port = 1024
	}
	g.seq += 0x9e3779b1
	// IPv4 header (RFC 791).
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], 40)
	binary.BigEndian.PutUint16(b[4:], uint16(g.seq>>16))
	binary.BigEndian.PutUint16(b[6:], 0x4000) // DF
	b[8], b[9] = 64, unix.IPPROTO_TCP
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], g.dst[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b[:20], 0))
	// TCP header: SYN, window 64240, no options.
	t := b[20:40]
	binary.BigEndian.PutUint16(t[0:], g.port)
	binary.BigEndian.PutUint16(t[2:], ppsClosedPort)
	binary.BigEndian.PutUint32(t[4:], g.seq)
	binary.BigEndian.PutUint32(t[8:], 0)
	t[12], t[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(t[14:], 64240)
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0
	// Pseudo-header (RFC 9293 section 3.1): addresses, protocol, length.
	ph := (uint32(src[0])<<8 | uint32(src[1])) + (uint32(src[2])<<8 | uint32(src[3])) +
		(uint32(g.dst[0])<<8 | uint32(g.dst[1])) + (uint32(g.dst[2])<<8 | uint32(g.dst[3])) +
		unix.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(t[16:], checksum(t, ph))
}

// checksum is the Internet checksum (RFC 1071) of b plus a partial sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ppsSummary is one configuration under one workload over the runs.
type ppsSummary struct {
	Config       string    `json:"config"`
	Workload     string    `json:"workload"`
	Runs         int       `json:"runs"`
	OfferedPPS   float64   `json:"offered_per_second_median"`
	RuleHits     float64   `json:"rule_hits_median"`
	Judged       float64   `json:"judged_median"`
	JudgedPPS    float64   `json:"judged_per_second_median"`
	AllPPS       []float64 `json:"judged_per_second"`
	BypassShare  float64   `json:"bypassed_share_median"` // of rule hits; -1 kernel
	CPUNsPerPkt  float64   `json:"cpu_ns_per_judged_median"`
	VsC          []float64 `json:"ratio_vs_c_accept_per_run,omitempty"`
	VsCMedian    float64   `json:"ratio_vs_c_accept_median,omitempty"`
	Errors       []string  `json:"errors,omitempty"`
	KernelFwdPPS float64   `json:"kernel_forwarded_per_second_median,omitempty"`
}

// summarizePPS computes per workload and configuration the medians, and for
// every configuration the per-run ratio of its judged/s to c-accept's in
// the same run and workload.
func summarizePPS(configs []string, samples []ppsSample) []ppsSummary {
	var out []ppsSummary
	for _, wl := range ppsWorkloads {
		ceiling := map[int]float64{}
		for _, s := range samples {
			if s.Workload == wl && s.Config == "c-accept" && s.Err == "" && s.JudgedPPS > 0 {
				ceiling[s.Run] = s.JudgedPPS
			}
		}
		for _, c := range configs {
			sm := ppsSummary{Config: c, Workload: wl, BypassShare: -1}
			var offered, hits, judged, pps, share, cpu, fwd []float64
			for _, s := range samples {
				if s.Workload != wl || s.Config != c {
					continue
				}
				if s.Err != "" {
					sm.Errors = append(sm.Errors, fmt.Sprintf("run %d: %s", s.Run, s.Err))
					continue
				}
				sm.Runs++
				if s.SendSecs > 0 {
					offered = append(offered, float64(s.Offered)/s.SendSecs)
					if s.Bypassed < 0 {
						fwd = append(fwd, float64(s.RuleHits)/s.SendSecs)
					}
				}
				hits = append(hits, float64(s.RuleHits))
				if s.Bypassed < 0 {
					continue
				}
				judged = append(judged, float64(s.Judged))
				pps = append(pps, s.JudgedPPS)
				if s.RuleHits > 0 {
					share = append(share, float64(max(0, s.Bypassed))/float64(s.RuleHits))
				}
				if s.CPUPerPkt > 0 {
					cpu = append(cpu, s.CPUPerPkt)
				}
				if cl := ceiling[s.Run]; cl > 0 {
					sm.VsC = append(sm.VsC, s.JudgedPPS/cl)
				}
			}
			sm.OfferedPPS, sm.RuleHits, sm.Judged, sm.JudgedPPS = median(offered), median(hits), median(judged), median(pps)
			sm.AllPPS, sm.CPUNsPerPkt, sm.VsCMedian, sm.KernelFwdPPS = pps, median(cpu), median(sm.VsC), median(fwd)
			if len(share) > 0 {
				sm.BypassShare = median(share)
			}
			out = append(out, sm)
		}
	}
	return out
}

func reportPPS(o options, configs []*ppsConfig, samples []ppsSample, load0, load1 string) error {
	var names []string
	for _, c := range configs {
		names = append(names, c.Name)
	}
	sums := summarizePPS(names, samples)
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"mode": "pps", "runs": o.runs, "seconds": o.seconds, "count": o.ppsCount,
			"loadavg_before": load0, "loadavg_after": load1, "summary": sums, "samples": samples,
		})
	}
	fmt.Printf("pps benchmark: %d runs x <= %d s or %d SYNs per workload and configuration (interleaved); loadavg %s -> %s\n",
		o.runs, o.seconds, o.ppsCount, load0, load1)
	var errs []error
	for _, wl := range ppsWorkloads {
		fmt.Printf("\n%s:\n", wl)
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "config\truns\toffered/s\trule hits\tjudged\tjudged/s median\tjudged/s per run\tbypassed\tCPU ns/judged\tvs c-accept per run\tvs c-accept median\t")
		for _, s := range sums {
			if s.Workload != wl {
				continue
			}
			dash := func(v float64, f string) string {
				if v <= 0 {
					return "-"
				}
				return fmt.Sprintf(f, v)
			}
			var per, vs []string
			for _, v := range s.AllPPS {
				per = append(per, fmt.Sprintf("%.0f", v))
			}
			for _, v := range s.VsC {
				vs = append(vs, fmt.Sprintf("%.3f", v))
			}
			judged, jps, bypass := dash(s.Judged, "%.0f"), dash(s.JudgedPPS, "%.0f"), "-"
			if s.BypassShare >= 0 {
				bypass = fmt.Sprintf("%.1f%%", 100*s.BypassShare)
			}
			if s.Config == "kernel" {
				judged, jps = "(fwd)", dash(s.KernelFwdPPS, "%.0f")
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Config, s.Runs,
				dash(s.OfferedPPS, "%.0f"), dash(s.RuleHits, "%.0f"), judged, jps, strings.Join(per, " "),
				bypass, dash(s.CPUNsPerPkt, "%.0f"), strings.Join(vs, " "), dash(s.VsCMedian, "%.3f"))
			for _, e := range s.Errors {
				errs = append(errs, fmt.Errorf("%s %s: %s", wl, s.Config, e))
			}
		}
		w.Flush()
	}
	fmt.Println("\noffered/s = SYNs sent / send time; rule hits = the gateway's mangle FORWARD tcp rule (both directions: the server's resets too);")
	fmt.Println("judged = the consumer's own count (C and Go accept-all: its exit line; rstguard: rstguard_packets_total); judged/s = judged / send time;")
	fmt.Println("bypassed = (rule hits - judged) / rule hits: let through unjudged (fail-open, --queue-bypass); CPU ns/judged = consumer utime+stime / judged;")
	fmt.Println("vs c-accept = judged/s / c-accept's judged/s in the same run and workload. kernel row: judged/s column is packets forwarded by the rule / send time.")
	for _, e := range errs {
		fmt.Println("error:", e)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}
