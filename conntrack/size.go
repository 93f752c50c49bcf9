package conntrack

import "unsafe"

// flowSize is the size of one slab entry, kept in check by
// TestMemoryPerFlowBound.
func flowSize() int { return int(unsafe.Sizeof(Flow{})) }
