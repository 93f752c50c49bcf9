package nfq

import (
	"encoding/binary"
	"testing"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"
)

// sentVerdict is one verdict message as the kernel would parse it.
type sentVerdict struct {
	batch          bool
	id, verdict    uint32
	mark           uint32
	hasMark        bool
	queue          uint16
	family, ver    uint8
	nlFlags, nlLen uint16
}

// parseVerdicts splits a datagram of verdict messages.
func parseVerdicts(t *testing.T, b []byte) []sentVerdict {
	t.Helper()
	var out []sentVerdict
	for len(b) > 0 {
		n := int(binary.NativeEndian.Uint32(b))
		if n < verdictMsgLen || n > len(b) {
			t.Fatalf("bad message length %d of %d", n, len(b))
		}
		m := b[:n]
		typ := binary.NativeEndian.Uint16(m[4:])
		v := sentVerdict{batch: typ == nfnlSubsysQueueMsg<<8|nfqnlMsgVerdictBatch, nlFlags: binary.NativeEndian.Uint16(m[6:]),
			family: m[16], ver: m[17], queue: binary.BigEndian.Uint16(m[18:]), nlLen: uint16(n)}
		if !v.batch && typ != nfnlSubsysQueueMsg<<8|nfqnlMsgVerdict {
			t.Fatalf("message type %#x", typ)
		}
		if binary.NativeEndian.Uint16(m[22:]) != nfqaVerdictHdr || binary.NativeEndian.Uint16(m[20:]) != 12 {
			t.Fatalf("first attribute is not NFQA_VERDICT_HDR: % x", m[20:24])
		}
		v.verdict, v.id = binary.BigEndian.Uint32(m[24:]), binary.BigEndian.Uint32(m[28:])
		if n == verdictMaxLen {
			if binary.NativeEndian.Uint16(m[34:]) != nfqaMark || binary.NativeEndian.Uint16(m[32:]) != 8 {
				t.Fatalf("second attribute is not NFQA_MARK: % x", m[32:36])
			}
			v.mark, v.hasMark = binary.BigEndian.Uint32(m[36:]), true
		}
		out = append(out, v)
		b = b[n:]
	}
	return out
}

// TestBatchingKeepsIndividualVerdicts: a batch verdict never covers a packet
// that needs a different verdict or mark, verdicts go out in id order, and
// every packet ends with exactly the verdict and mark it was given.
func TestBatchingKeepsIndividualVerdicts(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	w := New(Config{Queue: 7}, nil, Options{})
	w.fd = fds[0]
	if err := unix.SetNonblock(fds[0], true); err != nil { // a full peer fails a send, never blocks the test
		t.Fatal(err)
	}
	type want struct {
		verdict int
		mark    uint32
		hasMark bool
	}
	acc := want{nfqueue.NfAccept, 0x40000000, true}
	seq := []want{acc, acc, acc, {nfqueue.NfDrop, 0, false}, acc, {nfqueue.NfAccept, 0x40000011, true}, acc, acc,
		{nfqueue.NfAccept, 0, false}, {nfqueue.NfAccept, 0, false}, acc, {nfqueue.NfDrop, 0, false}, {nfqueue.NfDrop, 0, false}, acc}
	for i, s := range seq {
		w.give(uint32(100+i), s.verdict, s.mark, s.hasMark)
	}
	w.flushVerdicts()

	var got []sentVerdict
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(fds[1], buf, unix.MSG_DONTWAIT)
		if err != nil {
			break
		}
		got = append(got, parseVerdicts(t, buf[:n])...)
	}
	covered := 100 // first id not yet given a verdict
	for _, v := range got {
		if v.queue != 7 || v.family != unix.AF_INET || v.ver != unix.NFNETLINK_V0 || v.nlFlags != unix.NLM_F_REQUEST {
			t.Errorf("header: %+v", v)
		}
		if int(v.id) < covered {
			t.Fatalf("verdict for id %d after id %d was covered: out of order", v.id, covered-1)
		}
		from := covered
		if !v.batch && int(v.id) != covered {
			t.Fatalf("individual verdict for %d leaves %d..%d without one", v.id, covered, v.id-1)
		}
		for id := from; id <= int(v.id); id++ {
			s := seq[id-100]
			if uint32(s.verdict) != v.verdict || s.hasMark != v.hasMark || s.mark != v.mark {
				t.Errorf("id %d wants verdict %d mark %#x/%v, got %+v", id, s.verdict, s.mark, s.hasMark, v)
			}
		}
		covered = int(v.id) + 1
	}
	if covered != 100+len(seq) {
		t.Errorf("verdicts cover up to id %d, want %d", covered-1, 100+len(seq)-1)
	}
	if len(got) >= len(seq) {
		t.Errorf("%d messages for %d packets: nothing batched", len(got), len(seq))
	}
	t.Logf("%d packets, %d verdict messages", len(seq), len(got))

	// The verdict path allocates nothing.
	id := uint32(1000)
	if a := testing.AllocsPerRun(200, func() {
		w.give(id, nfqueue.NfAccept, 0x40000000, true)
		w.give(id+1, nfqueue.NfDrop, 0, false)
		w.flushVerdicts()
		id += 2
	}); a != 0 {
		t.Errorf("give allocates %.1f times per pair", a)
	}
}

func TestMarkApply(t *testing.T) {
	for _, c := range []struct {
		m        Mark
		old, new uint32
	}{
		{Mark{0x40000000, 0x40000000}, 0x20000000, 0x60000000},
		{Mark{0x40000000, 0x40000000}, 0x60000011, 0x60000011},
		{Mark{0, 0x40000000}, 0x60000011, 0x20000011},
		{Mark{0x5, 0xff}, 0x123456ff, 0x12345605},
		{Mark{}, 0xdeadbeef, 0xdeadbeef},
	} {
		if got := c.m.Apply(c.old); got != c.new {
			t.Errorf("%+v.Apply(%#x) = %#x, want %#x", c.m, c.old, got, c.new)
		}
		if unpackMark(c.m.pack()) != c.m {
			t.Errorf("pack/unpack %+v", c.m)
		}
	}
}

// TestAcceptMark: MarkAccept/MarkDrop replace the mark whole (their old
// meaning), then the judged bits apply; with neither, the packet's own mark
// keeps its other bits.
func TestAcceptMark(t *testing.T) {
	w := New(Config{Queue: 1, Judged: Mark{0x40000000, 0x40000000}}, nil, Options{})
	if m, has := w.acceptMark(0x20000011, 0); !has || m != 0x60000011 {
		t.Errorf("judged only: %#x %v", m, has)
	}
	if m, has := w.acceptMark(0x20000011, packMark(ptr(0x7))); !has || m != 0x40000007 {
		t.Errorf("mark_accept 7 + judged: %#x %v", m, has)
	}
	w.SetJudged(Mark{})
	if m, has := w.acceptMark(0x20000011, 0); has || m != 0x20000011 {
		t.Errorf("no marks: %#x %v", m, has)
	}
	if m, has := w.acceptMark(0x20000011, packMark(ptr(0))); !has || m != 0 {
		t.Errorf("mark_accept 0 (set): %#x %v", m, has)
	}
	// VALUE/MASK keeps the packet's other bits.
	if m, has := w.acceptMark(0x20000011, packMark(&Mark{Value: 0x500, Mask: 0xf00})); !has || m != 0x20000511 {
		t.Errorf("mark_accept 0x500/0xf00: %#x %v", m, has)
	}
}

func ptr(v uint32) *Mark { return &Mark{Value: v, Mask: 0xffffffff} }
