package lab

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Delayer holds a host's outgoing SYN-ACKs from one port back for a fixed
// time before they leave: an NFQUEUE rule in the host's OUTPUT chain and a
// consumer in the lab that accepts each queued packet after the delay. It
// stands in for a server farther away than an injector near the client
// (no netem on the lab's machines). The rule has --queue-bypass, so
// SYN-ACKs flow undelayed if the consumer is gone.
type Delayer struct {
	t    *Topology
	h    Host
	rule []string
	nf   *nfqueue.Nfqueue
	stop context.CancelFunc

	delay   time.Duration
	max     int64 // packets delayed at most; later ones are accepted at once
	queued  atomic.Int64
	pending sync.WaitGroup
	errs    atomic.Int64
	closed  sync.Once
	err     error // Close's, after closed
}

// delayQueue is the Delayer's queue number, in the host's namespace (queue
// numbers are per network namespace, so it never meets the guard's).
const delayQueue = 7

// NewDelayer delays h's SYN-ACKs from port by delay, at most max of them.
func (t *Topology) NewDelayer(h Host, port uint16, delay time.Duration, max int) (_ *Delayer, err error) {
	d := &Delayer{t: t, h: h, delay: delay, max: int64(max)}
	err = t.Do(h, func() error {
		var err error
		d.nf, err = nfqueue.Open(&nfqueue.Config{
			NfQueue:      delayQueue,
			MaxPacketLen: 64, // the packet id is all it needs
			MaxQueueLen:  256,
			Copymode:     nfqueue.NfQnlCopyPacket,
			AfFamily:     unix.AF_UNSPEC,
			WriteTimeout: time.Second,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("SYN-ACK delayer: open NFQUEUE %d in %s: %w", delayQueue, t.NS(h), err)
	}
	defer func() {
		if err != nil {
			d.nf.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	err = d.nf.RegisterWithErrorFunc(ctx, d.hook, func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		var oe *netlink.OpError
		if errors.As(err, &oe) && oe.Timeout() {
			return 0
		}
		d.errs.Add(1)
		return 0
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("SYN-ACK delayer: bind NFQUEUE %d in %s: %w", delayQueue, t.NS(h), err)
	}
	rule := []string{"OUTPUT", "-p", "tcp", "--sport", strconv.Itoa(int(port)), "--tcp-flags", "SYN,ACK", "SYN,ACK",
		"-j", "NFQUEUE", "--queue-num", strconv.Itoa(delayQueue), "--queue-bypass"}
	for i, ipt := range []string{"iptables", "ip6tables"} {
		if _, err := t.Exec(h, ipt, append([]string{"-I"}, rule...)...); err != nil {
			if i > 0 {
				t.Exec(h, "iptables", append([]string{"-D"}, rule...)...)
			}
			cancel()
			return nil, err
		}
	}
	d.rule = rule
	return d, nil
}

func (d *Delayer) hook(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	id := *a.PacketID
	if d.queued.Add(1) > d.max {
		d.verdict(id)
		return 0
	}
	d.pending.Add(1)
	time.AfterFunc(d.delay, func() {
		defer d.pending.Done()
		d.verdict(id)
	})
	return 0
}

func (d *Delayer) verdict(id uint32) {
	if d.nf.SetVerdict(id, nfqueue.NfAccept) != nil {
		d.errs.Add(1)
	}
}

// Delayed is the number of SYN-ACKs queued so far.
func (d *Delayer) Delayed() int { return int(d.queued.Load()) }

// Close removes the rule, lets the SYN-ACKs still waiting go and unbinds
// the queue; it reports verdicts or receives that failed. Later calls
// return the first one's error.
func (d *Delayer) Close() error {
	d.closed.Do(func() { d.err = d.close() })
	return d.err
}

func (d *Delayer) close() error {
	var errs []error
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if _, err := d.t.Exec(d.h, ipt, append([]string{"-D"}, d.rule...)...); err != nil {
			errs = append(errs, err)
		}
	}
	d.pending.Wait()
	d.stop()
	errs = append(errs, d.nf.Close())
	if n := d.errs.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("SYN-ACK delayer: %d netlink errors", n))
	}
	return errors.Join(errs...)
}
