package metrics

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/nfq"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/ruleset"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden")

// fixedCollector returns a collector over two queues whose counters are set
// to distinct fixed values, so the golden file shows that every counter is
// read, summed over queues where it should be and labelled per queue where
// it should be.
func fixedCollector(t *testing.T) *Collector {
	t.Helper()
	var qs []Queue
	for i, num := range []uint16{0, 1} {
		e := policy.NewEngine(policy.DefaultConfig(), conntrack.DefaultConfig())
		s := e.Stats()
		k := uint64(i + 1)
		s.Reasons[policy.ReasonTracked].Add(1000 * k)
		s.Reasons[policy.ReasonRSTValid].Add(3 * k)
		s.Reasons[policy.ReasonRSTOutOfWindow].Add(7 * k)
		s.Reasons[policy.ReasonRSTAnswersReservedSYN].Add(k)
		s.Resets[conntrack.StateEstablished][policy.OutcomeAccepted].Add(3 * k)
		s.Resets[conntrack.StateEstablished][policy.OutcomeDropped].Add(7 * k)
		s.FlaggedSYNs[policy.SYNFlagECE].Add(11 * k)
		s.FlaggedSYNs[policy.SYNFlagReserved].Add(k)
		s.Reconfigured.Add(k)
		ts := e.Table().Stats()
		ts.Flows[conntrack.StateEstablished].Add(int64(40 * k))
		ts.Flows[conntrack.StateSynSent].Add(int64(2 * k))
		ts.Created.Add(50 * k)
		ts.Expired.Add(8 * k)
		ts.Evicted[conntrack.EvictLRU].Add(k)
		ts.Untracked.Add(2 * k)
		ts.Gaps.Add(k)
		ts.OneWay.Add(int64(k))

		st := new(nfq.Stats)
		st.Packets.Add(1011 * k)
		st.MarkedDrops.Add(k)
		st.VerdictErrors.Add(2 * k)
		st.Panics.Add(k)
		st.LogSuppressed.Add(5 * k)
		st.Bound.Store(i == 0)
		for _, ns := range []int64{50, 90, 300, 700, 2000, 40000, 5000000} {
			st.Latency.Observe(ns * int64(k))
		}
		qs = append(qs, Queue{Num: num, Engine: e, Stats: st})
	}
	p := new(Process)
	p.ReloadsOK.Add(2)
	p.ReloadsFailed.Add(1)
	p.LastReloadFailed.Store(true)
	p.LastReloadSuccess.Store(1764633600_250000000) // 2025-12-02T00:00:00.25Z
	p.RestartRequired.Store(true)
	p.FlowsLimit.Store(2 * 65536)
	p.Guard = ruleset.NewAccountant("")
	// One sample starts the account; the second's gains are queue_full.
	if err := p.Guard.Sample(ruleset.Counters{QueueRule: 10}, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Guard.Sample(ruleset.Counters{QueueRule: 900, Unjudged: 40, UnjudgedResets: 3}, false); err != nil {
		t.Fatal(err)
	}
	p.Problems[ProblemGuardMissing].Store(true)
	names := []string{"lb-vip"}
	p.OverrideNames.Store(&names)
	for i, q := range qs {
		q.Engine.Stats().Overrides[0].Add(uint64(10 * (i + 1)))
		q.Stats.MonitorPassed.Add(uint64(i + 1))
	}
	c := NewCollector(qs, p, filepath.Join("testdata", "nfnetlink_queue"), "v1.2.3-test")
	c.goVer = "go1.x" // keep the golden file independent of the toolchain
	return c
}

func scrape(t *testing.T, c prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	got := scrape(t, fixedCollector(t))
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./metrics -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("scrape differs from %s (rerun with -update if the change is intended):\n%s", golden, diffLines(string(want), string(got)))
	}
	// Spot checks that do not depend on the golden file.
	for _, line := range []string{
		`rstguard_packets_total{reason="rst_out_of_window",verdict="drop"} 21`,
		`rstguard_packets_total{reason="tracked",verdict="accept"} 3000`,
		`rstguard_queue_kernel_dropped_total{queue="0"} 17`,
		`rstguard_queue_user_dropped_total{queue="0"} 5`,
		`rstguard_queue_length{queue="0"} 3`,
		`rstguard_decision_duration_seconds_count{queue="1"} 7`,
		`rstguard_decision_duration_seconds_bucket{queue="0",le="1e-07"} 2`,
		`rstguard_config_reload_failed_total 1`,
		`rstguard_config_last_reload_successful 0`,
		`rstguard_config_last_reload_success_timestamp_seconds 1.76463360025e+09`,
		`rstguard_config_restart_required 1`,
		`rstguard_flows_limit 131072`,
		`rstguard_unvalidated_packets_total{cause="queue_full"} 40`,
		`rstguard_unvalidated_resets_total{cause="queue_full"} 3`,
		`rstguard_unvalidated_packets_total{cause="daemon_down"} 0`,
		`rstguard_queue_rule_packets_total 900`,
		`rstguard_ruleset_problem{problem="guard_missing"} 1`,
		`rstguard_ruleset_problem{problem="queue_not_bound"} 0`,
		`rstguard_build_info{goversion="go1.x",version="v1.2.3-test"} 1`,
	} {
		if !strings.Contains(string(got), line+"\n") {
			t.Errorf("scrape lacks %q", line)
		}
	}
	if strings.Contains(string(got), `queue="7"`) {
		t.Error("kernel statistics of a queue that is not ours were exported")
	}
}

func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	in := make(map[string]bool, len(al))
	for _, l := range al {
		in[l] = true
	}
	inB := make(map[string]bool, len(bl))
	var out strings.Builder
	for _, l := range bl {
		inB[l] = true
		if !in[l] {
			out.WriteString("+ " + l + "\n")
		}
	}
	for _, l := range al {
		if !inB[l] {
			out.WriteString("- " + l + "\n")
		}
	}
	return out.String()
}

// TestPromtool runs promtool check metrics on the golden scrape.
func TestPromtool(t *testing.T) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("RSTGUARD_E2E") == "1" {
			t.Fatalf("promtool not found (install the prometheus package): %v", err)
		}
		t.Skip("promtool not installed; install prometheus and run go test ./metrics -run TestPromtool")
	}
	cmd := exec.CommandContext(context.Background(), path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, fixedCollector(t)))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(fixedCollector(t))
	ready := false
	srv := httptest.NewServer(Handler(reg, func() bool { return ready }))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	ready = true
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d, want 200", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "rstguard_packets_total") {
		t.Errorf("/metrics = %d without rstguard_packets_total", code)
	}
}

func TestCollectorNoProcFile(t *testing.T) {
	c := fixedCollector(t)
	c.procPath = filepath.Join(t.TempDir(), "missing")
	got := string(scrape(t, c))
	if strings.Contains(got, "rstguard_queue_length") {
		t.Error("queue length exported without a /proc file")
	}
	if !strings.Contains(got, `rstguard_queue_packets_total{queue="0"} 1011`) {
		t.Error("worker counters missing when /proc is unreadable")
	}
}

// TestConfigGauges: the reload and restart gauges and the flow limit read
// the process state at scrape time; a fresh Process is a successful start
// with nothing pending, and a zero limit is not exported.
func TestConfigGauges(t *testing.T) {
	tests := []struct {
		name  string
		set   func(p *Process)
		want  []string
		never string
	}{
		{"fresh", func(p *Process) {}, []string{
			"rstguard_config_last_reload_successful 1",
			"rstguard_config_last_reload_success_timestamp_seconds 0",
			"rstguard_config_restart_required 0",
		}, "rstguard_flows_limit"},
		{"started", func(p *Process) {
			p.LastReloadSuccess.Store(1_000_000_000_000_000_000)
			p.FlowsLimit.Store(1 << 20)
		}, []string{
			"rstguard_config_last_reload_successful 1",
			"rstguard_config_last_reload_success_timestamp_seconds 1e+09",
			"rstguard_config_restart_required 0",
			"rstguard_flows_limit 1.048576e+06",
		}, ""},
		{"failed reload", func(p *Process) {
			p.LastReloadFailed.Store(true)
			p.LastReloadSuccess.Store(1_500_000_000_000_000_000)
		}, []string{
			"rstguard_config_last_reload_successful 0",
			"rstguard_config_last_reload_success_timestamp_seconds 1.5e+09",
		}, ""},
		{"restart pending", func(p *Process) { p.RestartRequired.Store(true) }, []string{
			"rstguard_config_last_reload_successful 1",
			"rstguard_config_restart_required 1",
		}, ""},
		{"restart done", func(p *Process) {
			p.RestartRequired.Store(true)
			p.RestartRequired.Store(false)
		}, []string{"rstguard_config_restart_required 0"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := new(Process)
			tt.set(p)
			got := string(scrape(t, NewCollector(nil, p, "", "v")))
			for _, w := range tt.want {
				if !strings.Contains(got, "\n"+w+"\n") {
					t.Errorf("scrape lacks %q", w)
				}
			}
			if tt.never != "" && strings.Contains(got, tt.never+" ") {
				t.Errorf("scrape has %s", tt.never)
			}
		})
	}
}
