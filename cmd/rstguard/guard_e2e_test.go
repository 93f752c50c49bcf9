package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
)

// forgedTTL marks the guard test's forged resets: they reach the client
// with TTL forgedTTL-1, which no genuine packet of the test has (Linux sends
// with 64), so a counting rule in the client's INPUT chain counts exactly the
// forged resets that were delivered.
const forgedTTL = 201

// TestShippedRulesE2E installs exactly what a user installs, the shipped
// config.example.toml and deploy/ rules (deploy/rstguard-rules.sh), in the
// gateway of real namespaces, and shows that no forged reset is delivered
// while the daemon runs, while it is stalled with its queue overfilled
// (SIGSTOP plus a SYN flood: the kernel's fail-open path), and while it is
// killed and not yet restarted (queue bypass); that the transfers through
// it stay intact; and that the daemon's unvalidated-packet counter equals
// the queue rule's hits minus the packets it judged.
func TestShippedRulesE2E(t *testing.T) {
	requireRoot(t, "ip", "iptables", "ip6tables", "iptables-save", "iptables-restore", "sh", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dir := t.TempDir()
	l := newE2ELab(ctx, t)
	if l.nft {
		t.Fatal("iptables does not work here; the shipped iptables rules cannot be tested")
	}
	// Replace the lab's own queue rule by the shipped rules.
	run(ctx, t, "ip", "netns", "exec", l.gw, "iptables", "-F", "FORWARD")
	run(ctx, t, "ip", "netns", "exec", l.gw, "ip6tables", "-F", "FORWARD")
	rulesDir, err := filepath.Abs("../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	install := exec.CommandContext(ctx, "ip", "netns", "exec", l.gw, "sh", filepath.Join(rulesDir, "rstguard-rules.sh"), "install")
	install.Env = append(os.Environ(), "RSTGUARD_RULES_DIR="+rulesDir)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("rstguard-rules.sh install: %v\n%s", err, out)
	}
	// Count the forged resets the client receives.
	delivered := l.countForgedDelivered(ctx)

	l.bin = filepath.Join(dir, "rstguard")
	if out, err := execGoBuild(ctx, l.bin); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	l.cfgPath = filepath.Join(dir, "config.toml")
	l.writeConfig(string(example))
	statePath := nsGuardStatePath(t, l.gw)
	os.Remove(statePath) // a state file of an earlier test's daemon

	l.serveTCP4()
	sniff := newSniffer(t, l.cli)
	dial := l.dial

	l.startDaemon(ctx)
	// Every host pair guarded: both queues of the rules are bound, the
	// guard is present, nothing is reported wrong.
	if b := l.metric("rstguard_queue_bound"); b != 2 {
		t.Fatalf("rstguard_queue_bound sums to %v, want 2 (queues 0 and 1 of the shipped config)", b)
	}

	// Two long transfers, each checked byte for byte at the end.
	const size = 48 << 20
	var conns []net.Conn
	var errc chan error
	startTransfers := func(seed uint64) {
		conns = []net.Conn{dial(), dial()}
		errc = make(chan error, len(conns))
		for i, c := range conns {
			go func() { errc <- transfer(c, size, seed+uint64(i), 0, nil) }()
		}
	}
	waitTransfers := func(what string) {
		t.Helper()
		for range conns {
			if err := <-errc; err != nil {
				t.Fatalf("a transfer through the guard broke %s: %v", what, err)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	// Forged resets far outside each client's receive window, claiming to
	// come from the server.
	forgeAll := func(n int) {
		t.Helper()
		for _, c := range conns {
			port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
			base, ok := sniff.rcvNxt(port, 0)
			if !ok {
				t.Fatalf("the sniffer did not see the server's SYN-ACK to port %d", port)
			}
			for i := range n {
				forgeRSTTTL(t, l.fwd, c, base+1<<31+uint32(i)*4096, forgedTTL)
			}
		}
	}

	// 1. Running: the daemon drops them.
	startTransfers(10)
	time.Sleep(200 * time.Millisecond)
	forgeAll(4)
	l.waitFor(ctx, "the daemon to drop 8 forged resets", 5*time.Second, func() bool {
		return l.metric("rstguard_packets_total", `reason="rst_out_of_window"`) >= 8
	})
	// They were sent with TTL 201, far from the server's: each is flagged.
	if n := l.metric("rstguard_resets_ttl_mismatch_total", `outcome="dropped"`); n < 8 {
		t.Errorf("rstguard_resets_ttl_mismatch_total{outcome=\"dropped\"} = %v after 8 resets with TTL %d, want >= 8", n, forgedTTL)
	}
	// The daemon has read the live rules (their queue rule counted the
	// transfers) and finds nothing wrong with them.
	l.waitFor(ctx, "the daemon to read the rules' counters", 3*rulesInterval, func() bool {
		return l.metric("rstguard_queue_rule_packets_total") > 0
	})
	if p := l.metric("rstguard_ruleset_problem"); p != 0 {
		t.Fatalf("rstguard_ruleset_problem = %v with the shipped rules and config, want 0:\n%s", p, l.stderr.String())
	}

	// 2. Stalled with its queue overfilled: SIGSTOP, then a SYN flood
	// fills the flood's queue (8192 packets) so the kernel accepts what
	// follows unjudged (fail-open); forged resets in the middle of it.
	l.signal(syscall.SIGSTOP)
	synFlood(t, l.fwd, 40000, 4*time.Second)
	forgeAll(4)
	synFlood(t, l.fwd, 5000, time.Second)
	l.signal(syscall.SIGCONT)
	waitTransfers("by a stall")
	if n := delivered(); n != 0 {
		t.Errorf("%d forged resets were delivered while the daemon ran or was stalled, want 0", n)
	}

	// Quiet now: the rules' counters say hits = judged + unjudged, and the
	// daemon exports the unjudged ones (fail-open: queue_full).
	time.Sleep(500 * time.Millisecond)
	k1 := guardCounters(ctx, t, l.gw)
	l.waitFor(ctx, fmt.Sprintf("the daemon to account the rules' unjudged counter %+v", k1), 3*rulesInterval, func() bool {
		v := l.metric("rstguard_unvalidated_packets_total")
		t.Logf("daemon unvalidated %v, rules %+v, problems %v", v, k1, l.metric("rstguard_ruleset_problem"))
		return v == float64(k1.unjudged)
	})
	judged := l.metric("rstguard_queue_packets_total")
	if float64(k1.hits) != judged+float64(k1.unjudged) {
		t.Errorf("queue rule hits %d != judged %v + unjudged %d", k1.hits, judged, k1.unjudged)
	}
	if l.metric("rstguard_unvalidated_packets_total", `cause="queue_full"`) == 0 || k1.unjudged == 0 {
		t.Errorf("no packets counted as queue_full after a stall with an overfilled queue (rules' unjudged %d)", k1.unjudged)
	}
	t.Logf("after the stall: rule hits %d, judged %v, unjudged %d (resets among them dropped: %d)", k1.hits, judged, k1.unjudged, k1.resets)

	// 3. Killed (kill -9) in the middle of two transfers, restarted 1 s
	// later while they still run: meanwhile the queues are gone, the
	// rules' --queue-bypass forwards unjudged and the guard drops the
	// forged resets; after the restart the new daemon picks the flows up
	// and drops forged resets itself. The transfers are read at 12 MiB/s
	// each (about 5 s), so that the kill and the restart both land in
	// their middle; the longest stall of each is measured (and printed:
	// performance is not asserted here).
	const paced = 64 << 20
	watches := []*xferWatch{{}, {}}
	conns = []net.Conn{dial(), dial()}
	errc = make(chan error, len(conns))
	for i, c := range conns {
		go func() { errc <- transferWatched(c, paced, 20+uint64(i), 12<<20, watches[i]) }()
	}
	time.Sleep(300 * time.Millisecond)
	l.signal(syscall.SIGKILL)
	killed := time.Now()
	<-l.waitc
	atKill := []int64{watches[0].received.Load(), watches[1].received.Load()}
	saved, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatalf("the killed daemon left no guard state: %v", err)
	}
	var saved1, savedR uint64
	if f := strings.Fields(string(saved)); len(f) == 2 {
		saved1, _ = strconv.ParseUint(f[0], 10, 64)
		savedR, _ = strconv.ParseUint(f[1], 10, 64)
	} else {
		t.Fatalf("guard state %q, want two counters", saved)
	}
	time.Sleep(200 * time.Millisecond)
	forgeAll(4)
	time.Sleep(800 * time.Millisecond)
	// A new directory for the new daemon's notify socket.
	l.cfgPath = filepath.Join(dir, "restart", "config.toml")
	os.MkdirAll(filepath.Dir(l.cfgPath), 0o755)
	l.writeConfig(string(example))
	l.startDaemon(ctx)
	ready := time.Since(killed)
	atReady := []int64{watches[0].received.Load(), watches[1].received.Load()}
	forgeAll(4)
	l.waitFor(ctx, "the restarted daemon to drop 8 forged resets", 5*time.Second, func() bool {
		return l.metric("rstguard_packets_total", `reason="rst_out_of_window"`) >= 8
	})
	waitTransfers("by a kill and restart")
	for i := range watches {
		if atKill[i] == 0 || atReady[i] >= paced {
			t.Errorf("transfer %d had %d of %d bytes at the kill and %d when the new daemon was ready: not a kill and restart mid-transfer",
				i, atKill[i], paced, atReady[i])
		}
	}
	t.Logf("kill -9 mid-transfer, new daemon ready %v later: transfers intact (SHA-256), longest stalls %v and %v",
		ready.Round(time.Millisecond), watches[0].MaxGap().Round(time.Millisecond), watches[1].MaxGap().Round(time.Millisecond))
	if n := delivered(); n != 0 {
		t.Errorf("%d forged resets were delivered, want 0", n)
	}

	// The restarted daemon accounts what passed while no daemon ran.
	time.Sleep(500 * time.Millisecond)
	k2 := guardCounters(ctx, t, l.gw)
	l.waitFor(ctx, "the restarted daemon to account the rules' counters", 3*rulesInterval, func() bool {
		return l.metric("rstguard_unvalidated_packets_total") == float64(k2.unjudged-saved1)
	})
	if down := l.metric("rstguard_unvalidated_resets_total", `cause="daemon_down"`); down < 8 || float64(k2.resets-savedR) != l.metric("rstguard_unvalidated_resets_total") {
		t.Errorf("unjudged resets while down: %v (total %v), want at least the 8 forged, and the rules' %d - %d",
			down, l.metric("rstguard_unvalidated_resets_total"), k2.resets, savedR)
	}
	t.Logf("after the restart: unvalidated daemon_down %v packets, %v resets; rules: hits %d unjudged %d resets %d",
		l.metric("rstguard_unvalidated_packets_total", `cause="daemon_down"`),
		l.metric("rstguard_unvalidated_resets_total", `cause="daemon_down"`), k2.hits, k2.unjudged, k2.resets)
}

type guardCount struct{ hits, unjudged, resets uint64 }

// nsGuardStatePath is the guard state file of a daemon in network
// namespace ns (guardStatePath: the namespace's inode appended).
func nsGuardStatePath(t *testing.T, ns string) string {
	t.Helper()
	fi, err := os.Stat("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	return GuardStatePath + ".net" + strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
}

// guardCounters reads the shipped rules' counters with iptables-save in ns.
func guardCounters(ctx context.Context, t *testing.T, ns string) guardCount {
	t.Helper()
	var g guardCount
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out := run(ctx, t, "ip", "netns", "exec", ns, cmd, "-c")
		for _, line := range strings.Split(out, "\n") {
			m := regexp.MustCompile(`^\[(\d+):\d+\].*--comment "(rstguard: [a-z ]+)"`).FindStringSubmatch(line)
			if m == nil {
				continue
			}
			n, _ := strconv.ParseUint(m[1], 10, 64)
			switch m[2] {
			case "rstguard: queue":
				g.hits += n
			case "rstguard: unjudged":
				g.unjudged += n
			case "rstguard: unjudged reset":
				g.resets += n
			}
		}
	}
	return g
}

// countForgedDelivered adds a counting rule to the client's INPUT chain for
// resets with the TTL forgedTTL-1 (the forged resets that were delivered)
// and returns a function that reads it.
func (l *e2eLab) countForgedDelivered(ctx context.Context) func() int {
	t := l.t
	t.Helper()
	run(ctx, t, "ip", "netns", "exec", l.cli, "iptables", "-A", "INPUT", "-p", "tcp", "--tcp-flags", "RST", "RST",
		"-m", "ttl", "--ttl-eq", strconv.Itoa(forgedTTL-1), "-j", "ACCEPT")
	return func() int {
		t.Helper()
		out := run(ctx, t, "ip", "netns", "exec", l.cli, "iptables", "-nvxL", "INPUT")
		m := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+ACCEPT`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no counting rule in the client's INPUT:\n%s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
}

// forgeRSTTTL is forgeRST with a chosen TTL.
func forgeRSTTTL(t *testing.T, ns string, c net.Conn, seq uint32, ttl uint8) {
	t.Helper()
	if err := sendForgedRST(ns, c, seq, ttl); err != nil {
		t.Fatal(err)
	}
}

// sendForgedRST sends, from ns, a reset claiming to come from the server's
// side of c, with sequence number seq and the given TTL. It returns errors
// instead of failing the test, for use from goroutines.
func sendForgedRST(ns string, c net.Conn, seq uint32, ttl uint8) error {
	la := c.LocalAddr().(*net.TCPAddr).AddrPort()
	b, err := craft.TCP{
		Src: netip.AddrPortFrom(netip.MustParseAddr(e2eServerIP), e2eSrvPort), Dst: la,
		Seq: seq, Flags: packet.RST, TTL: ttl,
	}.Build()
	if err != nil {
		return err
	}
	if err := rawSend(ns, [][]byte{b}, la.Addr().Unmap().As4(), 0); err != nil {
		return fmt.Errorf("forging a reset: %w", err)
	}
	return nil
}

// synFlood sends up to count SYNs from the forger (its own address,
// 203.0.113.2, a new source port each) to a closed port of the server, for
// at most d.
func synFlood(t *testing.T, ns string, count int, d time.Duration) {
	t.Helper()
	if err := synFloodFrom(ns, []netip.Addr{netip.MustParseAddr("203.0.113.2")}, 1024, count, 0, d); err != nil {
		t.Fatalf("SYN flood: %v", err)
	}
}

// synFloodFrom sends up to count SYNs from ns to a closed port of the
// server, cycling through ports source ports (from 20000) of each source
// address in srcs (documentation addresses only; never random sources),
// at most rate packets per second (0: as fast as possible), for at most d.
func synFloodFrom(ns string, srcs []netip.Addr, ports, count, rate int, d time.Duration) error {
	pkts := make([][]byte, 0, len(srcs)*ports)
	for i := range ports {
		for _, src := range srcs {
			b, err := craft.TCP{
				Src: netip.AddrPortFrom(src, uint16(20000+i)),
				Dst: netip.AddrPortFrom(netip.MustParseAddr(e2eServerIP), 9),
				Seq: uint32(len(pkts)) * 7919, Flags: packet.SYN, Window: 64240,
			}.Build()
			if err != nil {
				return err
			}
			pkts = append(pkts, b)
		}
	}
	dst := netip.MustParseAddr(e2eServerIP).As4()
	if rate <= 0 {
		return rawSend(ns, pkts, dst, count, d)
	}
	// Paced: batches of at most 100 packets, each on its schedule.
	fd, err := rawSocket(ns)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Addr: dst}
	start, deadline := time.Now(), time.Now().Add(d)
	for sent := 0; sent < count && time.Now().Before(deadline); sent++ {
		if err := unix.Sendto(fd, pkts[sent%len(pkts)], 0, sa); err != nil && err != unix.ENOBUFS {
			return err
		}
		if sent%100 == 99 {
			if ahead := time.Duration(sent+1)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return nil
}

// rawSocket opens an IPv4 raw socket (IP_HDRINCL) inside ns; it stays
// there after the call.
func rawSocket(ns string) (int, error) {
	fd := -1
	err := inNS(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	return fd, err
}

// rawSend sends pkts (cycling, count in all, 0: each once) from ns through
// a raw socket, stopping after the optional duration.
func rawSend(ns string, pkts [][]byte, dst [4]byte, count int, d ...time.Duration) error {
	if count == 0 {
		count = len(pkts)
	}
	deadline := time.Now().Add(time.Minute)
	if len(d) > 0 {
		deadline = time.Now().Add(d[0])
	}
	return inNS(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrInet4{Addr: dst}
		for i := 0; i < count; i++ {
			if i%256 == 0 && time.Now().After(deadline) {
				return nil
			}
			if err := unix.Sendto(fd, pkts[i%len(pkts)], 0, sa); err != nil && err != unix.ENOBUFS {
				return err
			}
		}
		return nil
	})
}
