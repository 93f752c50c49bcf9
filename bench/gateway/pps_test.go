//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (rst guard) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 12345 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	u, s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if u != 2500*time.Millisecond || s != 750*time.Millisecond {
		t.Errorf("utime %v stime %v, want 2.5s 750ms", u, s)
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 a 75 0"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): want an error", bad)
		}
	}
}

func TestParseJudged(t *testing.T) {
	n, err := parseJudged("ready\n{\"packets\":123456,\"verdicts\":7,\"verdict_errors\":0,\"recv_errors\":0}\n")
	if err != nil || n != 123456 {
		t.Errorf("parseJudged = %d, %v; want 123456", n, err)
	}
	for _, bad := range []string{"", "ready\n", "ready\n{\"verdicts\":3}\n", "{\"packets\":-1}"} {
		if n, err := parseJudged(bad); err == nil {
			t.Errorf("parseJudged(%q) = %d, want an error", bad, n)
		}
	}
}

func TestParseRuleHits(t *testing.T) {
	out := `Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)
    pkts      bytes target     prot opt in     out     source               destination
       5      300 ACCEPT     udp  --  *      *       0.0.0.0/0            0.0.0.0/0
  987654 39506160 NFQUEUE    tcp  --  *      *       0.0.0.0/0            0.0.0.0/0            NFQUEUE num 0 bypass
`
	if n, err := parseRuleHits(out, "NFQUEUE"); err != nil || n != 987654 {
		t.Errorf("NFQUEUE hits = %d, %v; want 987654", n, err)
	}
	if n, err := parseRuleHits(out, "ACCEPT"); err != nil || n != 5 {
		t.Errorf("ACCEPT hits = %d, %v; want 5", n, err)
	}
	if _, err := parseRuleHits(out, "DROP"); err == nil {
		t.Error("DROP: want an error")
	}
}

func TestSumCounter(t *testing.T) {
	body := `# TYPE rstguard_packets_total counter
rstguard_packets_total{reason="new",verdict="accept"} 1000
rstguard_packets_total{reason="rst_ok",verdict="accept"} 250
rstguard_packets_total_other 99
rstguard_packets_totalx{a="b"} 7
`
	if n, err := sumCounter(body, "rstguard_packets_total"); err != nil || n != 1250 {
		t.Errorf("sum = %d, %v; want 1250", n, err)
	}
	if _, err := sumCounter(body, "rstguard_resets_total"); err == nil {
		t.Error("missing counter: want an error")
	}
}

// TestSynGen: the generated SYNs carry valid IPv4 and TCP checksums, only
// documentation-prefix sources, and the spread workload varies sources.
func TestSynGen(t *testing.T) {
	for _, spread := range []bool{false, true} {
		var g synGen
		g.init(mustAddr("192.0.2.2"), mustAddr("198.51.100.2"), spread)
		srcs := map[[4]byte]bool{}
		ports := map[uint16]bool{}
		var b [40]byte
		for i := 0; i < 100000; i++ {
			g.next(&b)
			if checksum(b[:20], 0) != 0 {
				t.Fatalf("spread %v packet %d: bad IPv4 checksum", spread, i)
			}
			var ph [12]byte
			copy(ph[0:8], b[12:20])
			ph[9], ph[11] = 6, 20
			if sum := checksum(append(ph[:], b[20:]...), 0); sum != 0 {
				t.Fatalf("spread %v packet %d: bad TCP checksum", spread, i)
			}
			var src [4]byte
			copy(src[:], b[12:16])
			if src[0] != 192 || src[1] != 0 || src[2] != 2 || src[3] < 2 || src[3] > 250 {
				t.Fatalf("source %v outside 192.0.2.0/24 hosts", src)
			}
			if b[33] != 0x02 || binary.BigEndian.Uint16(b[22:]) != ppsClosedPort {
				t.Fatalf("not a SYN to port %d: % x", ppsClosedPort, b[20:])
			}
			srcs[src] = true
			ports[binary.BigEndian.Uint16(b[20:])] = true
		}
		if spread && len(srcs) != 241 || !spread && len(srcs) != 1 {
			t.Errorf("spread %v: %d source addresses", spread, len(srcs))
		}
		if len(ports) < 400 {
			t.Errorf("spread %v: only %d source ports", spread, len(ports))
		}
	}
}

func TestSummarizePPS(t *testing.T) {
	var samples []ppsSample
	for r, v := range [][2]float64{{100, 50}, {200, 120}, {300, 90}} {
		samples = append(samples,
			ppsSample{Config: "kernel", Workload: "syn-closed", Run: r + 1, Offered: 1000, SendSecs: 1, RuleHits: 2000, Bypassed: -1},
			ppsSample{Config: "c-accept", Workload: "syn-closed", Run: r + 1, Offered: 1000, SendSecs: 1, RuleHits: 1000, Judged: uint64(v[0]), JudgedPPS: v[0], Bypassed: 1000 - int64(v[0]), CPUPerPkt: 10},
			ppsSample{Config: "rstguard-1q", Workload: "syn-closed", Run: r + 1, Offered: 1000, SendSecs: 1, RuleHits: 1000, Judged: uint64(v[1]), JudgedPPS: v[1], Bypassed: 1000 - int64(v[1]), CPUPerPkt: float64(r + 1)})
	}
	samples = append(samples, ppsSample{Config: "rstguard-1q", Workload: "syn-closed", Run: 4, Err: "exited"})
	sums := summarizePPS([]string{"kernel", "c-accept", "rstguard-1q"}, samples)
	var g, k *ppsSummary
	for i := range sums {
		if sums[i].Workload == "syn-closed" && sums[i].Config == "rstguard-1q" {
			g = &sums[i]
		}
		if sums[i].Workload == "syn-closed" && sums[i].Config == "kernel" {
			k = &sums[i]
		}
	}
	if g == nil || k == nil {
		t.Fatal("missing summaries")
	}
	// Ratios per run: 0.5, 0.6, 0.3 -> median 0.5.
	if len(g.VsC) != 3 || g.VsC[1] != 0.6 || g.VsCMedian != 0.5 {
		t.Errorf("ratios %v median %v, want [0.5 0.6 0.3] 0.5", g.VsC, g.VsCMedian)
	}
	if g.JudgedPPS != 90 || g.CPUNsPerPkt != 2 || g.Runs != 3 || len(g.Errors) != 1 {
		t.Errorf("rstguard-1q: %+v", *g)
	}
	if want := 0.91; g.BypassShare != want {
		t.Errorf("bypass share %v, want %v", g.BypassShare, want)
	}
	if k.BypassShare != -1 || k.KernelFwdPPS != 2000 || len(k.VsC) != 0 {
		t.Errorf("kernel: %+v", *k)
	}
}

// TestNfqacceptCBuilds compiles bench/nfqaccept-c and checks it rejects a
// missing -q. Without the compiler or headers it skips, unless
// RSTGUARD_E2E=1, where that is a failure.
func TestNfqacceptCBuilds(t *testing.T) {
	_, err := exec.LookPath("cc")
	_, herr := os.Stat("/usr/include/libnetfilter_queue/libnetfilter_queue.h")
	if err != nil || herr != nil {
		msg := "needs cc and libnetfilter-queue-dev libmnl-dev (apt-get install -y gcc libnetfilter-queue-dev libmnl-dev)"
		if os.Getenv("RSTGUARD_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin := filepath.Join(t.TempDir(), "nfqaccept-c")
	if out, err := exec.Command("cc", "-O2", "-Wall", "-Werror", "-o", bin, "../nfqaccept-c/nfqaccept.c", "-lnetfilter_queue", "-lmnl").CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	err = exec.Command(bin).Run()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("no -q: %v, want exit status 2", err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }
