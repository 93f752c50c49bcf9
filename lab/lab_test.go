package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// buildRstguard builds the rstguard binary into a temporary directory, or
// returns $RSTGUARD_LAB_BINARY when set (a binary built already).
func buildRstguard(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("RSTGUARD_LAB_BINARY"); b != "" {
		return b
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to build rstguard: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "rstguard")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/rstguard/rstguard/cmd/rstguard")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rstguard: %v\n%s", err, out)
	}
	return bin
}

// TestScenarios plays every lab scenario against real Linux TCP endpoints,
// without and with the guard, and checks each one: with the guard, the
// outcome its Expect names (forged resets not delivered, connections alive,
// flagged SYNs counted and not dropped); without it, where the threat model
// says so, that every forged packet reached the victim, which shows the
// attack is real.
//
//	sudo go test ./lab/    (or: make test)
func TestScenarios(t *testing.T) {
	requireLab(t)
	bin := buildRstguard(t)
	topo := newTestTopology(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log testLogWriter
	log.t = t
	scenarios := Scenarios()
	rep, err := Run(ctx, topo, scenarios, Options{Binary: bin, Dir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(scenarios) {
		t.Fatalf("%d results for %d scenarios", len(rep.Results), len(scenarios))
	}
	for i, s := range scenarios {
		r := rep.Results[i]
		t.Run(s.Name, func(t *testing.T) {
			if err := s.checkOn(r.On); err != nil {
				t.Errorf("guard on (%+v): %v", r.On, err)
			}
			if r.Off.Err != "" {
				t.Errorf("guard off: %s", r.Off.Err)
			} else if s.CheckOff != nil {
				if err := s.CheckOff(r.Off); err != nil {
					t.Errorf("guard off (%+v): %v", r.Off, err)
				}
			}
			if r.Pass != (!t.Failed()) {
				t.Errorf("report says pass=%v (%s)", r.Pass, r.Why)
			}
		})
	}
	// Dropped forged resets must show in the guard's own counters too.
	var dropped float64
	for k, v := range rep.Metrics {
		if strings.HasPrefix(k, "rstguard_packets_total{") && strings.Contains(k, `verdict="drop"`) {
			dropped += v
		}
	}
	// blind (8) + spray (512) + exact (1) + wrong ACK (1) + IPv6 (8) + restart (8)
	// + injected resets and refusals held and dropped (10 + 10)
	if want := float64(8 + 512 + 1 + 1 + 8 + 8 + 10 + 10); dropped < want {
		t.Errorf("the guard counted %v drops over the run, want at least %v (metrics: %v)", dropped, want, rep.Metrics)
	}
	if t.Failed() {
		t.Logf("metrics over the run: %v", rep.Metrics)
	}
}
