package nfq

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/events"
	"github.com/rstguard/rstguard/policy"
)

// nlPkt describes a packet message as nfqnl_build_packet_message writes it.
type nlPkt struct {
	id      uint32
	mark    uint32 // sent only when not 0, like the kernel
	payload []byte // nil: no NFQA_PAYLOAD
	capLen  uint32 // sent when not 0
	skbInfo uint32 // sent when not 0
	noHdr   bool   // leave out NFQA_PACKET_HDR
	netOrd  bool   // set NLA_F_NET_BYTEORDER on the attribute types, as the kernel does for be32s
}

// nlPacket builds the message, with attributes in the kernel's order and an
// interface index attribute the worker ignores.
func nlPacket(p nlPkt) []byte {
	b := make([]byte, nlmsgHdrLen+nfgenHdrLen, 256+len(p.payload))
	attr := func(typ uint16, v []byte) {
		if p.netOrd {
			typ |= 0x4000
		}
		var h [4]byte
		binary.NativeEndian.PutUint16(h[:], uint16(nlaHdrLen+len(v)))
		binary.NativeEndian.PutUint16(h[2:], typ)
		b = append(b, h[:]...)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	if !p.noHdr {
		hdr := binary.BigEndian.AppendUint32(nil, p.id)
		hdr = binary.BigEndian.AppendUint16(hdr, 0x0800)
		attr(nfqaPacketHdr, append(hdr, 2)) // hook NF_INET_FORWARD
	}
	if p.mark != 0 {
		attr(nfqaMark, be32(p.mark))
	}
	attr(5, be32(2)) // NFQA_IFINDEX_INDEV
	if p.skbInfo != 0 {
		attr(nfqaSkbInfo, be32(p.skbInfo))
	}
	if p.capLen != 0 {
		attr(nfqaCapLen, be32(p.capLen))
	}
	if p.payload != nil {
		attr(nfqaPayload, p.payload)
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], nfnlSubsysQueueMsg<<8|nfqnlMsgPkt)
	b[16], b[17] = unix.AF_INET, unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], 3)
	return b
}

// nlError builds an NLMSG_ERROR answering a request with seq.
func nlError(errno int32, seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], nlmsgError)
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen:], uint32(-errno))
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen+4+8:], seq)
	return b
}

func TestParseMsg(t *testing.T) {
	payload := []byte{0x45, 0, 0, 40, 1, 2, 3}
	full := nlPacket(nlPkt{id: 0xfffffffe, mark: 0x20000011, payload: payload, capLen: 1500, skbInfo: skbGSO | skbCsumNotReady})
	for _, c := range []struct {
		name  string
		b     []byte
		trunc bool
		kind  msgKind
		check func(t *testing.T, m *pktMsg, b []byte)
	}{
		{"every attribute", full, false, msgPacket, func(t *testing.T, m *pktMsg, b []byte) {
			if m.id != 0xfffffffe || m.mark != 0x20000011 || m.capLen != 1500 || m.skbInfo != skbGSO|skbCsumNotReady ||
				m.hwProto != 0x0800 || m.hook != 2 || !m.hasPayload || string(b[m.payOff:m.payOff+m.payLen]) != string(payload) {
				t.Errorf("%+v", *m)
			}
		}},
		{"network byte order flag on types", nlPacket(nlPkt{id: 7, mark: 9, payload: payload, netOrd: true}), false, msgPacket, func(t *testing.T, m *pktMsg, b []byte) {
			if m.id != 7 || m.mark != 9 || !m.hasPayload {
				t.Errorf("%+v", *m)
			}
		}},
		{"no mark: 0", nlPacket(nlPkt{id: 1, payload: payload}), false, msgPacket, func(t *testing.T, m *pktMsg, b []byte) {
			if m.mark != 0 || m.capLen != 0 || m.skbInfo != 0 {
				t.Errorf("%+v", *m)
			}
		}},
		{"no payload", nlPacket(nlPkt{id: 1}), false, msgPacket, func(t *testing.T, m *pktMsg, b []byte) {
			if m.hasPayload {
				t.Errorf("%+v", *m)
			}
		}},
		{"no packet id", nlPacket(nlPkt{noHdr: true, payload: payload}), false, msgBad, nil},
		{"header longer than the datagram", full[:len(full)-4], false, msgBad, nil},
		{"truncated: the cut payload is absent", full[:len(full)-4], true, msgPacket, func(t *testing.T, m *pktMsg, b []byte) {
			if m.id != 0xfffffffe || m.hasPayload {
				t.Errorf("%+v", *m)
			}
		}},
		{"shorter than a netlink header", full[:10], false, msgBad, nil},
		{"acknowledgement", nlError(0, 5), false, msgError, func(t *testing.T, m *pktMsg, b []byte) {
			if m.errno != 0 || m.seq != 5 {
				t.Errorf("%+v", *m)
			}
		}},
		{"error", nlError(int32(unix.ENOENT), 0), false, msgError, func(t *testing.T, m *pktMsg, b []byte) {
			if m.errno != int32(unix.ENOENT) || m.seq != 0 {
				t.Errorf("%+v", *m)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var m pktMsg
			if k := parseMsg(c.b, c.trunc, &m); k != c.kind {
				t.Fatalf("kind %d, want %d", k, c.kind)
			}
			if c.check != nil {
				c.check(t, &m, c.b)
			}
		})
	}
	// An attribute whose length runs past the message ends the walk.
	bad := nlPacket(nlPkt{id: 3, payload: payload})
	binary.NativeEndian.PutUint16(bad[len(bad)-12:], 200)
	var m pktMsg
	if k := parseMsg(bad, false, &m); k != msgPacket || m.hasPayload {
		t.Errorf("overlong attribute: kind %d %+v", k, m)
	}
}

// FuzzParseMsg: no input makes the parser panic or hand out a payload
// outside the message.
func FuzzParseMsg(f *testing.F) {
	f.Add(nlPacket(nlPkt{id: 1, mark: 2, payload: []byte{0x45, 0, 0, 20}, capLen: 9, skbInfo: 2}), false)
	f.Add(nlError(2, 1), false)
	f.Add(nlPacket(nlPkt{id: 1, payload: make([]byte, 40)})[:50], true)
	f.Fuzz(func(t *testing.T, b []byte, trunc bool) {
		var m pktMsg
		k := parseMsg(b, trunc, &m)
		if k == msgPacket && m.hasPayload && (m.payOff < nlmsgHdrLen || m.payOff+m.payLen > len(b)) {
			t.Fatalf("payload %d+%d outside %d bytes", m.payOff, m.payLen, len(b))
		}
		if l := msgLen(b, trunc); l < 0 || l > len(b) {
			t.Fatalf("msgLen %d of %d", l, len(b))
		}
	})
}

// burstHarness feeds raw kernel messages to a worker's receive ring, runs
// one burst and returns the verdict messages it sent.
type burstHarness struct {
	w    *Worker
	peer int
	buf  []byte
}

func newBurstHarness(t testing.TB, w *Worker) *burstHarness {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	unix.SetNonblock(fds[0], true)
	unix.SetNonblock(fds[1], true)
	w.fd = fds[0]
	return &burstHarness{w: w, peer: fds[1], buf: make([]byte, 1<<16)}
}

// load copies msgs into the ring as recvmmsg would.
func (h *burstHarness) load(msgs [][]byte) {
	r := &h.w.rx
	for i, m := range msgs {
		n := copy(r.buf[i*r.slot:(i+1)*r.slot], m)
		r.hdrs[i].len = uint32(n)
		r.hdrs[i].hdr.Flags = 0
		if n < len(m) {
			r.hdrs[i].hdr.Flags = unix.MSG_TRUNC
		}
	}
}

// drain reads what the worker sent without allocating.
func (h *burstHarness) drain() int {
	total := 0
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(h.peer), uintptr(unsafe.Pointer(&h.buf[0])), uintptr(len(h.buf)), 0, 0, 0)
		if e != 0 {
			return total
		}
		total += int(n)
	}
}

// run loads msgs, runs one burst and parses the verdicts sent.
func (h *burstHarness) run(t testing.TB, msgs [][]byte) []sentVerdict {
	t.Helper()
	h.load(msgs)
	h.w.burst(len(msgs))
	var got []sentVerdict
	for {
		n, _, err := unix.Recvfrom(h.peer, h.buf, 0)
		if err != nil {
			break
		}
		got = append(got, parseVerdicts(t.(*testing.T), h.buf[:n])...)
	}
	return got
}

// verdictOf expands batch verdicts into one (verdict, mark) per id.
func verdictOf(vs []sentVerdict, first, n uint32) map[uint32]sentVerdict {
	out := map[uint32]sentVerdict{}
	next := first
	for _, v := range vs {
		for id := next; id != v.id+1; id++ {
			if v.batch || id == v.id {
				out[id] = v
			}
		}
		next = v.id + 1
	}
	return out
}

// TestBurstFromRawMessages: raw kernel messages to verdicts, per packet
// class: ids kept, marks preserved with the judged bit, the forged reset
// dropped alone, unjudgeable packets left unmarked, one datagram per burst,
// an error message counted, and no allocation per burst.
func TestBurstFromRawMessages(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	w.lim.set(0, 0)
	establish(t, w)
	w.SetJudged(Mark{0x40000000, 0x40000000})
	h := newBurstHarness(t, w)
	data := tcp4(t, seg{seq: 1001, ack: 5001, ackf: true})
	forged := tcp4(t, seg{fromServer: true, seq: 5001 + 1<<30, rst: true})
	inWindow := tcp4(t, seg{seq: 1001, ack: 5001, ackf: true, payload: 100})
	syn := tcp4(t, seg{seq: 77, syn: true})
	udp := udp4(t)
	type pk struct {
		name    string
		msg     []byte
		verdict uint32
		mark    uint32
		hasMark bool
	}
	first := uint32(0xfffffffc) // ids wrap inside the burst
	cases := []pk{
		{"data ack", nlPacket(nlPkt{id: first, payload: data, capLen: uint32(len(data))}), nfAccept, 0x40000000, true},
		{"data with other mark bits", nlPacket(nlPkt{id: first + 1, payload: inWindow, mark: 0x20000011}), nfAccept, 0x60000011, true},
		{"new SYN", nlPacket(nlPkt{id: first + 2, payload: syn, mark: 0x20000011}), nfAccept, 0x60000011, true},
		{"forged out-of-window reset", nlPacket(nlPkt{id: first + 3, payload: forged, mark: 0x20000000}), nfDrop, 0, false},
		{"udp", nlPacket(nlPkt{id: first + 4, payload: udp, mark: 0x20000000}), nfAccept, 0x60000000, true},
		{"gso data", nlPacket(nlPkt{id: first + 5, payload: data, skbInfo: skbGSO, capLen: 64000, mark: 0x20000000}), nfAccept, 0x60000000, true},
		{"no payload: unjudged", nlPacket(nlPkt{id: first + 6, mark: 0x20000000}), nfAccept, 0, false},
		{"data ack again", nlPacket(nlPkt{id: first + 7, payload: data, mark: 0x20000000}), nfAccept, 0x60000000, true},
	}
	var msgs [][]byte
	for _, c := range cases {
		msgs = append(msgs, c.msg)
	}
	msgs = append(msgs, nlError(int32(unix.ENOENT), 0)) // a verdict the kernel refused earlier
	got := h.run(t, msgs)
	per := verdictOf(got, first, uint32(len(cases)))
	for i, c := range cases {
		id := first + uint32(i)
		v, ok := per[id]
		if !ok {
			t.Errorf("%s (id %#x): no verdict", c.name, id)
			continue
		}
		if v.verdict != c.verdict || v.hasMark != c.hasMark || v.mark != c.mark {
			t.Errorf("%s (id %#x): verdict %d mark %#x/%v, want %d %#x/%v", c.name, id, v.verdict, v.mark, v.hasMark, c.verdict, c.mark, c.hasMark)
		}
	}
	if len(got) >= len(cases) {
		t.Errorf("%d verdict messages for %d packets: nothing batched", len(got), len(cases))
	}
	st := &w.stats
	if st.Unjudged.Load() != 1 || st.GSOPackets.Load() != 1 || st.VerdictErrors.Load() != 1 || st.BadMessages.Load() != 0 {
		t.Errorf("unjudged %d gso %d verdict errors %d bad %d", st.Unjudged.Load(), st.GSOPackets.Load(), st.VerdictErrors.Load(), st.BadMessages.Load())
	}
	if c, _ := st.Latency.Snapshot(); st.Packets.Load() != uint64(len(cases)) || c[len(c)-1] != uint64(len(cases)) {
		t.Errorf("packets %d, latency observations %d, want %d each", st.Packets.Load(), c[len(c)-1], len(cases))
	}

	// Zero allocations per burst, for each class alone and mixed.
	for _, c := range cases {
		one := [][]byte{c.msg}
		if a := testing.AllocsPerRun(100, func() { h.load(one); w.burst(1); h.drain() }); a != 0 {
			t.Errorf("%s: %.1f allocations per burst", c.name, a)
		}
	}
	if a := testing.AllocsPerRun(100, func() { h.load(msgs); w.burst(len(msgs)); h.drain() }); a != 0 {
		t.Errorf("mixed burst: %.1f allocations", a)
	}
}

// TestBurstTruncated: a message cut by MSG_TRUNC is answered (its id is
// intact) without the judged mark.
func TestBurstTruncated(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	w.SetJudged(Mark{0x40000000, 0x40000000})
	h := newBurstHarness(t, w)
	big := nlPacket(nlPkt{id: 42, payload: make([]byte, w.rx.slot+100)})
	got := h.run(t, [][]byte{big})
	if len(got) != 1 || got[0].id != 42 || got[0].verdict != nfAccept || got[0].hasMark {
		t.Fatalf("verdicts %+v", got)
	}
	if w.stats.Truncated.Load() != 1 || w.stats.Unjudged.Load() != 1 {
		t.Errorf("truncated %d unjudged %d", w.stats.Truncated.Load(), w.stats.Unjudged.Load())
	}
}

func udp4(t testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{192, 0, 2, 1}, DstIP: []byte{198, 51, 100, 1}}
	u := &layers.UDP{SrcPort: 5353, DstPort: 53}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, u, gopacket.Payload([]byte("q"))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkBurst: one burst of 64 raw kernel messages (SYNs of new flows,
// data ACKs, out-of-window resets) parsed in place, decided, answered in
// one datagram and read back from a socketpair: the whole per-packet path
// but the recvmmsg itself. ns/packet is the figure to compare with the
// kernel's cost per queued packet.
func BenchmarkBurst(b *testing.B) {
	for _, class := range []string{"established_ack", "mixed", "syn_new_flows"} {
		b.Run(class, func(b *testing.B) {
			w := newTestWorker(b, policy.DefaultConfig(), nil)
			w.lim.set(0, 0)
			establish(b, w)
			w.SetJudged(Mark{0x40000000, 0x40000000})
			h := newBurstHarness(b, w)
			msgs := make([][]byte, maxBurst)
			for i := range msgs {
				var p []byte
				switch {
				case class == "syn_new_flows", class == "mixed" && i%8 == 0:
					p = tcp4(b, seg{seq: uint32(7000 + i), syn: true})
					binary.BigEndian.PutUint16(p[20:], uint16(1024+i)) // a new source port: a new flow
				case class == "mixed" && i%8 == 7:
					p = tcp4(b, seg{fromServer: true, seq: 5001 + 1<<30, rst: true})
				default:
					p = tcp4(b, seg{seq: 1001, ack: 5001, ackf: true})
				}
				msgs[i] = nlPacket(nlPkt{id: uint32(i), payload: p, mark: 0x20000000, capLen: uint32(len(p))})
			}
			b.ReportAllocs()
			id := uint32(0)
			for b.Loop() {
				for i := range msgs {
					binary.BigEndian.PutUint32(msgs[i][24:], id) // NFQA_PACKET_HDR is the first attribute
					id++
				}
				h.load(msgs)
				w.burst(len(msgs))
				h.drain()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/packet")
		})
	}
}

// TestBurstEvents: every dropped packet and every reset decision becomes
// one event record with the packet's fields, without allocating; a full
// ring counts the rest as lost and the verdicts are unchanged.
func TestBurstEvents(t *testing.T) {
	w := newTestWorker(t, policy.DefaultConfig(), nil)
	w.lim.set(0, 0)
	establish(t, w)
	ring := events.NewRing(1024)
	w.SetEvents(ring)
	h := newBurstHarness(t, w)
	data := tcp4(t, seg{seq: 1001, ack: 5001, ackf: true})
	forged := tcp4(t, seg{fromServer: true, seq: 5001 + 1<<30, rst: true})
	msgs := [][]byte{
		nlPacket(nlPkt{id: 1, payload: data}),
		nlPacket(nlPkt{id: 2, payload: forged}),
		nlPacket(nlPkt{id: 3, payload: data}),
		nlPacket(nlPkt{id: 4, payload: forged}),
	}
	got := h.run(t, msgs)
	if v := verdictOf(got, 1, 4); v[2].verdict != nfDrop || v[4].verdict != nfDrop || v[3].verdict != nfAccept {
		t.Fatalf("verdicts %+v", got)
	}
	var r events.Record
	n := 0
	for ring.Pop(&r) {
		n++
		if r.Verdict != policy.Drop || r.Reason != policy.ReasonRSTOutOfWindow || r.Queue != 3 || !r.TCP ||
			r.Seq != 5001+1<<30 || r.TTL != 64 || r.Src.Port() != 80 || !r.Window || r.Time < w.epochNs {
			t.Errorf("event %+v", r)
		}
	}
	if n != 2 {
		t.Errorf("%d events, want 2 (the two forged resets)", n)
	}
	if a := testing.AllocsPerRun(100, func() { h.load(msgs); w.burst(len(msgs)); h.drain(); ring.Pop(&r); ring.Pop(&r) }); a != 0 {
		t.Errorf("%.1f allocations per burst with the event log", a)
	}
	small := events.NewRing(1)
	w.SetEvents(small)
	h.load(msgs)
	w.burst(len(msgs))
	h.drain()
	if small.Lost() != 1 {
		t.Errorf("a ring of 1: lost %d, want 1", small.Lost())
	}
}
