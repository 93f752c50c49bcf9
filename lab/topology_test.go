package lab

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// testPrefix names the tests' namespaces (rstguard lab uses "rsg-").
const testPrefix = "rgl-"

// requireLab skips the test when the lab's prerequisites are missing, naming
// the command that runs it; with RSTGUARD_E2E=1 it fails instead.
func requireLab(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Preflight(ctx, testPrefix)
	if err == nil {
		return
	}
	var pe *PreflightError
	if os.Getenv("RSTGUARD_E2E") == "1" || !errors.As(err, &pe) {
		t.Fatalf("lab prerequisites (RSTGUARD_E2E=1): %v", err)
	}
	t.Skipf("end-to-end lab test skipped; run it as root with `sudo go test ./lab/` or `make test`:\n%v", err)
}

// newTestTopology builds a topology for one test and removes it at the end.
func newTestTopology(t testing.TB) *Topology {
	t.Helper()
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var log io.Writer
	if testing.Verbose() {
		log = testLogWriter{t}
	}
	topo, err := NewTopology(ctx, TopologyOptions{Prefix: testPrefix, Replace: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		for _, h := range Hosts {
			if nsExists(topo.NS(h)) {
				t.Errorf("namespace %s left behind", topo.NS(h))
			}
		}
	})
	return topo
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestTopologyForwards checks that the client reaches the server through the
// gateway over IPv4 and IPv6, with and without the NFQUEUE rule (bypass, no
// daemon), and that nothing is left in the root namespace.
func TestTopologyForwards(t *testing.T) {
	requireLab(t)
	before := rootLinks(t)
	topo := newTestTopology(t)
	if after := rootLinks(t); after != before {
		t.Errorf("the topology changed the root namespace's links:\nbefore: %s\nafter:  %s", before, after)
	}
	// Sysctls land in the namespace they were written for.
	for h, want := range map[Host]string{Gateway: "1", Client: "0"} {
		out, err := topo.Exec(h, "cat", "/proc/sys/net/ipv4/ip_forward")
		if err != nil || strings.TrimSpace(out) != want {
			t.Errorf("%s ip_forward = %q (%v), want %s", h, out, err, want)
		}
	}
	for _, bypassRule := range []bool{false, true} {
		if bypassRule {
			if err := topo.InstallQueueRule("0", true); err != nil {
				t.Fatal(err)
			}
		}
		for _, addr := range []string{"198.51.100.2:7001", "[2001:db8:2::2]:7001"} {
			l, err := topo.Listen(Server, "tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				io.Copy(c, c)
				c.Close()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := topo.Dial(ctx, Client, nil, "tcp", addr)
			cancel()
			if err != nil {
				t.Fatalf("rule=%v dial %s: %v", bypassRule, addr, err)
			}
			if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(); got != ClientV4 && got != ClientV6 {
				t.Errorf("client socket address %v, want the client's", got)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("rule=%v %s: echo %q, %v", bypassRule, addr, buf, err)
			}
			c.Close()
			l.Close()
		}
	}
	if err := topo.RemoveQueueRule(); err != nil {
		t.Fatal(err)
	}
	out, err := topo.Exec(Gateway, "iptables", "-t", "mangle", "-S", "FORWARD")
	if err != nil || strings.Contains(out, "NFQUEUE") {
		t.Errorf("after RemoveQueueRule: %q, %v", out, err)
	}
}

// rootLinks lists the interface names of the root namespace.
func rootLinks(t *testing.T) string {
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	return strings.Join(names, " ")
}

func TestQueueRuleArgs(t *testing.T) {
	for _, tc := range []struct {
		in     string
		bypass bool
		want   string
	}{
		{"0", true, "-p tcp -j NFQUEUE --queue-num 0 --queue-bypass"},
		{"0:3", false, "-p tcp -j NFQUEUE --queue-balance 0:3"},
		{"65535", false, "-p tcp -j NFQUEUE --queue-num 65535"},
		{"65536", false, ""},
		{"", false, ""},
		{"1:", false, ""},
		{"a", false, ""},
	} {
		if got := strings.Join(queueRuleArgs(tc.in, tc.bypass), " "); got != tc.want {
			t.Errorf("queueRuleArgs(%q, %v) = %q, want %q", tc.in, tc.bypass, got, tc.want)
		}
	}
}
