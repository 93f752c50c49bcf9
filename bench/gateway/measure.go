//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat;
// 100 on every Linux architecture Go supports (getconf CLK_TCK).
const clockTicks = 100

// queueSnap sums the gateway's NFQUEUE instances as seen by process pid
// (/proc/PID/net is the namespace of that process, and the kernel keeps one
// nfnetlink_queue table per network namespace).
type queueSnap struct {
	bound       int    // queues listed (bound to a socket)
	queued      uint64 // sum of id_sequence: packets queued since bind
	dropped     uint64 // queue_dropped: queue full, no fail-open
	userDropped uint64 // queue_user_dropped: socket full, no fail-open
}

// Columns (net/netfilter/nfnetlink_queue.c, seq_show): queue_number
// peer_portid queue_total copy_mode copy_range queue_dropped
// queue_user_dropped id_sequence 1.
func readQueues(pid int) (queueSnap, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/netfilter/nfnetlink_queue", pid))
	if err != nil {
		return queueSnap{}, err
	}
	var s queueSnap
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return s, fmt.Errorf("nfnetlink_queue: %q: want 8 columns or more", line)
		}
		var v [3]uint64
		for i, col := range []int{5, 6, 7} {
			if v[i], err = strconv.ParseUint(f[col], 10, 32); err != nil {
				return s, fmt.Errorf("nfnetlink_queue: %q: %w", line, err)
			}
		}
		s.bound++
		s.dropped += v[0]
		s.userDropped += v[1]
		s.queued += v[2]
	}
	return s, nil
}

// cpuTime is the user and system time of every thread of pid, dead ones
// included. System time includes the kernel work a verdict triggers in the
// consumer's context (reinjection, forwarding, the veth peer's receive
// path), so compare it between consumers, not with the engine's ns/op.
func cpuTime(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

// ruleHits returns the packet counter of the gateway's NFQUEUE rule in
// FORWARD: every packet the rule sent to a queue, including the ones a full
// queue let through with fail-open, which no /proc counter records.
func ruleHits(ctx context.Context, ns string) (uint64, error) {
	out, err := run(ctx, "ip", "netns", "exec", ns, "iptables", "-w", "-t", "mangle", "-L", "FORWARD", "-v", "-x", "-n")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "NFQUEUE" {
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no NFQUEUE rule in %s mangle FORWARD", ns)
}

type iperfResult struct {
	bitsPerSecond float64
	retransmits   int
}

// runIperf runs one bulk transfer client to server for seconds, with a
// one-off iperf3 server started for it (a stuck server from an earlier run
// can never answer "busy").
func runIperf(ctx context.Context, t *topology, seconds int) (iperfResult, error) {
	srv, err := startIn(t.server, "iperf3 server", "iperf3", "-s", "-1", "-B", serverAddr, "-p", iperfPort)
	if err != nil {
		return iperfResult{}, err
	}
	defer srv.stop(2 * time.Second)
	if err := waitListening(ctx, t.server, iperfPort, srv); err != nil {
		return iperfResult{}, err
	}
	ictx, cancel := context.WithTimeout(ctx, time.Duration(seconds+20)*time.Second)
	defer cancel()
	out, err := runLong(ictx, "ip", "netns", "exec", t.client, "iperf3", "-c", serverAddr, "-p", iperfPort,
		"-t", strconv.Itoa(seconds), "-J", "--connect-timeout", "3000")
	var r struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		return iperfResult{}, errors.Join(err, fmt.Errorf("iperf3 output: %w", jerr))
	}
	if r.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	if err != nil {
		return iperfResult{}, err
	}
	return iperfResult{r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits}, nil
}

// runLong is run without the short per-command timeout (ctx bounds it).
func runLong(ctx context.Context, args ...string) (string, error) {
	var sb strings.Builder
	cmd := execCommand(ctx, args...)
	cmd.Stdout = &sb
	var eb strings.Builder
	cmd.Stderr = &eb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(eb.String()))
	}
	return sb.String(), err
}

// waitListening polls ss in ns until a TCP listener on port exists (at most
// 5 s), without connecting to it.
func waitListening(ctx context.Context, ns, port string, p *proc) error {
	for i := 0; i < 100; i++ {
		out, err := run(ctx, "ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :"+port)
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing listens on port %s in %s after 5 s", p.name, port, ns)
}

// pingPongServer is an echo server in the server namespace for the
// round-trip measurement.
type pingPongServer struct {
	ln   net.Listener
	addr string
}

func startPingPong(t *topology) (*pingPongServer, error) {
	s := &pingPongServer{}
	err := inNetns(t.server, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", net.JoinHostPort(serverAddr, "0"))
		return err
	})
	if err != nil {
		return nil, err
	}
	s.addr = s.ln.Addr().String()
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	return s, nil
}

func (s *pingPongServer) close() { s.ln.Close() }

const pingPongSize = 64

// pingPong makes n request/response exchanges of 64 bytes over one TCP
// connection from the client namespace (after 50 unmeasured ones) and
// returns each round trip, sorted. The whole exchange is bounded by 30 s.
func pingPong(t *topology, addr string, n int) ([]time.Duration, error) {
	var c net.Conn
	err := inNetns(t.client, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req, resp [pingPongSize]byte
	rtts := make([]time.Duration, 0, n)
	for i := -50; i < n; i++ {
		req[0] = byte(i)
		start := time.Now()
		if _, err := c.Write(req[:]); err != nil {
			return nil, fmt.Errorf("ping-pong %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, resp[:]); err != nil {
			return nil, fmt.Errorf("ping-pong %d: %w", i, err)
		}
		d := time.Since(start)
		if resp != req {
			return nil, fmt.Errorf("ping-pong %d: echo differs", i)
		}
		if i >= 0 {
			rtts = append(rtts, d)
		}
	}
	slices.Sort(rtts)
	return rtts, nil
}

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// scrapeGuard reads rstguard's /metrics inside the gateway: the mean
// decision time over all queues and the packets its policy dropped.
func scrapeGuard(ctx context.Context, t *topology) (decisionNs float64, drops int64, byReason map[string]int64, err error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := t.lab.ScrapeAddr(sctx, guardMetricsAddr)
	if err != nil {
		return 0, -1, nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return 0, -1, nil, err
	}
	var sum float64
	var count uint64
	if f := fams["rstguard_decision_duration_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			sum += m.GetHistogram().GetSampleSum()
			count += m.GetHistogram().GetSampleCount()
		}
	}
	if count > 0 {
		decisionNs = sum / float64(count) * 1e9
	}
	byReason = map[string]int64{}
	if f := fams["rstguard_packets_total"]; f != nil {
		for _, m := range f.GetMetric() {
			var verdict, reason string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "verdict":
					verdict = l.GetValue()
				case "reason":
					reason = l.GetValue()
				}
			}
			if n := int64(m.GetCounter().GetValue()); verdict == "drop" && n > 0 {
				drops += n
				byReason[reason] += n
			}
		}
	}
	return decisionNs, drops, byReason, nil
}
