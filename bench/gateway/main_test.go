//go:build linux

package main

import (
	"slices"
	"testing"
	"time"

	rgconfig "github.com/rstguard/rstguard/config"
)

// TestRstguardConfig: the generated configuration is one the daemon
// accepts, with the benchmark's queues and metrics listener.
func TestRstguardConfig(t *testing.T) {
	for _, tc := range []struct {
		queues string
		want   []uint16
	}{
		{"0:1", []uint16{0, 1}},
		{"3", []uint16{3}},
		{"4:7", []uint16{4, 5, 6, 7}},
	} {
		c, err := rgconfig.Parse("bench.toml", []byte(rstguardConfig(tc.queues)))
		if err != nil {
			t.Fatalf("queues %q: the daemon rejects the generated config: %v\n%s", tc.queues, err, rstguardConfig(tc.queues))
		}
		if !slices.Equal(c.Queue.Numbers, tc.want) {
			t.Errorf("queues %q: numbers %v, want %v", tc.queues, c.Queue.Numbers, tc.want)
		}
		if c.Metrics.Listen != guardMetricsAddr {
			t.Errorf("listen %q, want %q", c.Metrics.Listen, guardMetricsAddr)
		}
		if n, err := countQueues(tc.queues); err != nil || n != len(tc.want) {
			t.Errorf("countQueues(%q) = %d, %v; want %d", tc.queues, n, err, len(tc.want))
		}
	}
	for _, bad := range []string{"", "a", "3:1", "1:"} {
		if n, err := countQueues(bad); err == nil {
			t.Errorf("countQueues(%q) = %d, want an error", bad, n)
		}
	}
}

func TestQuantileMedian(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{0.5: 50, 0.99: 99, 1: 100, 0: 1} {
		if got := quantile(d, q); got != want {
			t.Errorf("quantile(1..100, %v) = %v, want %v", q, got, want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing should be 0")
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median(3,1,2) = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median(4,1,2,3) = %v", m)
	}
}
