package nfq

import (
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// TestRebindAfterSocketFailure: when the netlink socket fails under the
// worker, the worker counts it, re-binds the queue and keeps giving
// verdicts. The child half runs under "ip netns exec" (see TestDrainOnStop).
func TestRebindAfterSocketFailure(t *testing.T) {
	if os.Getenv("RGD_REBIND_CHILD") == "1" {
		rebindChild(t)
		return
	}
	runInQueueNetns(t, "rebind", "TestRebindAfterSocketFailure", "RGD_REBIND_CHILD")
}

func rebindChild(t *testing.T) {
	w, stop, runErr := startWorker(t, Config{Queue: drainQueue, FailOpen: true, CopyRange: 128},
		Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)), LogRate: 100, LogBurst: 100})
	defer stop()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	sendAndCount := func(n int) int {
		rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: drainPort})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		sc, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		for range n {
			sc.Write([]byte("x"))
		}
		got := 0
		buf := make([]byte, 16)
		for got < n {
			rc.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := rc.ReadFromUDP(buf); err != nil {
				break
			}
			got++
		}
		return got
	}
	before := w.stats.Packets.Load()
	if got := sendAndCount(10); got != 10 || w.stats.Packets.Load()-before != 10 {
		t.Fatalf("before the failure: %d of 10 received, %d verdicts", got, w.stats.Packets.Load()-before)
	}
	// Break the socket under the loop: closing the connection makes the
	// blocked read fail with net.ErrClosed (and the kernel unbinds the
	// queue, as it would for a socket lost any other way). Closing the raw
	// descriptor would not wake the runtime's poller.
	w.conn.Close()
	waitUntil("a re-bind", func() bool { return w.stats.Rebinds.Load() == 1 && w.stats.Bound.Load() })
	before = w.stats.Packets.Load()
	if got := sendAndCount(10); got != 10 || w.stats.Packets.Load()-before != 10 {
		t.Fatalf("after the re-bind: %d of 10 received, %d verdicts by the worker", got, w.stats.Packets.Load()-before)
	}
	t.Logf("receive errors %d, rebinds %d", w.stats.ReceiveErrors.Load(), w.stats.Rebinds.Load())
	stop()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
