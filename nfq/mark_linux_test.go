package nfq

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJudgedMarkLeavesKernel: every packet the worker accepts leaves with
// mark (old &^ mask) | value, its own other bits kept. Packets to two ports
// carry different old marks, interleaved, so a batch verdict (one mark for
// every packet up to its id) covering both would show as wrong counts.
func TestJudgedMarkLeavesKernel(t *testing.T) {
	if os.Getenv("RGD_MARK_CHILD") == "1" {
		markChild(t)
		return
	}
	runInQueueNetns(t, "mark", "TestJudgedMarkLeavesKernel", "RGD_MARK_CHILD")
}

const markN = 400 // packets per port

func markChild(t *testing.T) {
	ipt := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("iptables %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	other := strconv.Itoa(drainPort - 1)
	// runInQueueNetns queues drainPort; queue the other port too.
	ipt("-A", "OUTPUT", "-p", "udp", "--dport", other, "-j", "NFQUEUE", "--queue-num", strconv.Itoa(drainQueue), "--queue-bypass")
	// Old marks: the Q bit plus a per-port low byte (mangle OUTPUT runs
	// before the filter table's NFQUEUE rule).
	ipt("-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", strconv.Itoa(drainPort), "-j", "MARK", "--set-mark", "0x20000011")
	ipt("-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", other, "-j", "MARK", "--set-mark", "0x20000022")
	for _, r := range [][2]string{{"0x60000011", "want11"}, {"0x60000022", "want22"}, {"0x20000000/0x60000000", "unjudged"}} {
		ipt("-t", "mangle", "-A", "POSTROUTING", "-p", "udp", "-m", "mark", "--mark", r[0], "-m", "comment", "--comment", r[1])
	}

	w, stop, runErr := startWorker(t, Config{Queue: drainQueue, FailOpen: true, MaxQueueLen: 8192, CopyRange: 128, ReadBuffer: 8 << 20,
		Judged: Mark{Value: 0x40000000, Mask: 0x40000000}},
		Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	// Listeners, so no ICMP port unreachable fails the next write.
	for _, port := range []int{drainPort, drainPort - 1} {
		l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		l.SetReadBuffer(4 << 20)
		defer l.Close()
	}
	a, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: drainPort})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: drainPort - 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range markN {
		// Runs of 1..3 packets per port, so batches see mark changes.
		for range i%3 + 1 {
			if _, err := a.Write([]byte("a")); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		if _, err := b.Write([]byte("b")); err != nil {
			t.Fatalf("send: %v", err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // bounded pace: no socket overflow (fail-open would pass unjudged)
		}
	}
	want11 := 0
	for i := range markN {
		want11 += i%3 + 1
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(ipt("-t", "mangle", "-L", "POSTROUTING", "-n", "-v", "-x"), "\n") {
		f := strings.Fields(line)
		for _, c := range []string{"want11", "want22", "unjudged"} {
			if len(f) > 0 && strings.Contains(line, "/* "+c+" */") {
				counts[c], _ = strconv.Atoi(f[0])
			}
		}
	}
	t.Logf("packets leaving with mark: %v; the worker judged %d, verdict errors %d", counts, w.stats.Packets.Load(), w.stats.VerdictErrors.Load())
	if counts["want11"] != want11 || counts["want22"] != markN || counts["unjudged"] != 0 {
		t.Errorf("want want11=%d want22=%d unjudged=0, got %v", want11, markN, counts)
	}
}
