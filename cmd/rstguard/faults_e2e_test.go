package main

// Fault probes as tests: a SYN flood against a small flow table, hostile
// packets through the live daemon, and configuration faults at start and
// on SIGHUP. The kill -9 probe is part of TestShippedRulesE2E (phase 3),
// which runs the shipped rules that keep resets from being delivered while
// no daemon runs.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
)

// xferWatch follows a transfer from another goroutine: the bytes received
// so far and the longest time between two reads (the longest stall).
type xferWatch struct {
	received atomic.Int64
	maxGap   atomic.Int64 // nanoseconds
}

func (w *xferWatch) MaxGap() time.Duration { return time.Duration(w.maxGap.Load()) }

// transferWatched is transfer for n bytes, read at most rate bytes per
// second (0: unpaced; TCP flow control then paces the server), reporting
// progress and the longest gap between reads to w.
func transferWatched(c net.Conn, n int64, seed uint64, rate int64, w *xferWatch) error {
	c.SetDeadline(time.Now().Add(90 * time.Second))
	if _, err := fmt.Fprintf(c, "DATA %d %d\n", n, seed); err != nil {
		return err
	}
	// The expected bytes are generated alongside, so that reading starts
	// at once: in the server's 32 KiB chunks (io.CopyN's), since prng's
	// stream depends on how it is read.
	want := bufio.NewReaderSize(io.LimitReader(prng(seed), n), 32<<10)
	buf, wbuf := make([]byte, 32<<10), make([]byte, 32<<10)
	start, last := time.Now(), time.Now()
	var m int64
	for m < n {
		k, err := c.Read(buf[:min(int64(len(buf)), n-m)])
		now := time.Now()
		if gap := now.Sub(last); int64(gap) > w.maxGap.Load() {
			w.maxGap.Store(int64(gap))
		}
		last = now
		io.ReadFull(want, wbuf[:k])
		if !bytes.Equal(buf[:k], wbuf[:k]) {
			return fmt.Errorf("data corrupted in bytes %d to %d", m, m+int64(k))
		}
		m += int64(k)
		w.received.Store(m)
		if err != nil {
			return fmt.Errorf("read %d of %d bytes: %w", m, n, err)
		}
		if rate > 0 {
			if ahead := time.Duration(m*int64(time.Second)/rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
				last = time.Now() // our own pause is not a stall
			}
		}
	}
	return nil
}

// flowsConfig is e2eConfig's daemon with a flow table of maxFlows.
func flowsConfig(maxFlows int) string {
	return e2eConfig("window") + fmt.Sprintf("\n[conntrack]\nmax_flows = %d\n", maxFlows)
}

// newFaultLab builds the lab, the daemon binary and its config, and starts
// the application server, the sniffer and the delivered-reset counter.
func newFaultLab(ctx context.Context, t *testing.T, cfg string) (*e2eLab, *sniffer, func() int) {
	t.Helper()
	dir := t.TempDir()
	l := newE2ELab(ctx, t)
	if l.nft {
		t.Fatal("iptables does not work here; the test counts delivered resets with an iptables rule")
	}
	l.bin = filepath.Join(dir, "rstguard")
	if out, err := execGoBuild(ctx, l.bin); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l.cfgPath = filepath.Join(dir, "config.toml")
	l.writeConfig(cfg)
	l.serveTCP4()
	sniff := newSniffer(t, l.cli)
	delivered := l.countForgedDelivered(ctx)
	return l, sniff, delivered
}

// TestTableExhaustionE2E floods a table of max_flows = 2000 with SYNs from
// documentation addresses (198.51.100.10-249, 64 ports each: 15360
// tuples, never random sources) while a transfer runs and forged
// out-of-window resets are fired at it: the table stays within max_flows
// by evicting embryonic flows, never the live one, the forged resets are
// dropped by the daemon and none is delivered, and the transfer completes
// intact.
func TestTableExhaustionE2E(t *testing.T) {
	requireRoot(t, "ip", "iptables", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const maxFlows = 2000
	l, sniff, delivered := newFaultLab(ctx, t, flowsConfig(maxFlows))
	l.startDaemon(ctx)

	c := l.dial()
	port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	var w xferWatch
	const size = 48 << 20
	errc := make(chan error, 1)
	go func() { errc <- transferWatched(c, size, 42, 8<<20, &w) }() // about 6 s
	time.Sleep(300 * time.Millisecond)

	var srcs []netip.Addr
	for i := 10; i < 250; i++ {
		srcs = append(srcs, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	floodc := make(chan error, 1)
	go func() { floodc <- synFloodFrom(l.fwd, srcs, 64, 32000, 8000, 5*time.Second) }()

	maxSeen, fired := 0.0, 0
	forgeAt := map[int]bool{5: true, 10: true, 20: true, 30: true}
	var floodErr error
	floodDone := false
	for i := 0; !floodDone || i <= 30; i++ {
		time.Sleep(100 * time.Millisecond)
		select {
		case floodErr = <-floodc:
			floodDone = true
		default:
		}
		maxSeen = max(maxSeen, l.metric("rstguard_flows_tracked"))
		if forgeAt[i] {
			base, ok := sniff.rcvNxt(port, w.received.Load())
			if !ok {
				t.Fatalf("the sniffer did not see the server's SYN-ACK to port %d", port)
			}
			for k := range 5 {
				forgeRSTTTL(t, l.fwd, c, base+soakOffset+uint32(k)*4096, forgedTTL)
				fired++
			}
		}
	}
	if floodErr != nil {
		t.Fatalf("SYN flood: %v", floodErr)
	}
	if err := <-errc; err != nil {
		t.Fatalf("the transfer broke under the SYN flood: %v", err)
	}
	l.waitFor(ctx, fmt.Sprintf("the daemon to drop the %d forged resets", fired), 5*time.Second, func() bool {
		return l.metric("rstguard_packets_total", `reason="rst_out_of_window"`) >= float64(fired)
	})
	emb := l.metric("rstguard_flows_evicted_total", `cause="embryonic"`)
	lru := l.metric("rstguard_flows_evicted_total", `cause="lru"`)
	t.Logf("flood: %v flows at most (max_flows %d), evicted %v embryonic, %v lru; %v untracked; %v SYNs judged as tracked; forged %d dropped %v; longest transfer stall %v",
		maxSeen, maxFlows, emb, lru, l.metric("rstguard_untracked_packets_total"),
		l.metric("rstguard_packets_total", `reason="tracked"`), fired,
		l.metric("rstguard_packets_total", `reason="rst_out_of_window"`), w.MaxGap())
	if maxSeen > maxFlows {
		t.Errorf("rstguard_flows_tracked reached %v, above max_flows %d", maxSeen, maxFlows)
	}
	if emb == 0 {
		t.Errorf("no embryonic evictions: the flood did not fill the table")
	}
	if lru != 0 {
		t.Errorf("%v established flows evicted (lru) while embryonic ones could make room", lru)
	}
	if got := l.metric("rstguard_packets_total", `reason="rst_out_of_window"`); got != float64(fired) {
		t.Errorf("rst_out_of_window = %v, want the %d forged", got, fired)
	}
	if n := delivered(); n != 0 {
		t.Errorf("%d forged resets were delivered during the flood, want 0", n)
	}
	if p := l.metric("rstguard_panics_recovered_total"); p != 0 {
		t.Errorf("rstguard_panics_recovered_total = %v, want 0", p)
	}
}

// hostileKinds are the malformations TestHostilePacketsE2E sends, each a
// mutation of a well-formed segment b (IPv4 header of 20 bytes, then TCP).
// The kernel forwards them (it checks IP headers, not TCP ones); the
// daemon must count them as malformed (SPEC 5) without crashing.
var hostileKinds = []struct {
	name      string
	malformed bool // the daemon must drop it as malformed
	mutate    func(b []byte, r *rand.Rand) []byte
}{
	// RFC 9293 3.1: the header is at least 20 bytes.
	{"tcp header truncated", true, func(b []byte, r *rand.Rand) []byte { return b[:20+r.IntN(20)] }},
	{"data offset below 5", true, func(b []byte, r *rand.Rand) []byte {
		b[32] = byte(r.IntN(5))<<4 | b[32]&0x0f
		return b
	}},
	{"data offset past the packet", true, func(b []byte, r *rand.Rand) []byte {
		b[32] = byte(6+r.IntN(10))<<4 | b[32]&0x0f
		return b[:40]
	}},
	// RFC 9293 3.2: an option's length covers kind and length and stays
	// inside the header.
	{"option length overruns the header", true, func(b []byte, r *rand.Rand) []byte {
		b[40], b[41] = []byte{2, 3, 4, 8, 34}[r.IntN(5)], byte(17+r.IntN(200)) // 16 bytes of options
		return b
	}},
	{"option length 0 or 1", true, func(b []byte, r *rand.Rand) []byte {
		b[40], b[41] = byte(2+r.IntN(30)), byte(r.IntN(2))
		return b
	}},
	{"options truncated at the end", true, func(b []byte, r *rand.Rand) []byte {
		b[32] = 6<<4 | b[32]&0x0f                                        // 4 bytes of options, the payload after them
		b[40], b[41], b[42], b[43] = 1, 1, 1, []byte{2, 3, 8}[r.IntN(3)] // a kind without its length
		return b
	}},
	// Well-formed headers with odd contents: judged like any segment.
	{"random options", false, func(b []byte, r *rand.Rand) []byte {
		for i := 42; i < 56; i++ {
			b[i] = byte(r.Uint32())
		}
		b[40], b[41] = 1, 1 // NOP NOP, then whatever follows
		return b
	}},
	{"every flag but RST", false, func(b []byte, r *rand.Rand) []byte {
		f := uint16(r.Uint32()) & 0x0ffb // all 12 bits but RST
		binary.BigEndian.PutUint16(b[32:], uint16(b[32])<<8&0xf000|f)
		return b
	}},
}

// TestHostilePacketsE2E sends a bounded few thousand malformed and odd TCP
// segments through the live daemon, at a live connection's tuple and at
// others: no panic is recovered (rstguard_panics_recovered_total stays 0),
// the malformed ones are counted and dropped, the live connection keeps
// working, and the heap after GC is back near its baseline.
func TestHostilePacketsE2E(t *testing.T) {
	requireRoot(t, "ip", "iptables", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, sniff, _ := newFaultLab(ctx, t, e2eConfig("window"))
	l.startDaemon(ctx)

	c := l.dial()
	port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	if err := transfer(c, 8<<20, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	sent := int64(8 << 20)
	base, ok := sniff.rcvNxt(port, 0)
	if !ok {
		t.Fatalf("the sniffer did not see the server's SYN-ACK to port %d", port)
	}
	start := time.Now()
	// The heap after GC is the goal the last GC set: make the daemon
	// collect (its packet path allocates) before each measurement.
	gcAfter := func(seed uint64) memSample {
		t.Helper()
		gc0 := l.metric("go_gc_duration_seconds_count")
		for i := range 100 {
			if l.metric("go_gc_duration_seconds_count") >= gc0+2 {
				break
			}
			if err := transfer(c, 4<<20, seed+uint64(i), 0, nil); err != nil {
				t.Fatal(err)
			}
			sent += 4 << 20
		}
		return l.memSample(start)
	}
	before := gcAfter(100)
	malformed0 := l.metric("rstguard_packets_total", `reason="malformed"`)

	fd, err := rawSocket(l.fwd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	live := c.LocalAddr().(*net.TCPAddr).AddrPort()
	r := rand.New(rand.NewPCG(11, 12))
	const rounds = 500 // each round sends every kind once
	wantMalformed := 0
	for i := range rounds {
		for _, k := range hostileKinds {
			dst := live
			if i%2 == 1 {
				dst = netip.AddrPortFrom(netip.MustParseAddr(e2eClientIP), uint16(1024+r.IntN(60000)))
			}
			b, err := craft.TCP{
				Src: netip.AddrPortFrom(netip.MustParseAddr(e2eServerIP), e2eSrvPort), Dst: dst,
				// Far outside the live window: an odd segment never moves it.
				Seq: base + uint32(sent) + soakOffset + r.Uint32()%(1<<20), Ack: r.Uint32(), Flags: packet.ACK,
				Window: uint16(r.Uint32()), TTL: forgedTTL,
				Options: craft.Options(craft.NOP(), craft.NOP(), craft.Timestamp(r.Uint32(), r.Uint32()), craft.NOP(), craft.NOP()),
				Payload: make([]byte, r.IntN(64)),
			}.Build()
			if err != nil {
				t.Fatal(err)
			}
			b = k.mutate(b, r)
			if err := unix.Sendto(fd, b, 0, &unix.SockaddrInet4{Addr: dst.Addr().Unmap().As4()}); err != nil && err != unix.ENOBUFS {
				t.Fatalf("%s: send: %v", k.name, err)
			}
			if k.malformed {
				wantMalformed++
			}
		}
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond) // bounded and paced: no queue overflow
		}
	}
	l.waitFor(ctx, fmt.Sprintf("%d malformed packets counted", wantMalformed), 10*time.Second, func() bool {
		return l.metric("rstguard_packets_total", `reason="malformed"`)-malformed0 >= float64(wantMalformed)
	})
	if err := transfer(c, 8<<20, 2, 0, nil); err != nil {
		t.Fatalf("the live connection broke after the hostile packets: %v", err)
	}
	if p := l.metric("rstguard_panics_recovered_total"); p != 0 {
		t.Errorf("rstguard_panics_recovered_total = %v after hostile packets, want 0", p)
	}
	// Random options may be malformed too; nothing else is.
	if got := l.metric("rstguard_packets_total", `reason="malformed"`) - malformed0; got < float64(wantMalformed) || got > float64(wantMalformed+rounds) {
		t.Errorf("malformed drops = %v, want %d and at most %d random options", got, wantMalformed, rounds)
	}
	after := gcAfter(200)
	t.Logf("%d hostile packets (%d malformed): heap goal after GC %s -> %s, heap in use %s -> %s, RSS %s -> %s, GCs %v",
		rounds*len(hostileKinds), wantMalformed, mib(before.nextGC), mib(after.nextGC), mib(before.inuse), mib(after.inuse),
		mib(before.rss), mib(after.rss), after.gcs-before.gcs)
	if after.nextGC > before.nextGC*1.5+4<<20 {
		t.Errorf("the heap after GC grew from %s to %s", mib(before.nextGC), mib(after.nextGC))
	}
}

// configFaults are mistakes in a configuration file, each with the exact
// line the daemon prints (at start: "rstguard run: " and this; on SIGHUP
// it logs the file, line and key).
var configFaults = []struct {
	name, body string
	line       int
	key        string // as the reload's log line names it
	msg        string // the message after FILE:LINE:
}{
	{"unknown key", "[conntrack]\nmax_flow = 2000\n", 2, "[conntrack] max_flow",
		`[conntrack] max_flow: unknown key; did you mean "max_flows"? the keys of [conntrack] are max_flows, pickup and timeouts`},
	{"wrong type", "[conntrack]\nmax_flows = \"many\"\n", 2, "[conntrack] max_flows",
		`[conntrack] max_flows: must be an integer from 1024 to 134217728 (flows for the whole daemon, split between the queues), not the string "many"`},
	{"out of range", "[conntrack]\nmax_flows = 10\n", 2, "[conntrack] max_flows",
		`[conntrack] max_flows: 10 is out of range; use an integer from 1024 to 134217728 (flows for the whole daemon, split between the queues)`},
	{"bad value", "[policy]\nrst_mode = \"strict\"\n", 2, "[policy] rst_mode",
		`[policy] rst_mode: "strict" is not a valid value; use "window" or "exact"`},
	{"bad duration", "[conntrack.timeouts]\nestablished = \"5d\"\n", 2, "[conntrack.timeouts] established",
		`[conntrack.timeouts] established: "5d" is not a duration; use a duration such as "50ms", "120s", "30m" or "120h" (Go syntax: units ns, us, ms, s, m, h; no "d", write 5 days as "120h") or an integer number of seconds`},
	{"conflicting marks", "[queue]\nmark_accept = 2\nmark_drop = 2\n", 3, "[queue] mark_drop",
		`[queue] mark_drop: equals mark_accept (0x2), so a firewall rule could not tell dropped packets from accepted ones; use two different marks`},
	{"queue twice", "[queue]\nnumbers = [7, 7]\n", 2, "[queue] numbers",
		`[queue] numbers: queue 7 is listed twice; list each queue once`},
	{"syntax", "[log]\nlevel = info\n", 2, "[log]",
		`[log]: TOML syntax error at column 12: expected a top-level item to end with a newline, comment, or EOF, but got 'o' instead; fix the syntax (strings take double quotes, sections are [name] on a line of their own; config.example.toml shows every key)`},
}

// TestRunConfigFaults starts `rstguard run` on each faulty file: it exits
// 1 before binding anything (no root needed) and prints one line naming the
// file, the line and the key.
func TestRunConfigFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "rstguard")
	if out, err := execGoBuild(ctx, bin); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for i, f := range configFaults {
		t.Run(f.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("fault%d.toml", i))
			if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, bin, "run", "--config", p)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; stderr:\n%s", err, stderr.String())
			}
			want := fmt.Sprintf("rstguard run: %s:%d: %s", p, f.line, f.msg)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || lines[0] != want {
				t.Errorf("stderr:\n%s\nwant the one line:\n%s", stderr.String(), want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %q", stdout.String())
			}
		})
	}
}

// TestReloadConfigFaultsE2E sends SIGHUP with each faulty file to a running
// daemon: each is logged with its file, line and key, counted as a failed
// reload, and the running configuration stays (the engines are never
// reconfigured, the flows stay, forged resets are still dropped). Keys a
// reload cannot change (queue numbers, metrics listener) are reported and
// kept. A good file then reloads.
func TestReloadConfigFaultsE2E(t *testing.T) {
	requireRoot(t, "ip", "iptables", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	good := e2eConfig("exact")
	l, sniff, delivered := newFaultLab(ctx, t, good)
	l.startDaemon(ctx)
	c := l.dial()
	port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	if err := transfer(c, 1<<20, 1, 0, nil); err != nil {
		t.Fatal(err)
	}

	for i, f := range configFaults {
		l.writeConfig(f.body)
		l.signal(syscall.SIGHUP)
		l.waitMetric(ctx, float64(i+1), "rstguard_config_reload_failed_total")
		want := reloadFailedLine(l.cfgPath, f.line, f.key, f.msg)
		l.waitFor(ctx, "the log line of "+f.name+": "+want, 2*time.Second, func() bool {
			return strings.Contains(l.stderr.String(), want)
		})
	}
	if got := l.metric("rstguard_config_reloads_total"); got != 0 {
		t.Errorf("config_reloads_total = %v after only faulty files, want 0", got)
	}
	if got := l.metric("rstguard_engine_reconfigurations_total"); got != 0 {
		t.Errorf("engine_reconfigurations_total = %v: a faulty file reached the engine", got)
	}
	// The running configuration (exact mode) still judges: an in-window
	// but inexact reset is dropped, the connection lives on.
	base, ok := sniff.rcvNxt(port, 1<<20)
	if !ok {
		t.Fatalf("the sniffer did not see the server's SYN-ACK to port %d", port)
	}
	forgeRSTTTL(t, l.fwd, c, base+100, forgedTTL)
	l.waitMetric(ctx, 1, "rstguard_packets_total", `reason="rst_not_exact"`)
	if err := transfer(c, 1<<20, 2, 0, nil); err != nil {
		t.Fatalf("the connection broke after faulty reloads: %v", err)
	}

	// Keys only a restart changes: reported, kept; the rest applies.
	l.writeConfig(strings.Replace(strings.Replace(e2eConfig("window"), fmt.Sprintf("numbers = [%d]", e2eQueue), "numbers = [8]", 1),
		e2eMetrics, "127.0.0.1:9814", 1))
	l.signal(syscall.SIGHUP)
	l.waitMetric(ctx, 1, "rstguard_config_reloads_total")
	for _, want := range []string{
		`msg="settings changed that take effect only at the next restart; the running values stay until then" keys="[queue] numbers, [metrics] listen"`,
		`[queue] numbers 7 -> 8; [metrics] listen \"127.0.0.1:9813\" -> \"127.0.0.1:9814\"`,
	} {
		if !strings.Contains(l.stderr.String(), want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	if r := l.metric("rstguard_config_restart_required"); r != 1 {
		t.Errorf("rstguard_config_restart_required = %v after a reload that changed restart-only keys, want 1", r)
	}
	if b := l.metric("rstguard_queue_bound", `queue="7"`); b != 1 {
		t.Errorf("queue 7 bound = %v after a reload that named queue 8, want 1", b)
	}
	if err := transfer(c, 1<<20, 3, 0, nil); err != nil {
		t.Fatalf("the connection broke after the reload: %v", err)
	}
	if n := delivered(); n != 0 {
		t.Errorf("%d forged resets delivered, want 0", n)
	}
}

// reloadFailedLine is the daemon's log line for a faulty file on SIGHUP,
// from msg= on, as its slog text handler writes it.
func reloadFailedLine(file string, line int, key, msg string) string {
	var b bytes.Buffer
	h := slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
			return slog.Attr{}
		}
		return a
	}})
	slog.New(h).Error("reload failed; keeping the running configuration",
		"file", file, "line", line, "key", key, "err", fmt.Sprintf("%s:%d: %s", file, line, msg))
	return strings.TrimSpace(b.String())
}
