package conntrack

import (
	"runtime"
	"testing"
)

// BenchmarkMemoryPerFlow reports the retained heap per tracked flow with
// 1,000,000 flows in one table (SPEC 10: 1M flows in at most 256 MiB, so
// at most 256 bytes per flow including the index).
func BenchmarkMemoryPerFlow(b *testing.B) {
	const n = 1000000
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := NewTable(cfg(n))
		for j := uint32(0); j < n; j++ {
			k := testKey(j)
			if _, ok := tb.insert(&k, StateEstablished, 1); !ok {
				b.Fatal("insert failed")
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if tb.Len() != n {
			b.Fatal("wrong length")
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/flow")
		runtime.KeepAlive(tb)
	}
}

// TestMemoryPerFlowBound keeps the flow struct from growing unnoticed: the
// slab entry plus two index slots must stay within the 256-byte budget.
func TestMemoryPerFlowBound(t *testing.T) {
	const indexPerFlow = 2 * 8 // the index is kept at most half full
	if sz := flowSize(); sz+indexPerFlow > 256 {
		t.Fatalf("flow %d bytes + index %d > 256", sz, indexPerFlow)
	}
}
