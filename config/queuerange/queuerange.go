// Package queuerange reads NFQUEUE queue ranges as iptables --queue-balance,
// nftables "queue to", the [queue] numbers key and the tools' -queues flags
// write them: "N" or "FIRST:LAST", both ends included. It is the one parser
// of that syntax, and imports nothing of rstguard's, so that small programs
// (the benchmark's consumers) can use it without the configuration package.
package queuerange

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Split reads "N" or "FIRST:LAST" (spaces allowed around the numbers) as
// two integers, without checking their order or range, so that callers can
// say which of those is wrong.
func Split(s string) (first, last int64, ok bool) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), ":")
	first, errA := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	last, errB := first, error(nil)
	if isRange {
		last, errB = strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	}
	return first, last, errA == nil && errB == nil
}

// Parse returns the queues of range s in order, or an error that says what
// is wrong with it and how to write it.
func Parse(s string) ([]uint16, error) {
	a, b, ok := Split(s)
	switch {
	case !ok:
		return nil, fmt.Errorf("%q is not a queue range; write N or FIRST:LAST", s)
	case a > b:
		return nil, fmt.Errorf("range %q runs backwards; write the lower queue first", s)
	case a < 0 || b > math.MaxUint16:
		return nil, fmt.Errorf("range %q is out of range; queue numbers go from 0 to 65535", s)
	}
	qs := make([]uint16, 0, b-a+1)
	for n := a; n <= b; n++ {
		qs = append(qs, uint16(n))
	}
	return qs, nil
}
