package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rstguard/rstguard/lab"
)

// soakDurationEnv sets the soak's load phase ("60s" if unset; `make soak`
// sets 5m).
const soakDurationEnv = "RSTGUARD_SOAK"

func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv(soakDurationEnv)
	if v == "" {
		return 60 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 10*time.Second || d > time.Hour {
		t.Fatalf("%s=%q: want a duration from 10s to 1h", soakDurationEnv, v)
	}
	return d
}

// soakConfig has short timeouts, so that the flows of the soak's short
// connections expire while it runs.
func soakConfig(maxFlows int) string {
	return fmt.Sprintf(`[queue]
numbers = [%d]

[conntrack]
max_flows = %d

[conntrack.timeouts]
syn_sent = "3s"
syn_recv = "3s"
established = "5s"
fin_wait = "3s"
close_wait = "3s"
last_ack = "3s"
time_wait = "3s"
closed = "3s"

[policy]
rst_mode = "window"

[metrics]
listen = %q

[log]
level = "info"
`, e2eQueue, maxFlows, e2eMetrics)
}

// memSample is the daemon's memory at one moment: RSS from
// /proc/PID/status, the heap in use and the heap goal the last GC set
// (go_memstats_next_gc_bytes: the live heap after that GC times
// 1+GOGC/100, at least 4 MiB), so it measures the heap after GC without
// forcing one.
type memSample struct {
	at                 time.Duration
	rss, inuse, nextGC float64
	flows              float64
	gcs                float64
}

func (l *e2eLab) memSample(start time.Time) memSample {
	l.t.Helper()
	return memSample{
		at:     time.Since(start).Round(time.Millisecond),
		rss:    procRSS(l.t, l.daemon.Process.Pid),
		inuse:  l.metric("go_memstats_heap_inuse_bytes"),
		nextGC: l.metric("go_memstats_next_gc_bytes"),
		flows:  l.metric("rstguard_flows_tracked"),
		gcs:    l.metric("go_gc_duration_seconds_count"),
	}
}

// procRSS is VmRSS of pid in bytes.
func procRSS(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("daemon status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// minOf returns the sample with the least value of f among ss.
func minOf(ss []memSample, f func(memSample) float64) float64 {
	m := f(ss[0])
	for _, s := range ss[1:] {
		m = min(m, f(s))
	}
	return m
}

// dialClient connects from the client to the server's application port
// without failing the test (for goroutines).
func (l *e2eLab) dialClient() (net.Conn, error) {
	var c net.Conn
	err := lab.DoIn(l.cli, func() (err error) {
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp4", net.JoinHostPort(e2eServerIP, strconv.Itoa(e2eSrvPort)))
		return err
	})
	return c, err
}

// soakOffset puts a forged reset this far past the victim's RCV.NXT: far
// outside any receive window (at most 2^30 bytes, RFC 7323 2.3, also for a
// loosely tracked picked-up flow) and not ambiguous modulo 2^32.
const soakOffset = 3 << 29

// TestSoakE2E runs many short connections and a few long ones through the
// daemon for RSTGUARD_SOAK (60 s by default, 5 minutes with `make soak`),
// with forged out-of-window resets fired at live connections at random
// times, under short timeouts. It checks that no legitimate connection
// broke, that the daemon dropped exactly the forged resets (and the client
// received none), that the flow table empties once the flows have timed
// out, and that the daemon's heap after GC and its RSS stay flat.
func TestSoakE2E(t *testing.T) {
	requireRoot(t, "ip", "iptables", "go")
	dur := soakDuration(t)
	ctx, cancel := context.WithTimeout(context.Background(), dur+3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	l := newE2ELab(ctx, t)
	if l.nft {
		t.Fatal("iptables does not work here; the soak counts delivered resets with an iptables rule")
	}
	l.bin = filepath.Join(dir, "rstguard")
	if out, err := execGoBuild(ctx, l.bin); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l.cfgPath = filepath.Join(dir, "config.toml")
	l.writeConfig(soakConfig(65536))
	// Many connections: room for the client's TIME_WAIT ports (60 s each).
	run(ctx, t, "ip", "netns", "exec", l.cli, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
	l.serveTCP4()
	sniff := newSniffer(t, l.cli)
	delivered := l.countForgedDelivered(ctx)
	l.startDaemon(ctx)

	oow0 := l.metric("rstguard_packets_total", `reason="rst_out_of_window"`)
	drops0 := l.metric("rstguard_packets_total", `verdict="drop"`)

	var (
		shortOK, shortBroken, longRounds, longBroken, fired, forgeErrs, uncaptured atomic.Int64
		errMu                                                                      sync.Mutex
		firstErrs                                                                  []string
	)
	report := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, fmt.Sprintf(format, args...))
		}
	}
	forge := func(c net.Conn, sent int64, since time.Time) {
		port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
		base, ok := sniff.rcvNxtSince(port, sent, since)
		if !ok {
			// The capture lost it: no reset is fired, none is counted.
			uncaptured.Add(1)
			return
		}
		if err := sendForgedRST(l.fwd, c, base+soakOffset, forgedTTL); err != nil {
			forgeErrs.Add(1)
			report("forge: %v", err)
			return
		}
		fired.Add(1)
	}

	stopShort, stopLong := make(chan struct{}), make(chan struct{})
	stopped := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	var shortWG, longWG sync.WaitGroup

	// Short connections: 4 workers, each a bounded loop of connect,
	// one or two request/responses of up to 32 KiB, close; one connection
	// in 25 gets a forged reset between its two exchanges.
	const maxShort = 1 << 20
	for w := range 4 {
		shortWG.Add(1)
		go func() {
			defer shortWG.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < maxShort && !stopped(stopShort); i++ {
				since := time.Now()
				c, err := l.dialClient()
				if err != nil {
					shortBroken.Add(1)
					report("short connect: %v", err)
					continue
				}
				n := int64(1 + rng.IntN(32<<10))
				err = transfer(c, n, rng.Uint64(), 0, nil)
				if err == nil && rng.IntN(25) == 0 {
					forge(c, n, since)
					err = transfer(c, 1+int64(rng.IntN(4<<10)), rng.Uint64(), 0, nil)
				}
				c.Close()
				if err != nil {
					shortBroken.Add(1)
					report("short connection %v: %v", c.LocalAddr(), err)
				} else {
					shortOK.Add(1)
				}
				time.Sleep(time.Duration(5+rng.IntN(10)) * time.Millisecond)
			}
		}()
	}

	// Long connections: 3, each a loop of 512 KiB responses with pauses
	// below the established timeout, for the whole run.
	type long struct {
		c    net.Conn
		sent atomic.Int64
	}
	longs := make([]*long, 3)
	for i := range longs {
		c, err := l.dialClient()
		if err != nil {
			t.Fatalf("long connection: %v", err)
		}
		longs[i] = &long{c: c}
		longWG.Add(1)
		go func() {
			defer longWG.Done()
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(100+i), 2))
			for !stopped(stopLong) {
				const n = 512 << 10
				if err := transfer(c, n, rng.Uint64(), 0, nil); err != nil {
					longBroken.Add(1)
					report("long connection %d: %v", i, err)
					return
				}
				longs[i].sent.Add(n)
				longRounds.Add(1)
				time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
			}
		}()
	}
	// The forger: a reset at a random long connection every 100-600 ms.
	forgerDone := make(chan struct{})
	go func() {
		defer close(forgerDone)
		rng := rand.New(rand.NewPCG(7, 3))
		for !stopped(stopShort) {
			time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
			lc := longs[rng.IntN(len(longs))]
			forge(lc.c, lc.sent.Load(), time.Time{})
		}
	}()

	// Sample the daemon's memory every 2 s while the load runs.
	start := time.Now()
	var samples []memSample
	for time.Since(start) < dur {
		time.Sleep(min(2*time.Second, dur-time.Since(start)))
		s := l.memSample(start)
		samples = append(samples, s)
		if len(samples)%10 == 1 {
			t.Logf("t=%v rss %s heap in use %s heap goal %s flows %v GCs %v short %d long rounds %d forged %d",
				s.at, mib(s.rss), mib(s.inuse), mib(s.nextGC), s.flows, s.gcs, shortOK.Load(), longRounds.Load(), fired.Load())
		}
	}
	close(stopShort)
	shortWG.Wait()
	<-forgerDone
	close(stopLong)
	longWG.Wait()
	loadEnd := l.memSample(start)

	t.Logf("load: %d short connections ok, %d broken; %d long rounds (%d connections), %d broken; %d forged resets fired (%d could not be, %d not for want of a captured SYN-ACK)",
		shortOK.Load(), shortBroken.Load(), longRounds.Load(), len(longs), longBroken.Load(), fired.Load(), forgeErrs.Load(), uncaptured.Load())
	for _, e := range firstErrs {
		t.Log("  " + e)
	}
	if shortBroken.Load() != 0 || longBroken.Load() != 0 {
		t.Errorf("%d short and %d long legitimate connections broke through the guard, want 0", shortBroken.Load(), longBroken.Load())
	}
	if forgeErrs.Load() != 0 {
		t.Errorf("%d forged resets could not be sent", forgeErrs.Load())
	}
	if uncaptured.Load()*10 > fired.Load() {
		t.Errorf("the capture missed %d SYN-ACKs for %d forged resets", uncaptured.Load(), fired.Load())
	}
	if shortOK.Load() < 100 || longRounds.Load() < 10 || fired.Load() < 10 {
		t.Errorf("too little load to judge: %d short, %d long rounds, %d forged", shortOK.Load(), longRounds.Load(), fired.Load())
	}

	// Every forged reset dropped by the daemon, as out of window, and
	// nothing else dropped; none delivered.
	want := float64(fired.Load())
	l.waitFor(ctx, fmt.Sprintf("the daemon to count %v forged resets", want), 10*time.Second, func() bool {
		return l.metric("rstguard_packets_total", `reason="rst_out_of_window"`)-oow0 >= want
	})
	time.Sleep(300 * time.Millisecond)
	if got := l.metric("rstguard_packets_total", `reason="rst_out_of_window"`) - oow0; got != want {
		t.Errorf("rst_out_of_window drops = %v, want exactly the %v forged", got, want)
	}
	if got := l.metric("rstguard_packets_total", `verdict="drop"`) - drops0; got != want {
		t.Errorf("drops of any reason = %v, want exactly the %v forged", got, want)
	}
	if n := delivered(); n != 0 {
		t.Errorf("%d forged resets were delivered to the client, want 0", n)
	}

	// The flows time out. Reaping is driven by packets (policy: a few
	// expired flows per packet), so an idle daemon keeps its count; a
	// trickle of round trips on one connection reaps them.
	time.Sleep(6 * time.Second) // the longest timeout (established, 5 s) and a margin
	idle := l.metric("rstguard_flows_tracked")
	tc, err := l.dialClient()
	if err != nil {
		t.Fatalf("trickle connection: %v", err)
	}
	defer tc.Close()
	trips := 0
	for ; trips < 5000; trips++ {
		if trips%100 == 0 && l.metric("rstguard_flows_tracked") <= 2 {
			break
		}
		if err := transfer(tc, 1, uint64(trips), 0, nil); err != nil {
			t.Fatalf("trickle round trip %d: %v", trips, err)
		}
	}
	flows := l.metric("rstguard_flows_tracked")
	t.Logf("flows tracked: %v at the end of the load, %v after 6 s idle, %v after %d trickle round trips (expired in all: %v)",
		loadEnd.flows, idle, flows, trips, l.metric("rstguard_flows_expired_total"))
	if flows > 2 {
		t.Errorf("rstguard_flows_tracked = %v after the timeouts, want at most 2 (the trickle connection)", flows)
	}

	// Memory flat: the heap after GC (the goal the last GC set) and RSS
	// of the first stretch after warm-up against the last stretch of the
	// load. Each is the least of a few samples, so a sample taken just
	// before a GC does not count.
	if len(samples) < 6 {
		t.Fatalf("only %d memory samples", len(samples))
	}
	win := max(3, len(samples)/10)
	warm := len(samples) / 10
	first, last := samples[warm:warm+win], samples[len(samples)-win:]
	h0, h1 := minOf(first, func(s memSample) float64 { return s.nextGC }), minOf(last, func(s memSample) float64 { return s.nextGC })
	u0, u1 := minOf(first, func(s memSample) float64 { return s.inuse }), minOf(last, func(s memSample) float64 { return s.inuse })
	r0, r1 := first[len(first)-1].rss, last[len(last)-1].rss
	t.Logf("soak %v: heap goal after GC first %s last %s; heap in use (least) first %s last %s; RSS first %s last %s; GCs %v",
		dur, mib(h0), mib(h1), mib(u0), mib(u1), mib(r0), mib(r1), last[len(last)-1].gcs-first[0].gcs)
	if h1 > h0*1.5+4<<20 {
		t.Errorf("the daemon's heap after GC grew from %s to %s over the soak", mib(h0), mib(h1))
	}
	if r1 > r0*1.5+16<<20 {
		t.Errorf("the daemon's RSS grew from %s to %s over the soak", mib(r0), mib(r1))
	}
	if p := l.metric("rstguard_panics_recovered_total"); p != 0 {
		t.Errorf("rstguard_panics_recovered_total = %v, want 0", p)
	}
}

// execGoBuild builds this package's binary (the daemon under test).
func execGoBuild(ctx context.Context, bin string) ([]byte, error) {
	return exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
}
