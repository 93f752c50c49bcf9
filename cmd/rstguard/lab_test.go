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

func TestPrintHAReport(t *testing.T) {
	rep := &lab.HAReport{
		Results: []lab.HAResult{
			{Variant: lab.HAVariants[0], Takeover: 0.067, FirstForwarded: 0.225, BothWays: 0.225, LongestStall: 0.226, Outcome: "survived",
				Far: lab.Forged{SentAfter: 490, DeliveredAfter: 478, WindowFirst: 0.003, WindowLast: 2.461}, Pass: true},
			{Variant: lab.HAVariants[1], Takeover: 0.067, FirstForwarded: 0.223, BothWays: 0.223, LongestStall: 0.224, Outcome: "survived",
				Far:  lab.Forged{SentAfter: 485, DeliveredAfter: 32, WindowFirst: 0.066, WindowLast: 0.221, FirstOutOfWindow: 0.226},
				Near: lab.Forged{SentAfter: 485, FirstOutOfWindow: 0.226}, FirstDropped: 0.226, DroppedB: 400, Pass: true},
			{Variant: lab.HAVariants[2], Takeover: -1, FirstForwarded: -1, BothWays: -1, Outcome: "reset", Why: "transfer reset, want survived"},
		},
		Seconds: 16.3,
	}
	var b strings.Builder
	printHAReport(&b, rep)
	out := b.String()
	for _, want := range []string{
		"478/490 (3ms..2461ms)", "32/485 (66ms..221ms)", "0/485", "226ms, 226ms, 226ms", "never",
		"FAIL guard, unknown_flow_rst=drop: transfer reset, want survived", "FAIL: ha-failover in 16.3s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("HA report lacks %q:\n%s", want, out)
		}
	}
}
