package nfq

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

// seg describes a test segment for tcp4.
type seg struct {
	fromServer     bool
	seq, ack       uint32
	syn, ackf, rst bool
	payload        int
}

// tcp4 builds an IPv4/TCP packet from 192.0.2.1:40000 to 198.51.100.1:80
// (or the reverse when fromServer).
func tcp4(t testing.TB, s seg) []byte {
	t.Helper()
	fromServer, seq, ack, syn, ackf, rst, payload := s.fromServer, s.seq, s.ack, s.syn, s.ackf, s.rst, s.payload
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{198, 51, 100, 1}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: seq, Ack: ack, SYN: syn, ACK: ackf, RST: rst, Window: 65535}
	if fromServer {
		ip.SrcIP, ip.DstIP = ip.DstIP, ip.SrcIP
		tcp.SrcPort, tcp.DstPort = tcp.DstPort, tcp.SrcPort
	}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, tcp, gopacket.Payload(make([]byte, payload)))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newTestWorker(t testing.TB, pc policy.Config, logw *bytes.Buffer) *Worker {
	t.Helper()
	var h slog.Handler = slog.DiscardHandler
	if logw != nil {
		h = slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	e := policy.NewEngine(pc, conntrack.DefaultConfig())
	return New(Config{Queue: 3}, e, Options{Logger: slog.New(h), LogRate: 1, LogBurst: 2, ProcPath: "testdata/none"})
}

// establish runs a handshake (client ISN 1000, server ISN 5000) through w.
func establish(t testing.TB, w *Worker) {
	t.Helper()
	for _, p := range [][]byte{
		tcp4(t, seg{seq: 1000, syn: true}),
		tcp4(t, seg{fromServer: true, seq: 5000, ack: 1001, syn: true, ackf: true}),
		tcp4(t, seg{seq: 1001, ack: 5001, ackf: true}),
	} {
		if v, _, _ := w.handle(p, 0, 0, 0, w.now()); v != nfqueue.NfAccept {
			t.Fatalf("handshake packet got verdict %d", v)
		}
	}
}

func TestHandleVerdictsAndLog(t *testing.T) {
	var logs bytes.Buffer
	w := newTestWorker(t, policy.DefaultConfig(), &logs)
	establish(t, w)
	// A reset far outside the client's window, spoofing the server.
	forged := tcp4(t, seg{fromServer: true, seq: 5001 + 1<<30, rst: true})
	if v, _, mark := w.handle(forged, 0, 0, 0, w.now()); v != nfqueue.NfDrop || mark {
		t.Fatalf("forged reset: verdict %d mark %v, want drop without mark", v, mark)
	}
	if got := w.engine.Stats().Reasons[policy.ReasonRSTOutOfWindow].Load(); got != 1 {
		t.Errorf("rst_out_of_window = %d, want 1", got)
	}
	line := logs.String()
	for _, want := range []string{"dropped reset", "src=198.51.100.1:80", "dst=192.0.2.1:40000",
		"state=established", "reason=rst_out_of_window", "window_lo=", "window_hi=", "queue=3"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q: %s", want, line)
		}
	}
	// mark_drop: the same forged reset is accepted with the mark, and
	// counted as a drop and as a marked drop.
	md, ma := uint32(0x66), uint32(0x11)
	w.SetMarks(ptr(ma), ptr(md))
	v, m, has := w.handle(forged, 0, 0, 0, w.now())
	if v != nfqueue.NfAccept || !has || m != md {
		t.Errorf("with mark_drop: verdict %d mark %#x/%v, want accept with %#x", v, m, has, md)
	}
	if w.stats.MarkedDrops.Load() != 1 || w.engine.Stats().Reasons[policy.ReasonRSTOutOfWindow].Load() != 2 {
		t.Error("a marked drop must count as a drop and as a marked drop")
	}
	// mark_accept marks accepted packets.
	v, m, has = w.handle(tcp4(t, seg{seq: 1001, ack: 5001, ackf: true, payload: 10}), 0, 0, 0, w.now())
	if v != nfqueue.NfAccept || !has || m != ma {
		t.Errorf("with mark_accept: verdict %d mark %#x/%v, want accept with %#x", v, m, has, ma)
	}
}

// TestLogRateLimit: with a burst of 2, the third drop in the same instant is
// not logged but counted as suppressed.
func TestLogRateLimit(t *testing.T) {
	var logs bytes.Buffer
	w := newTestWorker(t, policy.DefaultConfig(), &logs)
	w.lim.set(1e-6, 2) // the burst, then nothing within the test
	establish(t, w)
	forged := tcp4(t, seg{fromServer: true, seq: 5001 + 1<<30, rst: true})
	for range 5 {
		w.handle(forged, 0, 0, 0, w.now())
	}
	if n := strings.Count(logs.String(), "dropped reset"); n != 2 {
		t.Errorf("logged %d lines, want 2 (the burst)", n)
	}
	if got := w.stats.LogSuppressed.Load(); got != 3 {
		t.Errorf("suppressed = %d, want 3", got)
	}
}

func TestLimiterRefill(t *testing.T) {
	var l limiter
	l.set(10, 1) // 10 lines/s, burst 1
	now := int64(1e9)
	if !l.allow(now) || l.allow(now) {
		t.Fatal("burst of 1 not honoured")
	}
	if l.allow(now + 50e6) {
		t.Error("allowed after 50 ms at 10/s")
	}
	if !l.allow(now + 150e6) {
		t.Error("not allowed after 150 ms at 10/s")
	}
}

// TestPanicRecovered: a panic inside the engine accepts that packet and
// counts it. A nil engine makes Process panic.
func TestPanicRecovered(t *testing.T) {
	var logs bytes.Buffer
	w := newTestWorker(t, policy.DefaultConfig(), &logs)
	w.engine = nil
	w.SetJudged(Mark{0x40000000, 0x40000000})
	v, _, has := w.handle(tcp4(t, seg{seq: 1, syn: true}), 0, 0, 0, w.now())
	if v != nfqueue.NfAccept || has {
		t.Errorf("verdict after panic = %d (mark set %v), want accept without the judged mark", v, has)
	}
	if w.stats.Unjudged.Load() != 1 {
		t.Errorf("unjudged = %d, want 1", w.stats.Unjudged.Load())
	}
	if w.stats.Panics.Load() != 1 {
		t.Errorf("panics = %d, want 1", w.stats.Panics.Load())
	}
	if !strings.Contains(logs.String(), "recovered a panic") {
		t.Errorf("no log line for the panic: %s", logs.String())
	}
	if w.busySince.Load() != 0 {
		t.Error("worker still marked busy after a recovered panic")
	}
}

func TestHistogram(t *testing.T) {
	var h Histogram
	for _, ns := range []int64{-5, 0, 100, 101, 999, 1000, 1001, 2_000_000} {
		h.Observe(ns)
	}
	cum, sum := h.Snapshot()
	// <=100: -5,0,100; <=250: +101; <=1000: +999,1000; <=2500: +1001; <=2.5 ms: +2e6
	want := [NumLatencyBuckets]uint64{3, 4, 4, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8}
	if cum != want {
		t.Errorf("cumulative = %v, want %v", cum, want)
	}
	if wantSum := float64(100+101+999+1000+1001+2_000_000) / 1e9; sum != wantSum {
		t.Errorf("sum = %v, want %v", sum, wantSum)
	}
}

func TestParseProcQueues(t *testing.T) {
	in := "    0  31337     3 2  256    17    5   123456  1\n" +
		"65535 4000000000 0 2 65531 0 0 4294967295 1\n\n"
	qs, err := ParseProcQueues(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []ProcQueue{
		{Queue: 0, PortID: 31337, Total: 3, CopyMode: 2, CopyRange: 256, Dropped: 17, UserDropped: 5, IDSequence: 123456},
		{Queue: 65535, PortID: 4000000000, CopyMode: 2, CopyRange: 65531, IDSequence: 4294967295},
	}
	if len(qs) != len(want) || qs[0] != want[0] || qs[1] != want[1] {
		t.Errorf("got %+v, want %+v", qs, want)
	}
	for _, bad := range []string{"0 1 2\n", "x 1 2 3 4 5 6 7 1\n", "70000 1 2 3 4 5 6 7 1\n", "0 1 2 3 4 5 6 -7 1\n"} {
		if _, err := ParseProcQueues(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestAlive(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	if w.Alive(time.Second) {
		t.Error("alive before binding")
	}
	w.stats.Bound.Store(true)
	w.looping.Store(true)
	if !w.Alive(time.Second) {
		t.Error("not alive while bound and idle")
	}
	w.busySince.Store(w.now() - int64(2*time.Second))
	if w.Alive(time.Second) {
		t.Error("alive while stuck in one packet for 2 s")
	}
}

// TestHandleNoAllocs: our per-packet path (decision, counters, marks,
// latency) allocates nothing, also when a suppressed log line is involved.
// go-nfqueue's own allocations (attribute parsing, verdict marshalling) are
// measured separately in BenchmarkLibraryVerdict.
func TestHandleNoAllocs(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	establish(t, w)
	data := tcp4(t, seg{seq: 1001, ack: 5001, ackf: true})
	forged := tcp4(t, seg{fromServer: true, seq: 5001 + 1<<30, rst: true})
	var logs bytes.Buffer
	wl := newTestWorker(t, policy.DefaultConfig(), &logs)
	establish(t, wl)
	wl.lim.set(0, 0) // every line suppressed
	for name, f := range map[string]func(){
		"ack":                   func() { w.handle(data, 0, 0, 0, w.now()) },
		"forged_rst":            func() { w.handle(forged, 0, 0, 0, w.now()) },
		"forged_rst_suppressed": func() { wl.handle(forged, 0, 0, 0, wl.now()) },
	} {
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocs per packet, want 0", name, n)
		}
	}
}

func BenchmarkHandle(b *testing.B) {
	for _, c := range []struct {
		name       string
		fromServer bool
		rst        bool
		seq        uint32
	}{
		{"ack", false, false, 1001},
		{"forged_rst", true, true, 5001 + 1<<30},
	} {
		b.Run(c.name, func(b *testing.B) {
			w := newTestWorker(b, policy.DefaultConfig(), nil)
			w.lim.set(0, 0)
			establish(b, w)
			p := tcp4(b, seg{fromServer: c.fromServer, seq: c.seq, ack: 5001, ackf: !c.rst, rst: c.rst})
			b.ReportAllocs()
			for b.Loop() {
				w.handle(p, 0, 0, 0, w.now())
			}
		})
	}
}

// BenchmarkLibraryVerdict measures go-nfqueue's verdict path on a real
// netfilter netlink socket (no queue bound: the kernel answers ENODEV
// asynchronously, which is never read here), to report the library's
// allocations per packet apart from ours. Needs no privilege to open.
func BenchmarkLibraryVerdict(b *testing.B) {
	nf, err := nfqueue.Open(&nfqueue.Config{NfQueue: 65000, Copymode: nfqueue.NfQnlCopyPacket, MaxPacketLen: 128})
	if err != nil {
		b.Skipf("cannot open a netfilter netlink socket: %v", err)
	}
	defer nf.Close()
	mark := uint32(7)
	b.Run("SetVerdict", func(b *testing.B) {
		b.ReportAllocs()
		var id uint32
		for b.Loop() {
			id++
			nf.SetVerdict(id, nfqueue.NfAccept)
		}
	})
	b.Run("SetVerdictBatch", func(b *testing.B) {
		b.ReportAllocs()
		var id uint32
		for b.Loop() {
			id++
			nf.SetVerdictBatch(id, nfqueue.NfAccept)
		}
	})
	b.Run("SetVerdictWithMark", func(b *testing.B) {
		b.ReportAllocs()
		var id uint32
		for b.Loop() {
			id++
			nf.SetVerdictWithOption(id, nfqueue.NfAccept, nfqueue.WithMark(mark))
		}
	})
}

func TestLimiterBurstAtLeastOne(t *testing.T) {
	var l limiter
	l.set(5, 0)
	if !l.allow(1e9) {
		t.Error("a positive rate with burst 0 must still log a line")
	}
	var l2 limiter
	l2.set(0, 20)
	if l2.allow(1e9) || l2.allow(2e9) {
		t.Error("rate 0 must suppress every line, whatever the burst")
	}
}

// TestLogResetAnswersFlaggedSYN: a reset answering a SYN with ECN bits is
// accepted (RFC 3360) and logged, naming the peer that sent it.
func TestLogResetAnswersFlaggedSYN(t *testing.T) {
	var logs bytes.Buffer
	w := newTestWorker(t, policy.DefaultConfig(), &logs)
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{198, 51, 100, 1}}
	syn := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, SYN: true, ECE: true, CWR: true, Window: 65535}
	syn.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, syn); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := w.handle(buf.Bytes(), 0, 0, 0, w.now()); v != nfqueue.NfAccept {
		t.Fatal("a SYN with ECN bits must be accepted (RFC 3360)")
	}
	rst := tcp4(t, seg{fromServer: true, ack: 1001, ackf: true, rst: true})
	if v, _, _ := w.handle(rst, 0, 0, 0, w.now()); v != nfqueue.NfAccept {
		t.Fatal("a valid reset answering the SYN must be accepted")
	}
	if got := w.engine.Stats().Reasons[policy.ReasonRSTAnswersReservedSYN].Load(); got != 1 {
		t.Fatalf("rst_answers_reserved_syn = %d, want 1", got)
	}
	out := logs.String()
	for _, want := range []string{"RFC 3360", "peer=198.51.100.1", "syn_flags=ece,cwr", "reason=rst_answers_reserved_syn", "state=syn_sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: %s", want, out)
		}
	}
}

// TestMonitorMode: [policy] mode = "monitor" accepts what the policy drops,
// counts it, keeps the judged mark and sets no mark_accept mark.
func TestMonitorMode(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	establish(t, w)
	w.SetJudged(Mark{0x40000000, 0x40000000})
	w.SetMarks(ptr(0x7), nil)
	w.SetMonitor(true)
	forged := tcp4(t, seg{fromServer: true, seq: 5001 + 1<<30, rst: true})
	v, m, has := w.handle(forged, 0, 0, 0x20000000, w.now())
	if v != nfqueue.NfAccept || !has || m != 0x60000000 || w.stats.MonitorPassed.Load() != 1 {
		t.Errorf("monitor, forged reset: verdict %d mark %#x/%v passed %d", v, m, has, w.stats.MonitorPassed.Load())
	}
	if w.last.Verdict != policy.Drop || w.engine.Stats().Reasons[policy.ReasonRSTOutOfWindow].Load() != 1 {
		t.Errorf("the decision must still be a counted drop: %+v", w.last)
	}
	v, m, has = w.handle(tcp4(t, seg{seq: 1001, ack: 5001, ackf: true, payload: 10}), 0, 0, 0, w.now())
	if v != nfqueue.NfAccept || m != 0x40000000 {
		t.Errorf("monitor, data: verdict %d mark %#x/%v: want the judged bit only, no mark_accept", v, m, has)
	}
	w.SetMonitor(false)
	if v, _, _ := w.handle(forged, 0, 0, 0, w.now()); v != nfqueue.NfDrop {
		t.Errorf("enforce again: verdict %d", v)
	}
}
