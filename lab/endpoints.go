package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Pair is an established connection between a Go client in the client
// namespace and a Go server in the server namespace.
type Pair struct {
	C, S         net.Conn
	CAddr, SAddr netip.AddrPort // the client's and the server's address:port
}

// serverAddr is the server's address in the family asked for.
func serverAddr(v6 bool) netip.Addr {
	if v6 {
		return ServerV6
	}
	return ServerV4
}

// clientDialer bounds the client's receive buffer, so that its receive
// window stays far below the spacing of the lab's reset spray.
func clientDialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 256<<10)
			})
			return errors.Join(err, serr)
		},
	}
}

// NewPair connects the client to a fresh listener on the server.
func (t *Topology) NewPair(ctx context.Context, v6 bool) (*Pair, error) {
	l, err := t.Listen(Server, "tcp", netip.AddrPortFrom(serverAddr(v6), 0).String())
	if err != nil {
		return nil, err
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := t.Dial(ctx, Client, clientDialer(5*time.Second), "tcp", l.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("client connect to %v: %w", l.Addr(), err)
	}
	var s net.Conn
	select {
	case s = <-accepted:
	case <-ctx.Done():
	}
	if s == nil {
		c.Close()
		return nil, fmt.Errorf("server did not accept on %v", l.Addr())
	}
	return &Pair{C: c, S: s, CAddr: addrPort(c.LocalAddr()), SAddr: addrPort(c.RemoteAddr())}, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Alive does one round trip client -> server -> client within 2 s.
func (p *Pair) Alive() error {
	dl := time.Now().Add(2 * time.Second)
	p.C.SetDeadline(dl)
	p.S.SetDeadline(dl)
	defer p.C.SetDeadline(time.Time{})
	defer p.S.SetDeadline(time.Time{})
	msg := []byte("ping")
	if _, err := p.C.Write(msg); err != nil {
		return fmt.Errorf("client write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(p.S, buf); err != nil {
		return fmt.Errorf("server read: %w", err)
	}
	if _, err := p.S.Write(buf); err != nil {
		return fmt.Errorf("server write: %w", err)
	}
	if _, err := io.ReadFull(p.C, buf); err != nil {
		return fmt.Errorf("client read: %w", err)
	}
	if !bytes.Equal(buf, msg) {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// Abort closes the server side with SO_LINGER 0, which sends a genuine
// reset (RFC 9293 3.10.4 ABORT), and reports what the client then sees
// within 2 s.
func (p *Pair) Abort() error {
	if err := p.S.(*net.TCPConn).SetLinger(0); err != nil {
		return err
	}
	p.S.Close()
	p.C.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := p.C.Read(make([]byte, 1))
	return err
}

// Close closes both ends.
func (p *Pair) Close() {
	p.C.Close()
	p.S.Close()
}

// Transfer is a paced bulk transfer from the server to the client whose
// content the client checks.
type Transfer struct {
	Pair
	size     int
	received atomic.Int64
	stall    atomic.Int64 // the longest wait between two reads that returned data, in ns
	done     chan struct{}
	err      error // valid after done
	intact   bool
}

// StartTransfer sends size bytes from the server to the client over about
// dur, in 32 KiB chunks, so that an attack can land in the middle.
func (t *Topology) StartTransfer(ctx context.Context, v6 bool, size int, dur time.Duration) (*Transfer, error) {
	p, err := t.NewPair(ctx, v6)
	if err != nil {
		return nil, err
	}
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{'r', 's', 't', 'g', 'u', 'a', 'r', 'd'})
	r.Read(data)
	want := sha256.Sum256(data)
	tr := &Transfer{Pair: *p, size: size, done: make(chan struct{})}
	const chunk = 32 << 10
	steps := max(1, size/chunk)
	pause := dur / time.Duration(steps)
	go func() {
		defer p.S.Close()
		for off := 0; off < size; off += chunk {
			if _, err := p.S.Write(data[off:min(off+chunk, size)]); err != nil {
				return
			}
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer close(tr.done)
		defer p.C.Close()
		p.C.SetReadDeadline(time.Now().Add(dur + 10*time.Second))
		h := sha256.New()
		buf := make([]byte, 64<<10)
		var last time.Time
		for {
			n, err := p.C.Read(buf)
			if n > 0 {
				now := time.Now()
				if !last.IsZero() && int64(now.Sub(last)) > tr.stall.Load() {
					tr.stall.Store(int64(now.Sub(last)))
				}
				last = now
			}
			h.Write(buf[:n])
			tr.received.Add(int64(n))
			if err == io.EOF {
				break
			}
			if err != nil {
				tr.err = err
				return
			}
		}
		tr.intact = bytes.Equal(h.Sum(nil), want[:]) && tr.received.Load() == int64(size)
	}()
	return tr, nil
}

// WaitProgress waits until at least frac of the data has arrived.
func (tr *Transfer) WaitProgress(ctx context.Context, frac float64) error {
	for tr.received.Load() < int64(frac*float64(tr.size)) {
		select {
		case <-tr.done:
			return fmt.Errorf("transfer ended after %d of %d bytes: %v", tr.received.Load(), tr.size, tr.err)
		case <-ctx.Done():
			return fmt.Errorf("transfer stalled at %d of %d bytes: %w", tr.received.Load(), tr.size, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// LongestStall is the longest the client waited for data between two reads
// that returned some, so far.
func (tr *Transfer) LongestStall() time.Duration { return time.Duration(tr.stall.Load()) }

// Received is the number of bytes the client has read so far.
func (tr *Transfer) Received() int64 { return tr.received.Load() }

// Wait waits for the end of the transfer and describes it: "survived" when
// every byte arrived intact (SHA-256), else what broke it.
func (tr *Transfer) Wait() string {
	<-tr.done
	switch {
	case tr.err != nil:
		return describeErr(tr.err)
	case !tr.intact:
		return fmt.Sprintf("corrupted (%d of %d bytes)", tr.received.Load(), tr.size)
	}
	return OutcomeSurvived
}

// Outcomes of a victim's connection.
const (
	OutcomeSurvived    = "survived"
	OutcomeReset       = "reset"
	OutcomeRefused     = "refused"
	OutcomeEstablished = "established"
	OutcomeTimeout     = "timeout"
)

// describeErr names what a socket error means for the connection.
func describeErr(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return OutcomeSurvived
	case errors.Is(err, syscall.ECONNRESET):
		return OutcomeReset
	case errors.Is(err, syscall.ECONNREFUSED):
		return OutcomeRefused
	case errors.As(err, &ne) && ne.Timeout():
		return OutcomeTimeout
	case errors.Is(err, io.EOF):
		return "closed"
	}
	return "failed: " + err.Error()
}
