package conntrack

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// adviseHuge asks the kernel to back the memory of b (n bytes at p) with
// transparent huge pages (MADV_HUGEPAGE, for THP mode "madvise", the
// Debian default): the flow table and its index are large and accessed at
// random, so with 4 KiB pages nearly every lookup of a cold flow also
// misses the TLB. Only the 2 MiB-aligned part of the range is affected; an
// error (THP off) changes nothing.
func adviseHuge(p unsafe.Pointer, n uintptr) {
	const huge = 2 << 20
	start := (uintptr(p) + huge - 1) &^ (huge - 1)
	end := (uintptr(p) + n) &^ (huge - 1)
	if end <= start {
		return
	}
	b := unsafe.Slice((*byte)(p), n)
	base := uintptr(p)
	unix.Madvise(b[start-base:end-base], unix.MADV_HUGEPAGE)
}
