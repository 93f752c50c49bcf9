package nfq

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ProcPath is where the kernel reports its NFQUEUE instances (of the reading
// process's network namespace).
const ProcPath = "/proc/net/netfilter/nfnetlink_queue"

// ProcQueue is one line of /proc/net/netfilter/nfnetlink_queue
// (net/netfilter/nfnetlink_queue.c, seq_show).
type ProcQueue struct {
	Queue       uint16 // queue_number
	PortID      uint32 // peer_portid: the netlink port bound to the queue
	Total       uint32 // queue_total: packets waiting for a verdict
	CopyMode    uint8
	CopyRange   uint32
	Dropped     uint32 // queue_dropped: dropped because the queue was full (without fail-open)
	UserDropped uint32 // queue_user_dropped: dropped because the netlink socket was full
	IDSequence  uint32 // id of the last queued packet
}

// ReadProcQueues reads and parses path (ProcPath unless testing).
func ReadProcQueues(path string) ([]ProcQueue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseProcQueues(f)
}

// ParseProcQueues parses the format of ProcPath: nine whitespace-separated
// unsigned columns per line, queue_number peer_portid queue_total copy_mode
// copy_range queue_dropped queue_user_dropped id_sequence 1.
func ParseProcQueues(r io.Reader) ([]ProcQueue, error) {
	var qs []ProcQueue
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return qs, fmt.Errorf("nfnetlink_queue line %d: %d columns, want at least 8", line, len(f))
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return qs, fmt.Errorf("nfnetlink_queue line %d column %d: %w", line, i+1, err)
			}
			v[i] = n
		}
		if v[0] > 0xffff || v[3] > 0xff {
			return qs, fmt.Errorf("nfnetlink_queue line %d: queue %d or copy mode %d out of range", line, v[0], v[3])
		}
		qs = append(qs, ProcQueue{
			Queue: uint16(v[0]), PortID: uint32(v[1]), Total: uint32(v[2]),
			CopyMode: uint8(v[3]), CopyRange: uint32(v[4]), Dropped: uint32(v[5]),
			UserDropped: uint32(v[6]), IDSequence: uint32(v[7]),
		})
	}
	return qs, sc.Err()
}

// procQueue returns queue q's line, if the queue is bound.
func procQueue(path string, q uint16) (ProcQueue, bool, error) {
	qs, err := ReadProcQueues(path)
	if err != nil {
		return ProcQueue{}, false, err
	}
	for _, p := range qs {
		if p.Queue == q {
			return p, true, nil
		}
	}
	return ProcQueue{}, false, nil
}
