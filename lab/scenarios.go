package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
	"github.com/rstguard/rstguard/ruleset"
)

// Scenarios returns the lab's scenarios in the order they are played (the
// daemon restart last). Each forged packet is sent by the attacker, which
// learns addresses and ports from the endpoints (a real blind attacker
// guesses them) but not the sequence numbers, except where a scenario says
// "in window".
func Scenarios() []Scenario {
	return []Scenario{
		{
			Name:     "blind-rst-out-of-window",
			Expect:   "forged resets dropped; transfer completes intact",
			Run:      func(ctx context.Context, e *Env) (Observation, error) { return blindReset(ctx, e, false, false) },
			CheckOn:  all(delivered(0), droppedByGuard, outcome(OutcomeSurvived)),
			CheckOff: allDelivered,
		},
		{
			Name:     "rst-spray-512",
			Expect:   "none of 512 resets lands; transfer completes",
			Run:      rstSpray,
			CheckOn:  all(delivered(0), droppedByGuard, outcome(OutcomeSurvived)),
			CheckOff: allDelivered,
		},
		{
			Name:     "rst-in-window-window-mode",
			Expect:   "accepted (in window, rst_mode=window); Linux challenge-ACKs it",
			Run:      inWindowReset,
			CheckOn:  all(delivered(1), outcome(OutcomeSurvived)),
			CheckOff: allDelivered,
		},
		{
			Name:     "rst-in-window-exact-mode",
			Expect:   "dropped (rst_mode=exact); a genuine abort still resets",
			Mode:     "exact",
			Run:      inWindowReset,
			CheckOn:  all(delivered(0), droppedByGuard, outcome(OutcomeSurvived+", abort "+OutcomeReset)),
			CheckOff: allDelivered,
		},
		{
			Name:     "syn-answered-rst-wrong-ack",
			Expect:   "forged RST/ACK dropped; connection established",
			Run:      func(ctx context.Context, e *Env) (Observation, error) { return synAnswer(ctx, e, false) },
			CheckOn:  all(delivered(0), droppedByGuard, outcome(OutcomeEstablished)),
			CheckOff: allDelivered,
		},
		{
			Name:     "syn-answered-rst-right-ack",
			Expect:   "accepted (acknowledges the SYN, RFC 9293 3.10.7.3); client sees refused",
			Run:      func(ctx context.Context, e *Env) (Observation, error) { return synAnswer(ctx, e, true) },
			CheckOn:  all(delivered(1), outcome(OutcomeRefused)),
			CheckOff: all(allDelivered, outcome(OutcomeRefused)),
		},
		{
			Name:     "genuine-refused",
			Expect:   "the closed port's reset reaches the client promptly",
			Run:      genuineRefused,
			CheckOn:  all(delivered(0), outcome(OutcomeRefused)),
			CheckOff: outcome(OutcomeRefused),
		},
		{
			Name:     "genuine-abort",
			Expect:   "SO_LINGER 0 reset reaches the client promptly",
			Run:      genuineAbort,
			CheckOn:  all(delivered(0), outcome(OutcomeReset)),
			CheckOff: outcome(OutcomeReset),
		},
		{
			Name:     "ecn-setup-syn",
			Expect:   "connection succeeds; ECE/CWR SYN counted, nothing dropped",
			Run:      ecnSYN,
			CheckOn:  all(outcome(OutcomeEstablished), noDrops, metricAtLeast(1, "rstguard_syn_flagged_total", "flag", "ece"), metricAtLeast(1, "rstguard_syn_flagged_total", "flag", "cwr")),
			CheckOff: outcome(OutcomeEstablished),
		},
		{
			Name:     "reserved-bit-syn",
			Expect:   "server answers SYN-ACK, connection succeeds; counted, nothing dropped",
			Run:      reservedSYN,
			CheckOn:  all(outcome(OutcomeEstablished), noDrops, metricAtLeast(1, "rstguard_syn_flagged_total", "flag", "reserved")),
			CheckOff: outcome(OutcomeEstablished),
		},
		{
			Name:     "tcp-fast-open",
			Expect:   "data on SYN (RFC 7413) succeeds, nothing dropped",
			Run:      fastOpen,
			CheckOn:  all(outcome(OutcomeEstablished), note(noteDataOnSYN), noDrops),
			CheckOff: all(outcome(OutcomeEstablished), note(noteDataOnSYN)),
		},
		{
			Name:     "ipv6-blind-rst",
			Expect:   "forged IPv6 resets dropped; transfer completes intact",
			Run:      func(ctx context.Context, e *Env) (Observation, error) { return blindReset(ctx, e, true, false) },
			CheckOn:  all(delivered(0), droppedByGuard, outcome(OutcomeSurvived)),
			CheckOff: allDelivered,
		},
		{
			Name:     "reset-during-flood",
			Expect:   "forged resets during a SYN flood not delivered; both transfers intact",
			Run:      floodReset,
			CheckOn:  all(delivered(0), outcome(OutcomeSurvived)),
			CheckOff: allDelivered,
		},
		{
			Name:      "on-path-injection",
			Expect:    "exact-seq injected resets dropped (hold); responses intact",
			Injection: "hold",
			Run:       onPathInjection,
			CheckOn:   all(delivered(0), droppedByGuard, injectedDropped, outcome(OutcomeSurvived), allAttempts(attemptIntact), genuineDelivered(genuineMaxDelay)),
			CheckOff:  all(allDelivered, allAttempts(OutcomeReset), genuineDelivered(0)),
		},
		{
			Name:      "injected-refusal",
			Expect:    "injected refusals dropped (hold); connections established",
			Injection: "hold",
			Run:       injectedRefusal,
			CheckOn:   all(delivered(0), droppedByGuard, injectedDropped, outcome(OutcomeEstablished), allAttempts(OutcomeEstablished), genuineDelivered(genuineMaxDelay)),
			CheckOff:  all(allDelivered, allAttempts(OutcomeRefused), genuineDelivered(0)),
		},
		{
			Name:     "daemon-restart",
			Expect:   "transfer survives the restart (bypass, pickup); later forged resets dropped",
			Run:      func(ctx context.Context, e *Env) (Observation, error) { return blindReset(ctx, e, false, true) },
			CheckOn:  all(delivered(0), droppedByGuard, outcome(OutcomeSurvived), note(""), metricAtLeast(1, "rstguard_packets_total", "reason", "pickup", "verdict", "accept")),
			CheckOff: allDelivered,
		},
	}
}

// Checks.

func all(cs ...func(Observation) error) func(Observation) error {
	return func(o Observation) error {
		var errs []error
		for _, c := range cs {
			errs = append(errs, c(o))
		}
		return errors.Join(errs...)
	}
}

func delivered(n int) func(Observation) error {
	return func(o Observation) error {
		if o.Delivered != n {
			return fmt.Errorf("%d of %d forged packets delivered, want %d", o.Delivered, o.Forged, n)
		}
		return nil
	}
}

// allDelivered shows the attack is real: without the guard every forged
// packet reached the victim.
func allDelivered(o Observation) error {
	if o.Forged == 0 || o.Delivered != o.Forged {
		return fmt.Errorf("%d of %d forged packets delivered, want all (the attack must be real)", o.Delivered, o.Forged)
	}
	return nil
}

func outcome(want string) func(Observation) error {
	return func(o Observation) error {
		if o.Outcome != want {
			return fmt.Errorf("outcome %q, want %q", o.Outcome, want)
		}
		return nil
	}
}

func note(want string) func(Observation) error {
	return func(o Observation) error {
		if o.Note != want {
			return fmt.Errorf("note %q, want %q", o.Note, want)
		}
		return nil
	}
}

// droppedByGuard checks that every forged packet that did not reach the
// victim was dropped by the guard's decision (counted in
// rstguard_packets_total with verdict drop), not lost on the way (a full
// queue, a socket overrun).
func droppedByGuard(o Observation) error {
	if lost := float64(o.Forged - o.Delivered); o.Drops() < lost {
		return fmt.Errorf("%v forged packets not delivered but the guard counted %v drops: the rest were lost elsewhere (queue overflow?)", lost, o.Drops())
	}
	return nil
}

func noDrops(o Observation) error {
	if d := o.Drops(); d != 0 {
		return fmt.Errorf("the guard dropped %v packets", d)
	}
	return nil
}

func metricAtLeast(n float64, name string, labels ...string) func(Observation) error {
	return func(o Observation) error {
		if v := o.Metric(name, labels...); v < n {
			return fmt.Errorf("%s rose by %v, want at least %v", seriesKey(name, labels...), v, n)
		}
		return nil
	}
}

// Scenarios.

// forgedFromServer is a reset claiming to come from the server side of p.
func forgedFromServer(p *Pair, seq, ack uint32, flags packet.Flags) Segment {
	return Segment{Src: p.SAddr, Dst: p.CAddr, Seq: seq, Ack: ack, Flags: flags}
}

// rcvNxt is the client's RCV.NXT as its own interface saw the server's
// segments: what an "in window" scenario may know. The sniffer runs
// asynchronously, so it waits up to a second for the first segment.
func (e *Env) rcvNxt(ctx context.Context, p *Pair) (uint32, error) {
	deadline := time.Now().Add(time.Second)
	for {
		if h, ok := e.ClientSniff.Highest(p.SAddr, p.CAddr); ok {
			return h.End(), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("no segment from %v to %v seen", p.SAddr, p.CAddr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blindReset sends 8 resets far outside the window (RCV.NXT + 2^31 and
// nearby: the half of the sequence space no window can reach) into a paced
// transfer. With restart, the guard is stopped and started again during the
// transfer first.
func blindReset(ctx context.Context, e *Env, v6, restart bool) (Observation, error) {
	size, dur := 2<<20, 600*time.Millisecond
	if restart {
		size, dur = 4<<20, 2500*time.Millisecond
	}
	tr, err := e.T.StartTransfer(ctx, v6, size, dur)
	if err != nil {
		return Observation{}, err
	}
	defer tr.Close()
	if err := tr.WaitProgress(ctx, 0.2); err != nil {
		return Observation{}, err
	}
	var note string
	if restart && e.Guard {
		if err := e.StopDaemon(); err != nil {
			return Observation{}, err
		}
		// --queue-bypass: the transfer flows while no daemon is bound.
		at := tr.received.Load()
		time.Sleep(300 * time.Millisecond)
		if tr.received.Load() == at {
			note = "transfer stalled while the guard was down"
		}
		if err := e.StartDaemon(ctx, e.Mode, e.Injection); err != nil {
			return Observation{}, err
		}
		// Let the guard pick the flow up from both directions.
		time.Sleep(300 * time.Millisecond)
	}
	nxt, err := e.rcvNxt(ctx, &tr.Pair)
	if err != nil {
		return Observation{}, err
	}
	const n = 8
	for i := range n {
		if err := e.Attacker.Send(forgedFromServer(&tr.Pair, nxt+1<<31+uint32(i)*100_000, 0, packet.RST)); err != nil {
			return Observation{}, err
		}
	}
	return Observation{Forged: n, Outcome: tr.Wait(), Note: note}, nil
}

// rstSpray sends 512 resets spaced 2^32/512 apart across the whole sequence
// space. The comb is placed half a step from the client's RCV.NXT so that no
// reset falls inside its receive window (bounded at 256 KiB of buffer, far
// below the 4 MiB half step): the outcome is deterministic. A real blind
// attacker lands one reset in the window in about wnd/8 MiB of attempts;
// rst-in-window-* shows what happens then.
func rstSpray(ctx context.Context, e *Env) (Observation, error) {
	tr, err := e.T.StartTransfer(ctx, false, 2<<20, 600*time.Millisecond)
	if err != nil {
		return Observation{}, err
	}
	defer tr.Close()
	if err := tr.WaitProgress(ctx, 0.2); err != nil {
		return Observation{}, err
	}
	nxt, err := e.rcvNxt(ctx, &tr.Pair)
	if err != nil {
		return Observation{}, err
	}
	const n = 512
	const step = 1 << 32 / n
	for i := range uint32(n) {
		if err := e.Attacker.Send(forgedFromServer(&tr.Pair, nxt+step/2+i*step, 0, packet.RST)); err != nil {
			return Observation{}, err
		}
	}
	return Observation{Forged: n, Outcome: tr.Wait()}, nil
}

// inWindowReset sends one reset inside the client's receive window but not
// at RCV.NXT (RCV.NXT + 1000) on an idle connection, checks the connection
// still works (modern Linux answers with a challenge ACK, RFC 5961 3.2),
// and, in exact mode, that a genuine abort still resets the client.
func inWindowReset(ctx context.Context, e *Env) (Observation, error) {
	p, err := e.T.NewPair(ctx, false)
	if err != nil {
		return Observation{}, err
	}
	defer p.Close()
	if err := p.Alive(); err != nil {
		return Observation{}, fmt.Errorf("before the attack: %w", err)
	}
	nxt, err := e.rcvNxt(ctx, p)
	if err != nil {
		return Observation{}, err
	}
	if err := e.Attacker.Send(forgedFromServer(p, nxt+1000, 0, packet.RST)); err != nil {
		return Observation{}, err
	}
	time.Sleep(50 * time.Millisecond)
	obs := Observation{Forged: 1, Outcome: describeErr(p.Alive())}
	if e.Mode == "exact" || !e.Guard {
		// The guard's exact mode must still let the real abort through.
		if obs.Outcome == OutcomeSurvived {
			obs.Outcome += ", abort " + describeErr(p.Abort())
		}
	}
	return obs, nil
}

// synAnswer races the server's SYN-ACK with a forged RST/ACK: a rule in the
// server drops the client's first SYN, the attacker answers it (with the
// SYN's ISN+1 as ACK when right, else ISN+1+2^31), then the rule goes and
// the client's retransmitted SYN (1 s later, RFC 6298 initial RTO) reaches
// the server.
func synAnswer(ctx context.Context, e *Env, right bool) (Observation, error) {
	l, err := e.T.Listen(Server, "tcp", netip.AddrPortFrom(ServerV4, 0).String())
	if err != nil {
		return Observation{}, err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	sap := addrPort(l.Addr())
	port := strconv.Itoa(int(sap.Port()))
	rule := []string{"INPUT", "-p", "tcp", "--dport", port, "--syn", "-j", "DROP"}
	if _, err := e.T.Exec(Server, "iptables", append([]string{"-I"}, rule...)...); err != nil {
		return Observation{}, err
	}
	ruleUp := true
	defer func() {
		if ruleUp {
			e.T.Exec(Server, "iptables", append([]string{"-D"}, rule...)...)
		}
	}()
	synSeen := e.ClientSniff.Expect(func(s Seen) bool {
		return s.Out && s.Dst == sap && s.Flags&(packet.SYN|packet.ACK) == packet.SYN
	})
	dialed := make(chan error, 1)
	go func() {
		c, err := e.T.Dial(ctx, Client, clientDialer(6*time.Second), "tcp", sap.String())
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	syn, err := synSeen.Wait(wctx)
	cancel()
	if err != nil {
		return Observation{}, fmt.Errorf("client SYN: %w", err)
	}
	ack := syn.Seq + 1
	if !right {
		ack += 1 << 31
	}
	if err := e.Attacker.Send(Segment{Src: sap, Dst: syn.Src, Seq: 0, Ack: ack, Flags: packet.RST | packet.ACK}); err != nil {
		return Observation{}, err
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := e.T.Exec(Server, "iptables", append([]string{"-D"}, rule...)...); err != nil {
		return Observation{}, err
	}
	ruleUp = false
	err = <-dialed
	out := describeErr(err)
	if err == nil {
		out = OutcomeEstablished
	}
	return Observation{Forged: 1, Outcome: out}, nil
}

// genuineRefused connects to a closed port: the server's reset (RFC 9293
// 3.10.7.1) must reach the client, which then fails at once instead of
// retrying its SYN until the 3 s timeout.
func genuineRefused(ctx context.Context, e *Env) (Observation, error) {
	// Port 9 (discard): nothing listens in the server namespace.
	start := time.Now()
	c, err := e.T.Dial(ctx, Client, clientDialer(3*time.Second), "tcp", netip.AddrPortFrom(ServerV4, 9).String())
	if err == nil {
		c.Close()
		return Observation{Outcome: OutcomeEstablished}, nil
	}
	return Observation{Outcome: describeErr(err), Note: "after " + since(start)}, nil
}

// since formats the time since start, rounded for the table.
func since(start time.Time) string {
	return time.Since(start).Round(100 * time.Microsecond).String()
}

func genuineAbort(ctx context.Context, e *Env) (Observation, error) {
	p, err := e.T.NewPair(ctx, false)
	if err != nil {
		return Observation{}, err
	}
	defer p.Close()
	if err := p.Alive(); err != nil {
		return Observation{}, err
	}
	start := time.Now()
	return Observation{Outcome: describeErr(p.Abort()), Note: "after " + since(start)}, nil
}

// ecnSYN connects with net.ipv4.tcp_ecn=1 in the client: its SYN carries
// ECE and CWR (RFC 3168 6.1.1).
func ecnSYN(ctx context.Context, e *Env) (Observation, error) {
	if err := e.T.Sysctl(Client, "net.ipv4.tcp_ecn=1"); err != nil {
		return Observation{}, err
	}
	defer e.T.Sysctl(Client, "net.ipv4.tcp_ecn=2")
	syn := e.ClientSniff.Expect(func(s Seen) bool {
		return s.Out && s.Flags.Has(packet.SYN) && !s.Flags.Has(packet.ACK)
	})
	p, err := e.T.NewPair(ctx, false)
	if err != nil {
		return Observation{Outcome: describeErr(err)}, nil
	}
	defer p.Close()
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	s, err := syn.Wait(wctx)
	cancel()
	if err != nil {
		return Observation{}, err
	}
	if !s.Flags.Has(packet.ECE | packet.CWR) {
		return Observation{}, fmt.Errorf("the client's SYN has flags %v, want ECE and CWR", s.Flags)
	}
	if err := p.Alive(); err != nil {
		return Observation{Outcome: describeErr(err)}, nil
	}
	return Observation{Outcome: OutcomeEstablished}, nil
}

// reservedSYN crafts a SYN from the client's address with a reserved bit
// set, sent from the client namespace (the client's kernel, which knows
// nothing of it, is kept from resetting the SYN-ACK), checks the server
// answers SYN-ACK, completes the handshake with a crafted ACK and checks the
// server accepts the connection.
func reservedSYN(ctx context.Context, e *Env) (Observation, error) {
	l, err := e.T.Listen(Server, "tcp", netip.AddrPortFrom(ServerV4, 0).String())
	if err != nil {
		return Observation{}, err
	}
	defer l.Close()
	sap := addrPort(l.Addr())
	cli := netip.AddrPortFrom(ClientV4, uint16(61001+rand.IntN(4000))) // above ip_local_port_range
	rule := []string{"OUTPUT", "-p", "tcp", "--sport", strconv.Itoa(int(cli.Port())), "--tcp-flags", "RST", "RST", "-j", "DROP"}
	if _, err := e.T.Exec(Client, "iptables", append([]string{"-I"}, rule...)...); err != nil {
		return Observation{}, err
	}
	defer e.T.Exec(Client, "iptables", append([]string{"-D"}, rule...)...)
	synAck := e.ClientSniff.Expect(func(s Seen) bool {
		return !s.Out && s.Src == sap && s.Dst == cli && s.Flags.Has(packet.SYN|packet.ACK)
	})
	iss := rand.Uint32()
	mss := craft.MSS(1460)
	if err := e.ClientRaw.Send(Segment{Src: cli, Dst: sap, Seq: iss, Flags: packet.SYN | 1<<9, // the lowest reserved bit (RFC 9293 3.1)
		Window: 64240, TTL: 64, Options: mss}); err != nil {
		return Observation{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	sa, err := synAck.Wait(wctx)
	cancel()
	if err != nil {
		return Observation{Outcome: "no SYN-ACK"}, nil
	}
	if sa.Ack != iss+1 {
		return Observation{Outcome: fmt.Sprintf("SYN-ACK acknowledges %d, want %d", sa.Ack, iss+1)}, nil
	}
	if err := e.ClientRaw.Send(Segment{Src: cli, Dst: sap, Seq: iss + 1, Ack: sa.Seq + 1, Flags: packet.ACK, Window: 502, TTL: 64}); err != nil {
		return Observation{}, err
	}
	l.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	c, err := l.Accept()
	if err != nil {
		return Observation{Outcome: "server did not accept: " + describeErr(err)}, nil
	}
	defer func() {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	if got := addrPort(c.RemoteAddr()); got != cli {
		return Observation{}, fmt.Errorf("server accepted %v, want %v", got, cli)
	}
	return Observation{Outcome: OutcomeEstablished}, nil
}

const noteDataOnSYN = "data on SYN"

// fastOpen enables TFO on both ends (net.ipv4.tcp_fastopen=3), gets a cookie
// with a first connection, then checks the second one carries its data on
// the SYN (RFC 7413) and works.
func fastOpen(ctx context.Context, e *Env) (Observation, error) {
	for _, h := range []Host{Client, Server} {
		if err := e.T.Sysctl(h, "net.ipv4.tcp_fastopen=3"); err != nil {
			return Observation{}, err
		}
		defer e.T.Sysctl(h, "net.ipv4.tcp_fastopen=1")
	}
	var l net.Listener
	err := e.T.Do(Server, func() error {
		lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 16)
			})
			return errors.Join(err, serr)
		}}
		var err error
		l, err = lc.Listen(ctx, "tcp", netip.AddrPortFrom(ServerV4, 0).String())
		return err
	})
	if err != nil {
		return Observation{}, err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				buf := make([]byte, 5)
				if n, err := c.Read(buf); err == nil {
					c.Write(buf[:n])
				}
			}()
		}
	}()
	sap := addrPort(l.Addr())
	d := &net.Dialer{Timeout: 3 * time.Second, Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
		})
		return errors.Join(err, serr)
	}}
	var dataSYN bool
	for i := range 2 {
		exp := e.ClientSniff.Expect(func(s Seen) bool {
			return s.Out && s.Dst == sap && s.Flags&(packet.SYN|packet.ACK) == packet.SYN
		})
		c, err := e.T.Dial(ctx, Client, d, "tcp", sap.String())
		if err != nil {
			return Observation{Outcome: describeErr(err)}, nil
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Write([]byte("hello"))
		if err == nil {
			buf := make([]byte, 5)
			_, err = c.Read(buf)
			if err == nil && string(buf) != "hello" {
				err = fmt.Errorf("echo %q", buf)
			}
		}
		c.Close()
		if err != nil {
			return Observation{Outcome: describeErr(err)}, nil
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		syn, werr := exp.Wait(wctx)
		cancel()
		if werr != nil {
			return Observation{}, werr
		}
		if i == 1 {
			dataSYN = syn.Len > 0
		}
	}
	obs := Observation{Outcome: OutcomeEstablished}
	if dataSYN {
		obs.Note = noteDataOnSYN
	} else {
		obs.Note = "no data on SYN (no cookie?)"
	}
	return obs, nil
}

// Flood bounds: the SYN flood of reset-during-flood lasts at most floodTime
// and floodMax packets.
const (
	floodTime = 8 * time.Second
	floodMax  = 4_000_000
)

// floodReset plays forged resets during a flood that exceeds the daemon's
// rate: two paced transfers, a SYN flood from the attacker (its own address,
// 198.51.100.66, to closed ports of the client, so every packet crosses the
// gateway's queue rule) for floodTime, and 8 resets far outside each
// transfer's window fired in the middle of it. Under the flood most packets
// take the kernel's fail-open path unjudged; the shipped rules drop the
// resets among them, so none of the forged ones is delivered either way.
// The note says how many packets bypassed validation (the rules' counter).
func floodReset(ctx context.Context, e *Env) (Observation, error) {
	var trs []*Transfer
	for range 2 {
		tr, err := e.T.StartTransfer(ctx, false, 8<<20, floodTime+2*time.Second)
		if err != nil {
			return Observation{}, err
		}
		defer tr.Close()
		trs = append(trs, tr)
	}
	for _, tr := range trs {
		if err := tr.WaitProgress(ctx, 0.05); err != nil {
			return Observation{}, err
		}
	}
	var before ruleset.Counters
	var evBefore map[string]float64
	if e.Guard {
		c, err := e.T.GuardCounters()
		if err != nil {
			return Observation{}, err
		}
		before = c
		if evBefore, err = e.Counters(); err != nil {
			return Observation{}, err
		}
	}
	// The flood, in the background, bounded by time and count.
	fctx, cancel := context.WithTimeout(ctx, floodTime)
	defer cancel()
	sent := make(chan int, 1)
	go func() { sent <- e.synFlood(fctx, floodMax) }()

	// The resets, once the flood is well under way.
	time.Sleep(floodTime / 2)
	forged := 0
	for _, tr := range trs {
		nxt, err := e.rcvNxt(ctx, &tr.Pair)
		if err != nil {
			cancel()
			<-sent
			return Observation{}, err
		}
		for i := range 8 {
			if err := e.Attacker.Send(forgedFromServer(&tr.Pair, nxt+1<<31+uint32(i)*100_000, 0, packet.RST)); err != nil {
				cancel()
				<-sent
				return Observation{}, err
			}
			forged++
		}
	}
	n := <-sent
	out := OutcomeSurvived
	for _, tr := range trs {
		if o := tr.Wait(); o != OutcomeSurvived {
			out = o
		}
	}
	note := fmt.Sprintf("flood %d SYNs", n)
	if e.Guard {
		after, err := e.T.GuardCounters()
		if err != nil {
			return Observation{}, err
		}
		note += fmt.Sprintf(", %d packets bypassed validation (%d of %d queued), %d unjudged resets dropped",
			after.Unjudged-before.Unjudged, after.Unjudged-before.Unjudged, after.QueueRule-before.QueueRule,
			after.UnjudgedResets-before.UnjudgedResets)
		// The event log under the flood: every judged reset (the client
		// answers each SYN with one) is a line.
		time.Sleep(100 * time.Millisecond) // the writer's poll
		if ev, err := e.Counters(); err == nil {
			note += fmt.Sprintf(", event log %.0f lines, %.0f lost",
				ev["rstguard_events_written_total"]-evBefore["rstguard_events_written_total"],
				ev["rstguard_events_lost_total"]-evBefore["rstguard_events_lost_total"])
		}
	}
	return Observation{Forged: forged, Outcome: out, Note: note}, nil
}

// synFlood sends SYNs from the attacker's own address to closed ports of
// the client (a new source port each) until ctx ends or max are sent, and
// returns how many it sent. Every address is the lab's own.
func (e *Env) synFlood(ctx context.Context, max int) int {
	const variants = 4096
	pkts := make([][]byte, 0, variants)
	for i := range variants {
		b, err := (Segment{
			Src: netip.AddrPortFrom(AttackerV4, uint16(10000+i)), Dst: netip.AddrPortFrom(ClientV4, 9),
			Seq: uint32(i) * 2654435761, Flags: packet.SYN, Window: 64240, TTL: 64,
		}).Bytes()
		if err != nil {
			return 0
		}
		pkts = append(pkts, b)
	}
	n := 0
	for ; n < max; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			break
		}
		if e.Attacker.SendRaw(pkts[n%variants], ClientV4) != nil {
			continue // ENOBUFS under load: the flood is best effort
		}
	}
	return n
}
