package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlDumpUnderLoadE2E (make bench-dump, RSTGUARD_DUMP_E2E=1; a
// measurement rather than part of make test: it builds a table of a million
// flows): rstguard flows dumps 1,000,000
// flows through the control socket while a transfer flows through the
// daemon. It reports the daemon's verdict latency p99
// (rstguard_verdict_latency_seconds) in a window without and a window with
// the dump, and the watchdog pings in each; it fails if the dump misses
// flows, if p99 during the dump is more than twice its idle value (one
// bucket of slack: the histogram's buckets are coarse), or if the watchdog
// missed a ping.
func TestControlDumpUnderLoadE2E(t *testing.T) {
	if os.Getenv("RSTGUARD_DUMP_E2E") != "1" {
		t.Skip("a measurement, run by make bench-dump (RSTGUARD_DUMP_E2E=1): builds a table of 1,000,000 flows, about two minutes")
	}
	requireRoot(t, "ip", "iptables", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	l := newE2ELab(ctx, t)
	l.bin = filepath.Join(dir, "rstguard")
	if out, err := execGoBuild(ctx, l.bin); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l.cfgPath = filepath.Join(dir, "config.toml")
	sock := filepath.Join(dir, "control.sock")
	l.writeConfig(fmt.Sprintf(`[queue]
numbers = [%d]
max_queue_len = 65536

[conntrack]
max_flows = 1200000

[conntrack.timeouts]
syn_sent = "1h"
closed = "1h"

[metrics]
listen = %q

[control]
socket = %q
`, e2eQueue, e2eMetrics, sock))
	l.serveTCP4()
	l.startDaemon(ctx)

	// A million flows: SYNs from 250 sources x 4000 ports to a closed port
	// of the server, paced so that the queue keeps up (each becomes a
	// flow, closed by the server's reset, kept by the long timeouts).
	var srcs []netip.Addr
	for i := range 250 {
		srcs = append(srcs, netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)}))
	}
	t0 := time.Now()
	if err := synFloodFrom(l.fwd, srcs, 4000, 1_000_000, 60_000, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	l.waitFor(ctx, "the table to hold about a million flows", 20*time.Second, func() bool {
		return l.metric("rstguard_flows_tracked") >= 990_000
	})
	flows := l.metric("rstguard_flows_tracked")
	t.Logf("%v flows tracked after %v", flows, time.Since(t0).Round(time.Second))

	// Traffic through the daemon for both windows.
	c := l.dial()
	stopTraffic := make(chan struct{})
	trafficDone := make(chan error, 1)
	go func() {
		for i := uint64(0); ; i++ {
			select {
			case <-stopTraffic:
				trafficDone <- nil
				return
			default:
			}
			if err := transfer(c, 4<<20, 100+i, 0, nil); err != nil {
				trafficDone <- err
				return
			}
		}
	}()
	type window struct {
		p99      float64
		packets  float64
		watchdog int
		dur      time.Duration
	}
	measure := func(during func()) window {
		b0 := latencyBuckets(l)
		w0 := strings.Count(l.notify.String(), "WATCHDOG=1")
		start := time.Now()
		during()
		d := time.Since(start)
		b1 := latencyBuckets(l)
		w1 := strings.Count(l.notify.String(), "WATCHDOG=1")
		p99, n := quantile(b0, b1, 0.99)
		return window{p99: p99, packets: n, watchdog: w1 - w0, dur: d}
	}
	var dumped int
	var dumpErr error
	busy := measure(func() {
		out, err := exec.CommandContext(ctx, l.bin, "flows", "--json", "--socket", sock).Output()
		dumpErr = err
		dumped = strings.Count(string(out), "\n") - 1 // the last line is the end marker
	})
	idle := measure(func() { time.Sleep(busy.dur) })
	close(stopTraffic)
	if err := <-trafficDone; err != nil {
		t.Fatalf("transfer during the dump: %v", err)
	}
	if dumpErr != nil {
		t.Fatalf("rstguard flows: %v", dumpErr)
	}
	t.Logf("dump: %d flows in %v; verdict latency p99: idle %.1f us (%v packets, %d watchdog pings), during the dump %.1f us (%v packets, %d watchdog pings)",
		dumped, busy.dur.Round(time.Millisecond), idle.p99*1e6, idle.packets, idle.watchdog, busy.p99*1e6, busy.packets, busy.watchdog)
	if float64(dumped) < 0.99*flows {
		t.Errorf("dumped %d of %v flows", dumped, flows)
	}
	if busy.p99 > 2*idle.p99 && busy.p99 > nextBucket(2*idle.p99) {
		t.Errorf("verdict latency p99 %.1f us during the dump, %.1f us idle: more than twice", busy.p99*1e6, idle.p99*1e6)
	}
	// The daemon pings every 200 ms (WATCHDOG_USEC 400 ms) while alive.
	if want := int(busy.dur/(200*time.Millisecond)) - 1; busy.watchdog < want {
		t.Errorf("%d watchdog pings in %v of dump, want at least %d", busy.watchdog, busy.dur, want)
	}
}

var latencyBounds = []string{"1e-07", "2.5e-07", "5e-07", "1e-06", "2.5e-06", "5e-06", "1e-05", "2.5e-05", "5e-05", "0.0001",
	"0.00025", "0.0005", "0.001", "0.0025", "0.01", "+Inf"}

func latencyBuckets(l *e2eLab) []float64 {
	out := make([]float64, len(latencyBounds))
	for i, le := range latencyBounds {
		out[i] = l.metric("rstguard_verdict_latency_seconds_bucket", `le="`+le+`"`)
	}
	return out
}

// quantile returns the upper bound of the bucket holding quantile q of the
// observations between two scrapes, and their number.
func quantile(b0, b1 []float64, q float64) (float64, float64) {
	total := b1[len(b1)-1] - b0[len(b0)-1]
	for i := range b1 {
		if total > 0 && (b1[i]-b0[i]) >= q*total {
			var v float64
			if _, err := fmt.Sscan(latencyBounds[i], &v); err != nil || latencyBounds[i] == "+Inf" {
				return 1, total
			}
			return v, total
		}
	}
	return 1, total
}

// nextBucket is the first bucket bound at or above v.
func nextBucket(v float64) float64 {
	for _, le := range latencyBounds[:len(latencyBounds)-1] {
		var b float64
		fmt.Sscan(le, &b)
		if b >= v {
			return b
		}
	}
	return 1
}
