package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rstguard/rstguard/config"
	"github.com/rstguard/rstguard/packet"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP rstguard_packets_total Packets decided.
# TYPE rstguard_packets_total counter
rstguard_packets_total{verdict="drop",reason="rst_out_of_window"} 21
rstguard_packets_total{reason="tracked",verdict="accept"} 3000
# HELP rstguard_flows_tracked Flows.
# TYPE rstguard_flows_tracked gauge
rstguard_flows_tracked{state="established"} 4
`
	m, err := ParseMetrics(text, "rstguard_packets_total")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`rstguard_packets_total{reason="rst_out_of_window",verdict="drop"}`: 21,
		`rstguard_packets_total{reason="tracked",verdict="accept"}`:         3000,
	}
	if len(m) != len(want) {
		t.Fatalf("got %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	o := Observation{Metrics: m}
	if o.Drops() != 21 {
		t.Errorf("Drops() = %v, want 21", o.Drops())
	}
	if v := o.Metric("rstguard_packets_total", "verdict", "accept", "reason", "tracked"); v != 3000 {
		t.Errorf("Metric = %v, want 3000", v)
	}
	all, err := ParseMetrics(text)
	if err != nil || all[`rstguard_flows_tracked{state="established"}`] != 4 {
		t.Errorf("all families: %v, %v", all, err)
	}
	if _, err := ParseMetrics("rstguard_x{ 1\n"); err == nil {
		t.Error("bad text parsed without error")
	}
}

// TestSegmentBytes decodes what the lab forges with the engine's decoder:
// the fields, the forged TTL and the reserved bits must come out as put in.
func TestSegmentBytes(t *testing.T) {
	for _, s := range []Segment{
		{Src: netip.AddrPortFrom(ServerV4, 80), Dst: netip.AddrPortFrom(ClientV4, 40000), Seq: 0xfffffff0, Flags: packet.RST},
		{Src: netip.AddrPortFrom(ServerV6, 80), Dst: netip.AddrPortFrom(ClientV6, 40000), Seq: 7, Ack: 9, Flags: packet.RST | packet.ACK},
		{Src: netip.AddrPortFrom(ClientV4, 61001), Dst: netip.AddrPortFrom(ServerV4, 80), Seq: 1, Flags: packet.SYN | 1<<9, Window: 64240, TTL: 64, Options: []byte{2, 4, 5, 0xb4}},
	} {
		b, err := s.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Parsed
		packet.Decode(b, 0, &p)
		if p.Kind != packet.KindTCP || p.SrcAddrPort() != s.Src || p.DstAddrPort() != s.Dst ||
			uint32(p.Seq) != s.Seq || uint32(p.Ack) != s.Ack || p.Flags != s.Flags || p.Window != s.Window {
			t.Errorf("%+v decoded as %+v", s, p)
		}
		wantTTL := s.TTL
		if wantTTL == 0 {
			wantTTL = ForgedTTL
		}
		if got := ttlOf(b); got != wantTTL {
			t.Errorf("TTL %d, want %d", got, wantTTL)
		}
	}
	if _, err := (Segment{Src: netip.AddrPortFrom(ServerV4, 1), Dst: netip.AddrPortFrom(ClientV6, 1)}).Bytes(); err == nil {
		t.Error("mixed families forged without error")
	}
}

func TestChecks(t *testing.T) {
	o := Observation{Forged: 8, Delivered: 8, Outcome: OutcomeSurvived}
	if err := allDelivered(o); err != nil {
		t.Error(err)
	}
	if err := delivered(0)(o); err == nil {
		t.Error("delivered(0) passed 8 delivered")
	}
	if err := all(delivered(8), outcome(OutcomeReset))(o); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("all(): %v", err)
	}
	if err := allDelivered(Observation{}); err == nil {
		t.Error("allDelivered passed nothing forged")
	}
}

func TestScenarioNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Scenarios() {
		if seen[s.Name] || s.Name == "" || s.Expect == "" || s.Run == nil || s.CheckOn == nil {
			t.Errorf("scenario %q: duplicate or incomplete", s.Name)
		}
		seen[s.Name] = true
	}
}

// TestConfig parses the lab's generated configuration with the daemon's
// own parser: [injection] is written only when a scenario sets it, and the
// daemon's default applies otherwise.
func TestConfig(t *testing.T) {
	def, err := config.Parse("lab.toml", []byte(Config("window", "", DefaultMetricsAddr, "")))
	if err != nil {
		t.Fatal(err)
	}
	if want := config.Default().Injection.Mode; def.Injection.Mode != want {
		t.Errorf("no injection set: mode %q, want the default %q", def.Injection.Mode, want)
	}
	for _, mode := range []string{"off", "log", "hold"} {
		c, err := config.Parse("lab.toml", []byte(Config("exact", mode, DefaultMetricsAddr, "/tmp/events.jsonl")))
		if err != nil {
			t.Fatalf("injection %q: %v", mode, err)
		}
		if c.Injection.Mode != mode || c.Policy.RSTMode != "exact" {
			t.Errorf("injection %q: parsed mode %q, rst_mode %q", mode, c.Injection.Mode, c.Policy.RSTMode)
		}
	}
}

func TestAttemptsHelpers(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		ds          []time.Duration
		median, max float64
	}{
		{nil, 0, 0},
		{[]time.Duration{3 * ms}, 0.003, 0.003},
		{[]time.Duration{50 * ms, 1 * ms, 52 * ms}, 0.050, 0.052},
		{[]time.Duration{4 * ms, 1 * ms, 2 * ms, 10 * ms}, 0.003, 0.010},
	} {
		if m, x := medianMax(c.ds); m != c.median || x != c.max {
			t.Errorf("medianMax(%v) = %v, %v, want %v, %v", c.ds, m, x, c.median, c.max)
		}
	}
	a := []string{"intact", "intact", "reset", "intact"}
	if got, want := Attempts(a), "1-2 intact, 3 reset, 4 intact"; got != want {
		t.Errorf("Attempts = %q, want %q", got, want)
	}
	if got, want := summarize(a, "intact", OutcomeSurvived), "reset (3 of 4 intact)"; got != want {
		t.Errorf("summarize = %q, want %q", got, want)
	}
	if got := summarize([]string{"intact", "intact"}, "intact", OutcomeSurvived); got != OutcomeSurvived {
		t.Errorf("summarize all good = %q", got)
	}
	if got := summarize([]string{"reset", "refused"}, "intact", OutcomeSurvived); got != "reset" {
		t.Errorf("summarize none good = %q", got)
	}
	if err := allAttempts("intact")(Observation{Attempts: a}); err == nil {
		t.Error("allAttempts passed a reset")
	}
	if err := allAttempts("intact")(Observation{}); err == nil {
		t.Error("allAttempts passed no attempts")
	}
	ok := Observation{Genuine: 10, GenuineSeen: 10, GenuineArrived: 10, GenuineDelayMax: 0.051}
	if err := genuineDelivered(250 * ms)(ok); err != nil {
		t.Error(err)
	}
	if err := genuineDelivered(40 * ms)(ok); err == nil {
		t.Error("genuineDelivered passed a trip above its limit")
	}
	if err := genuineDelivered(0)(Observation{Genuine: 10, GenuineSeen: 9, GenuineArrived: 10}); err == nil {
		t.Error("genuineDelivered passed a reset the client did not see")
	}
	inj := Observation{Forged: 10, Metrics: map[string]float64{`rstguard_packets_total{reason="rst_injected",verdict="drop"}`: 10}}
	if err := injectedDropped(inj); err != nil {
		t.Error(err)
	}
	inj.Forged = 11
	if err := injectedDropped(inj); err == nil {
		t.Error("injectedDropped passed 11 forged, 10 dropped")
	}
}
