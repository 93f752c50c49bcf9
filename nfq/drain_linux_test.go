package nfq

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

// requireRoot skips without root or a tool, except with RSTGUARD_E2E=1,
// where that is a failure.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	strict := os.Getenv("RSTGUARD_E2E") == "1"
	fail := func(msg string) {
		t.Helper()
		if strict {
			t.Fatal(msg)
		}
		t.Skip(msg + "; run: sudo RSTGUARD_E2E=1 go test ./nfq -run " + t.Name() + " -v")
	}
	if os.Geteuid() != 0 {
		fail("needs root (network namespace, NFQUEUE)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			fail("needs " + tool)
		}
	}
}

const (
	drainQueue = 3
	drainPort  = 9999
	drainN     = 4000
)

// TestDrainOnStop: stopping a worker in the middle of a burst loses no
// packet. Packets already queued to the worker get their verdict before the
// queue is unbound (the kernel would drop them on UNBIND: nfqnl_flush with
// NF_DROP), and later ones take the fail-open path, then the rule's bypass.
// The test runs its half that needs the namespace in a child process under
// "ip netns exec", so /proc/net and every socket belong to that namespace.
func TestDrainOnStop(t *testing.T) {
	if os.Getenv("RGD_DRAIN_CHILD") == "1" {
		drainChild(t)
		return
	}
	runInQueueNetns(t, "drain", "TestDrainOnStop", "RGD_DRAIN_CHILD")
}

// runInQueueNetns creates a network namespace (rgd-PID-suffix) whose OUTPUT
// chain queues UDP to drainPort on drainQueue with bypass, reruns the test
// named test inside it with env=1 set (so /proc/net and every socket belong
// to that namespace), and fails unless that child run passes.
func runInQueueNetns(t *testing.T, suffix, test, env string) {
	t.Helper()
	runInNetns(t, suffix, test, env, []string{"-A", "OUTPUT", "-p", "udp", "--dport", strconv.Itoa(drainPort),
		"-j", "NFQUEUE", "--queue-num", strconv.Itoa(drainQueue), "--queue-bypass"})
}

// runInNetns is runInQueueNetns with the iptables rules given (each the
// arguments of one iptables command).
func runInNetns(t *testing.T, suffix, test, env string, rules ...[]string) {
	t.Helper()
	requireRoot(t, "ip", "iptables")
	ns := fmt.Sprintf("rgd-%d-%s", os.Getpid(), suffix)
	sh := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh("ip", "-n", ns, "link", "set", "lo", "up")
	for _, r := range rules {
		sh(append([]string{"ip", "netns", "exec", ns, "iptables"}, r...)...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("child failed: %v", err)
	}
}

// startWorker runs a worker with a default engine on cfg's queue and waits
// until the queue is bound. stop cancels it; runErr receives Run's result.
func startWorker(t *testing.T, cfg Config, opts Options) (w *Worker, stop func(), runErr chan error) {
	t.Helper()
	return startWorkerWith(t, cfg, opts, policy.DefaultConfig())
}

// startWorkerWith is startWorker with the engine's configuration pc.
func startWorkerWith(t *testing.T, cfg Config, opts Options, pc policy.Config, tc ...conntrack.Config) (w *Worker, stop func(), runErr chan error) {
	t.Helper()
	ct := conntrack.DefaultConfig()
	if len(tc) > 0 {
		ct = tc[0]
	}
	w = New(cfg, policy.NewEngine(pc, ct), opts)
	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan struct{})
	runErr = make(chan error, 1)
	go func() { runErr <- w.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-runErr:
		stop()
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		stop()
		t.Fatal("queue not bound within 5 s")
	}
	// The one bind message set the copy parameters (nfqnl_recv_config
	// applies NFQA_CFG_PARAMS after creating the instance).
	if q, bound, err := procQueue(ProcPath, cfg.Queue); err != nil || !bound || q.CopyMode != nfqnlCopyPacket || q.CopyRange != w.copyRange() {
		stop()
		t.Fatalf("after the bind /proc shows %+v bound %v (%v); want copy mode %d range %d", q, bound, err, nfqnlCopyPacket, w.copyRange())
	}
	return w, stop, runErr
}

func drainChild(t *testing.T) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: drainPort})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rc.SetReadBuffer(16 << 20)
	got := make(chan int)
	go func() {
		seen := make(map[int]bool, drainN)
		buf := make([]byte, 64)
		for {
			rc.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := rc.ReadFromUDP(buf)
			if err != nil {
				got <- len(seen)
				return
			}
			if i, err := strconv.Atoi(string(buf[:n])); err == nil {
				seen[i] = true
			}
		}
	}()

	w, stop, runErr := startWorker(t, Config{Queue: drainQueue, FailOpen: true, GSO: true, MaxQueueLen: 8192, CopyRange: 128},
		Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	defer stop()

	sc, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: drainPort})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for i := range drainN {
		if i == drainN/2 {
			stop() // mid-burst: the worker has a backlog now
		}
		if _, err := sc.Write([]byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run after stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop within 10 s")
	}
	n := <-got
	t.Logf("received %d of %d; the worker gave %d verdicts, %d of them while draining", n, drainN, w.stats.Packets.Load(), w.drained)
	if n != drainN {
		t.Errorf("lost %d packets across the stop", drainN-n)
	}
	if _, bound, err := procQueue(ProcPath, drainQueue); err != nil || bound {
		t.Errorf("queue still bound after Run returned (err %v)", err)
	}
	if w.stats.Bound.Load() {
		t.Error("Stats.Bound still true after Run returned")
	}
}
