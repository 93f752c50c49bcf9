package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/packet"
)

// Seen is a TCP segment a Sniffer observed.
type Seen struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    packet.Flags
	Window   uint16
	Len      uint32 // payload length
	TTL      uint8
	Out      bool // sent by this host (else received)
	Other    bool // received but addressed to another host's MAC (a flooded frame)
	// At is when the interface sent or received it: the kernel's
	// timestamp (SO_TIMESTAMPNS), the same clock in every namespace.
	At time.Time
}

// End is SEG.SEQ + SEG.LEN (SYN and FIN count one).
func (s Seen) End() uint32 {
	n := s.Seq + s.Len
	if s.Flags.Has(packet.SYN) {
		n++
	}
	if s.Flags.Has(packet.FIN) {
		n++
	}
	return n
}

type flowDir struct{ src, dst netip.AddrPort }

// Sniffer watches the TCP segments an interface of a namespace sends and
// receives (an AF_PACKET socket), so that the lab can learn what a
// scenario allows it to know: ports, and for "in window" attacks the real
// sequence numbers. A blind attacker would not have this.
type Sniffer struct {
	fd int

	mu      sync.Mutex
	highest map[flowDir]Seen // per direction, the segment with the highest End
	waiters []*waiter
	taps    []*tap
	closed  bool
	done    chan struct{}
}

type waiter struct {
	pred func(Seen) bool
	ch   chan Seen
}

type tap struct {
	pred func(Seen) bool
	fn   func(Seen)
}

// NewSniffer starts capturing on dev inside h's namespace.
func (t *Topology) NewSniffer(h Host, dev string) (*Sniffer, error) {
	s := &Sniffer{fd: -1, highest: map[flowDir]Seen{}, done: make(chan struct{})}
	err := t.Do(h, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return fmt.Errorf("sniffer in %s: %w", t.NS(h), err)
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket in %s: %w", t.NS(h), err)
		}
		s.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind packet socket to %s in %s: %w", dev, t.NS(h), err)
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return fmt.Errorf("SO_TIMESTAMPNS on the packet socket in %s: %w", t.NS(h), err)
		}
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	})
	if err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		return nil, err
	}
	go s.loop()
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *Sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, 256) // headers are enough
	oob := make([]byte, unix.CmsgSpace(16))
	var p packet.Parsed
	for {
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		n, oobn, _, from, err := unix.Recvmsg(s.fd, buf, oob, unix.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || n <= 0 {
			continue
		}
		b := buf[:min(n, len(buf))]
		packet.Decode(b, n, &p)
		if p.Kind != packet.KindTCP {
			continue
		}
		seen := Seen{
			Src: p.SrcAddrPort(), Dst: p.DstAddrPort(),
			Seq: uint32(p.Seq), Ack: uint32(p.Ack), Flags: p.Flags,
			Window: p.Window, Len: p.PayloadLen, TTL: ttlOf(b),
			Out: ll.Pkttype == unix.PACKET_OUTGOING, Other: ll.Pkttype == unix.PACKET_OTHERHOST,
			At: stampOf(oob[:oobn]),
		}
		s.record(seen)
	}
}

// stampOf returns the SCM_TIMESTAMPNS time in the control messages oob,
// or now if there is none.
func stampOf(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
				return time.Unix(int64(binary.NativeEndian.Uint64(m.Data)), int64(binary.NativeEndian.Uint64(m.Data[8:])))
			}
		}
	}
	return time.Now()
}

func ttlOf(b []byte) uint8 {
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		return b[8]
	case len(b) >= 40 && b[0]>>4 == 6:
		return b[7]
	}
	return 0
}

func (s *Sniffer) record(seen Seen) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := flowDir{seen.Src, seen.Dst}
	if h, ok := s.highest[k]; !ok || int32(seen.End()-h.End()) >= 0 || seen.Flags.Has(packet.SYN) {
		s.highest[k] = seen
	}
	for _, tp := range s.taps {
		if tp.pred(seen) {
			tp.fn(seen)
		}
	}
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if w.pred(seen) {
			w.ch <- seen
			continue
		}
		kept = append(kept, w)
	}
	s.waiters = kept
}

// Highest returns the segment from src to dst with the highest End seen so
// far (for src's next sequence number as its peer sees it).
func (s *Sniffer) Highest(src, dst netip.AddrPort) (Seen, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.highest[flowDir{src, dst}]
	return h, ok
}

// Tap calls fn, on the sniffer's goroutine and at once, for every segment
// seen from now on for which pred is true, until the returned stop is
// called: an observer on the path that acts on what it sees (fn must not
// call the sniffer's methods).
func (s *Sniffer) Tap(pred func(Seen) bool, fn func(Seen)) (stop func()) {
	tp := &tap{pred: pred, fn: fn}
	s.mu.Lock()
	s.taps = append(s.taps, tp)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.taps {
			if x == tp {
				s.taps = append(s.taps[:i], s.taps[i+1:]...)
				return
			}
		}
	}
}

// Wait returns the first segment seen from now on for which pred is true.
func (s *Sniffer) Wait(ctx context.Context, pred func(Seen) bool) (Seen, error) {
	w := s.Expect(pred)
	return w.Wait(ctx)
}

// Expectation is a registered Wait, so that the wait can be armed before
// the action that triggers the segment.
type Expectation struct {
	s *Sniffer
	w *waiter
}

// Expect arms a wait for the first segment, from now on, for which pred is
// true.
func (s *Sniffer) Expect(pred func(Seen) bool) *Expectation {
	w := &waiter{pred: pred, ch: make(chan Seen, 1)}
	s.mu.Lock()
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	return &Expectation{s, w}
}

// Wait waits for the expected segment.
func (e *Expectation) Wait(ctx context.Context) (Seen, error) {
	select {
	case seen := <-e.w.ch:
		return seen, nil
	case <-ctx.Done():
		e.s.mu.Lock()
		for i, w := range e.s.waiters {
			if w == e.w {
				e.s.waiters = append(e.s.waiters[:i], e.s.waiters[i+1:]...)
				break
			}
		}
		e.s.mu.Unlock()
		select {
		case seen := <-e.w.ch:
			return seen, nil
		default:
		}
		return Seen{}, fmt.Errorf("segment not seen: %w", ctx.Err())
	}
}

// Close stops the capture.
func (s *Sniffer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	<-s.done
	return unix.Close(s.fd)
}
