package lab

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
)

// ForgedTTL is the TTL (IPv4) or hop limit (IPv6) of every packet the lab
// crafts. The gateway decrements it once, so the victim's counting rule
// matches DeliveredTTL: a forged packet is told apart from the real
// endpoints' (which start at 64) without touching its TCP fields.
const (
	ForgedTTL    = 200
	DeliveredTTL = ForgedTTL - 1
)

// Segment describes one crafted TCP segment, field for field.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    packet.Flags // including packet.Reserved bits and packet.AE
	Window   uint16
	TTL      uint8 // ForgedTTL if zero
	Options  []byte
	Payload  []byte
}

// Bytes returns the full IP packet with correct checksums
// (craft.TCP does the encoding).
func (s Segment) Bytes() ([]byte, error) {
	ttl := s.TTL
	if ttl == 0 {
		ttl = ForgedTTL
	}
	b, err := craft.TCP{
		Src: s.Src, Dst: s.Dst, Seq: s.Seq, Ack: s.Ack, Flags: s.Flags,
		Window: s.Window, TTL: ttl, ID: 0x5247, Options: s.Options, Payload: s.Payload,
	}.Build()
	if err != nil {
		return nil, fmt.Errorf("forge %v -> %v: %w", s.Src, s.Dst, err)
	}
	return b, nil
}

// Injector sends crafted IP packets from a namespace through raw sockets
// (IPPROTO_RAW, which implies IP_HDRINCL: the kernel sends our header as is,
// source address included, and routes by its destination).
type Injector struct {
	fd4, fd6 int
}

// NewInjector opens raw IPv4 and IPv6 sockets inside h's namespace.
func (t *Topology) NewInjector(h Host) (*Injector, error) {
	in := &Injector{fd4: -1, fd6: -1}
	err := t.Do(h, func() error {
		var err error
		if in.fd4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw IPv4 socket in %s: %w", t.NS(h), err)
		}
		if in.fd6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
			return fmt.Errorf("raw IPv6 socket in %s: %w", t.NS(h), err)
		}
		return nil
	})
	if err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// Send crafts s and sends it.
func (in *Injector) Send(s Segment) error {
	b, err := s.Bytes()
	if err != nil {
		return err
	}
	return in.SendRaw(b, s.Dst.Addr().Unmap())
}

// SendRaw sends a complete IP packet to dst.
func (in *Injector) SendRaw(b []byte, dst netip.Addr) error {
	var err error
	if dst.Is4() {
		err = unix.Sendto(in.fd4, b, 0, &unix.SockaddrInet4{Addr: dst.As4()})
	} else {
		err = unix.Sendto(in.fd6, b, 0, &unix.SockaddrInet6{Addr: dst.As16()})
	}
	if err != nil {
		return fmt.Errorf("send %d-byte packet to %v: %w", len(b), dst, err)
	}
	return nil
}

// Close closes the sockets.
func (in *Injector) Close() error {
	for _, fd := range []*int{&in.fd4, &in.fd6} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return nil
}
