package main

import (
	"strings"
	"testing"

	"github.com/rstguard/rstguard/lab"
)

func TestPrintReport(t *testing.T) {
	rep := &lab.Report{
		Results: []lab.Result{
			{Name: "blind-rst-out-of-window", Expect: "dropped",
				Off: lab.Observation{Forged: 8, Delivered: 8, Outcome: "survived"},
				On:  lab.Observation{Forged: 8, Delivered: 0, Outcome: "survived"}, Pass: true},
			{Name: "on-path-injection", Expect: "dropped (hold)",
				Off: lab.Observation{Forged: 10, Delivered: 10, Outcome: "reset", Attempts: []string{"reset", "reset"},
					Genuine: 10, GenuineSeen: 10, GenuineArrived: 10, GenuineDelayMedian: 15e-6, GenuineDelayMax: 22e-6},
				On: lab.Observation{Forged: 10, Outcome: "survived", Attempts: []string{"intact", "intact"},
					Genuine: 10, GenuineSeen: 10, GenuineArrived: 10, GenuineDelayMedian: 0.0502, GenuineDelayMax: 0.0511}, Pass: true},
			{Name: "tcp-fast-open", Expect: "succeeds",
				Off: lab.Observation{Outcome: "established", Note: "data on SYN"},
				On:  lab.Observation{Err: "boom"}, Why: "guard on: boom"},
		},
		Metrics: map[string]float64{
			`rstguard_packets_total{reason="rst_out_of_window",verdict="drop"}`: 8,
			`rstguard_syn_flagged_total{flag="ece"}`:                            2,
		},
		Seconds: 1.5,
	}
	var b strings.Builder
	printReport(&b, rep)
	out := b.String()
	for _, want := range []string{
		"8/8 delivered, survived", "0/8 delivered, survived", "established (data on SYN)", "error",
		"FAIL tcp-fast-open: guard on: boom",
		`rstguard_packets_total{reason="rst_out_of_window",verdict="drop"}`,
		`rstguard_syn_flagged_total{flag="ece"}`,
		"FAIL: 3 scenarios in 1.5s",
		"10/10 delivered, reset; genuine 10/10, 15µs", "0/10 delivered, survived; genuine 10/10, 50.2ms",
		"without guard attempts: 1-2 reset", "with guard    attempts: 1-2 intact",
		"with guard    genuine resets: 10 sent, 10 arrived, 10 seen by the client; server eth0 -> client eth0 median 50.2ms, max 51.1ms",
		"added by the guard: median 50.185ms, max 51.078ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Split(out, "\n"); !strings.HasSuffix(strings.TrimSpace(lines[1]), "pass") || !strings.HasSuffix(strings.TrimSpace(lines[3]), "FAIL") {
		t.Errorf("result column wrong:\n%s", out)
	}
}

func TestLabFlags(t *testing.T) {
	if got := cmdLab([]string{"--only", "no-such-scenario"}); got != 2 {
		t.Errorf("unknown scenario: exit %d, want 2", got)
	}
	if got := cmdLab([]string{"extra"}); got != 2 {
		t.Errorf("stray argument: exit %d, want 2", got)
	}
}
