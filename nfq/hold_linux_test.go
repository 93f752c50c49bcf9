package nfq

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

const holdPort = 9998

// TestHoldRealQueue: [injection] mode = "hold" on a real NFQUEUE queue
// (TCP over loopback in a namespace, both directions queued). A genuine
// abort (RFC 9293 3.10.7.4; its sender sends nothing after it) is held and
// released by the worker's own timer, with no other packet arriving: the
// client sees the reset after max_hold, not before. Then a reset held with
// a long max_hold is released at once when the worker stops (drain): no
// packet stays held across a stop. Last, an idle queue's expired flow is
// reaped by the worker's timer (no packet needed).
func TestHoldRealQueue(t *testing.T) {
	if os.Getenv("RGD_HOLD_CHILD") == "1" {
		holdChild(t)
		return
	}
	q := strconv.Itoa(drainQueue)
	runInNetns(t, "hold", "TestHoldRealQueue", "RGD_HOLD_CHILD",
		[]string{"-A", "OUTPUT", "-p", "tcp", "--dport", strconv.Itoa(holdPort), "-j", "NFQUEUE", "--queue-num", q, "--queue-bypass"},
		[]string{"-A", "OUTPUT", "-p", "tcp", "--sport", strconv.Itoa(holdPort), "-j", "NFQUEUE", "--queue-num", q, "--queue-bypass"})
}

// abortAndWait opens a connection through the queue, exchanges a request
// and a reply, aborts it from the server (SO_LINGER 0) and returns how long
// the client waited for the reset after the abort, calling during (if not
// nil) once the abort is sent.
func abortAndWait(t *testing.T, during func()) time.Duration {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(holdPort))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := io.ReadFull(s, buf[:7]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf[:5]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the client's ACK of the reply passes first
	s.(*net.TCPConn).SetLinger(0)
	start := time.Now()
	s.Close()
	if during != nil {
		during()
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(buf)
	waited := time.Since(start)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after the abort: %v, want ECONNRESET", err)
	}
	return waited
}

func holdChild(t *testing.T) {
	pc := policy.DefaultConfig()
	pc.Injection.Mode = policy.InjectionHold
	pc.Injection.MaxHold = int64(50 * time.Millisecond)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	w, stop, runErr := startWorkerWith(t, Config{Queue: drainQueue, FailOpen: true, MaxQueueLen: 1024, CopyRange: 128}, Options{Logger: log}, pc)
	waited := abortAndWait(t, nil)
	st := w.engine.Stats()
	t.Logf("genuine abort held and released by the timer: the client saw it after %v", waited)
	if waited < 50*time.Millisecond {
		t.Errorf("the reset arrived after %v, before the 50 ms hold ended", waited)
	}
	if st.Held[policy.OutcomeAccepted].Load() != 1 || st.Reasons[policy.ReasonRSTValid].Load() != 1 {
		t.Errorf("held accepted %d, rst_valid %d; want 1 1", st.Held[policy.OutcomeAccepted].Load(), st.Reasons[policy.ReasonRSTValid].Load())
	}
	stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}

	// A long hold, ended by the stop.
	pc.Injection.MaxHold = int64(5 * time.Second)
	w, stop, runErr = startWorkerWith(t, Config{Queue: drainQueue, FailOpen: true, MaxQueueLen: 1024, CopyRange: 128}, Options{Logger: log}, pc)
	waited = abortAndWait(t, func() {
		deadline := time.Now().Add(3 * time.Second)
		for w.stats.Held.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if w.stats.Held.Load() != 1 {
			t.Error("the abort was not held")
		}
		stop()
	})
	t.Logf("reset held for 5 s released by the stop after %v", waited)
	if waited > 3*time.Second {
		t.Errorf("the stop did not release the held reset: the client waited %v", waited)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if n := w.engine.Stats().Held[policy.OutcomeAccepted].Load(); n != 1 {
		t.Errorf("held accepted %d after the stop, want 1", n)
	}

	// Idle reaping: with no packet arriving, the worker's timer removes
	// the closed flow once its timeout has passed.
	tc := conntrack.DefaultConfig()
	tc.Timeouts.Closed = 300 * time.Millisecond
	pc.Injection.Mode = policy.InjectionLog
	w, stop, runErr = startWorkerWith(t, Config{Queue: drainQueue, FailOpen: true, MaxQueueLen: 1024, CopyRange: 128}, Options{Logger: log}, pc, tc)
	abortAndWait(t, nil)
	flows := func() int64 {
		var n int64
		fl := &w.engine.Table().Stats().Flows // not a copy: the worker writes it
		for i := range fl {
			n += fl[i].Load()
		}
		return n
	}
	if n := flows(); n != 1 {
		t.Errorf("%d flows after the abort, want 1", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for flows() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := flows(); n != 0 {
		t.Errorf("%d flows 3 s after the closed timeout of 300 ms with the queue idle, want 0", n)
	}
	if n := w.engine.Table().Stats().Expired.Load(); n != 1 {
		t.Errorf("expired %d, want 1", n)
	}
	stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}
