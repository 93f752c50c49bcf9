package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rstguard/rstguard/packet"
)

// On-path injection ([injection], issue 8 item 6).
//
// The injector of these scenarios is on the server's LAN and sees the
// traffic: a packet socket on srv0, the gateway's bridge port towards the
// server, stands for the mirror port (tap) a censor reads, and it sends
// from the attacker namespace, so that its resets reach the client through
// the gateway and the guard like the server's own. (The alternative, making
// br0 flood every frame with ageing_time 0 so that the attacker's own
// interface sees the client's packets, would change the bridge for every
// other scenario too.) It forges the server's resets at the exact sequence
// numbers it saw, which no window check can tell from the server's, with
// its own TTL (ForgedTTL, the server's is 64), and wins the race against
// the server: only [injection] mode = "hold", which waits for the server
// to contradict the reset, saves the connection.

const (
	// injectAttempts is the number of requests (on-path-injection) and
	// connections (injected-refusal) attacked.
	injectAttempts = 10
	// thinkTime is how long the server's application sleeps before it
	// answers a request: the window in which the injector's reset arrives
	// first.
	thinkTime = 20 * time.Millisecond
	// synAckDelay holds the server's SYN-ACKs back in injected-refusal (a
	// server farther away than the injector).
	synAckDelay = 15 * time.Millisecond
	// genuineEach is the number of genuine refusals, and of genuine aborts,
	// played after each attack.
	genuineEach = 5
	// genuineMaxDelay bounds a genuine reset's trip from the server's eth0
	// to the client's with the guard on: max_hold (50 ms by default) plus
	// room for a loaded 2-core machine.
	genuineMaxDelay = 250 * time.Millisecond

	requestLen  = 64
	responseLen = 8 << 10

	attemptIntact = "intact"
)

// response is the server's answer to request i: responseLen bytes that
// depend on i, so that a response cannot pass for another's.
func response(i int) []byte {
	b := make([]byte, responseLen)
	r := rand.NewChaCha8([32]byte{'r', 'e', 's', 'p', byte(i)})
	r.Read(b)
	return b
}

// pathTap opens the injector's view of the server's link (srv0 in the
// gateway namespace, see above).
func (e *Env) pathTap() (*Sniffer, error) { return e.T.NewSniffer(Gateway, "srv0") }

// serveEach accepts connections on l until it is closed, each served by
// serve in a goroutine of its own; the function it returns waits for every
// one of them to end.
func serveEach(l net.Listener, serve func(net.Conn)) (wait func()) {
	var served sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			go func() {
				defer served.Done()
				serve(c)
			}()
		}
	}()
	return served.Wait
}

// onPathInjection plays injectAttempts request/response exchanges; the
// server answers each after thinkTime. The injector sees each request on
// the server's link and at once sends the server's reset, RST/ACK with
// SEQ = the request's ACK (the server's SND.NXT, the client's RCV.NXT) and
// ACK = the request's end. A connection that dies is replaced by a new one
// for the next request, so that every request is attacked.
func onPathInjection(ctx context.Context, e *Env) (Observation, error) {
	l, err := e.T.Listen(Server, "tcp", netip.AddrPortFrom(ServerV4, 0).String())
	if err != nil {
		return Observation{}, err
	}
	defer l.Close()
	defer serveEach(l, func(c net.Conn) { serveRequests(ctx, c) })()
	sap := addrPort(l.Addr())

	tap, err := e.pathTap()
	if err != nil {
		return Observation{}, err
	}
	defer tap.Close()
	var forged atomic.Int64
	var sendErr error
	answered := map[flowDir]uint32{} // per flow, the end of the last request answered (the tap's goroutine only)
	stop := tap.Tap(func(s Seen) bool {
		return s.Out && s.Dst == sap && s.Len > 0 && !s.Flags.Has(packet.RST)
	}, func(s Seen) {
		k := flowDir{s.Src, s.Dst}
		if end, ok := answered[k]; ok && int32(s.End()-end) <= 0 {
			return // a retransmission: answered already
		}
		answered[k] = s.End()
		if err := e.Attacker.Send(Segment{Src: sap, Dst: s.Src, Seq: s.Ack, Ack: s.End(), Flags: packet.RST | packet.ACK}); err != nil {
			sendErr = err
			return
		}
		forged.Add(1)
	})
	attempts := make([]string, injectAttempts)
	var c net.Conn
	conns := 0
	for i := range attempts {
		if c == nil {
			if c, err = e.T.Dial(ctx, Client, clientDialer(3*time.Second), "tcp", sap.String()); err != nil {
				attempts[i] = "connect " + describeErr(err)
				c = nil
				continue
			}
			conns++
		}
		attempts[i] = exchange(c, i)
		if attempts[i] != attemptIntact {
			c.Close()
			c = nil
		}
	}
	if c != nil {
		c.Close()
	}
	time.Sleep(20 * time.Millisecond) // a reset still on its way
	stop()
	if sendErr != nil {
		return Observation{}, fmt.Errorf("injector: %w", sendErr)
	}
	obs := Observation{
		Forged:   int(forged.Load()),
		Outcome:  summarize(attempts, attemptIntact, OutcomeSurvived),
		Attempts: attempts,
		Note:     fmt.Sprintf("%d/%d responses intact, %s", count(attempts, attemptIntact), len(attempts), plural(conns, "connection")),
	}
	return obs, e.genuineResets(ctx, &obs)
}

// serveRequests answers each requestLen-byte request "NN..." on c with
// response(NN) after thinkTime, until c fails.
func serveRequests(ctx context.Context, c net.Conn) {
	defer c.Close()
	req := make([]byte, requestLen)
	for ctx.Err() == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		i, err := strconv.Atoi(string(bytes.TrimRight(req[:4], " ")))
		if err != nil {
			return
		}
		time.Sleep(thinkTime)
		if _, err := c.Write(response(i)); err != nil {
			return
		}
	}
}

// exchange sends request i on c and checks the response, within 2 s.
func exchange(c net.Conn, i int) string {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	req := make([]byte, requestLen)
	copy(req, fmt.Sprintf("%-4d request %d", i, i))
	if _, err := c.Write(req); err != nil {
		return describeErr(err)
	}
	got := make([]byte, responseLen)
	if n, err := io.ReadFull(c, got); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Sprintf("closed after %d bytes", n)
		}
		return describeErr(err)
	}
	if !bytes.Equal(got, response(i)) {
		return "corrupted"
	}
	return attemptIntact
}

// injectedRefusal dials the server injectAttempts times; the injector sees
// each SYN on the server's link and at once answers it with a refusal,
// RST/ACK with ACK = the SYN's ISN + 1, which Linux accepts in SYN-SENT
// (RFC 9293 3.10.7.3). A Delayer holds the server's genuine SYN-ACKs back
// by synAckDelay so that the injector wins the race. An attempt that
// connects sends five bytes and checks the echo.
func injectedRefusal(ctx context.Context, e *Env) (Observation, error) {
	l, err := e.T.Listen(Server, "tcp", netip.AddrPortFrom(ServerV4, 0).String())
	if err != nil {
		return Observation{}, err
	}
	defer l.Close()
	defer serveEach(l, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf)
		}
	})()
	sap := addrPort(l.Addr())
	delayer, err := e.T.NewDelayer(Server, sap.Port(), synAckDelay, 4*injectAttempts)
	if err != nil {
		return Observation{}, err
	}
	defer delayer.Close()

	tap, err := e.pathTap()
	if err != nil {
		return Observation{}, err
	}
	defer tap.Close()
	var forged atomic.Int64
	var sendErr error
	stop := tap.Tap(func(s Seen) bool {
		return s.Out && s.Dst == sap && s.Flags&(packet.SYN|packet.ACK) == packet.SYN
	}, func(s Seen) {
		if err := e.Attacker.Send(Segment{Src: sap, Dst: s.Src, Ack: s.Seq + 1, Flags: packet.RST | packet.ACK}); err != nil {
			sendErr = err
			return
		}
		forged.Add(1)
	})
	attempts := make([]string, injectAttempts)
	for i := range attempts {
		attempts[i] = dialEcho(ctx, e, sap)
	}
	time.Sleep(20 * time.Millisecond) // a SYN-ACK still delayed
	stop()
	if sendErr != nil {
		return Observation{}, fmt.Errorf("injector: %w", sendErr)
	}
	if err := delayer.Close(); err != nil {
		return Observation{}, err
	}
	obs := Observation{
		Forged:   int(forged.Load()),
		Outcome:  summarize(attempts, OutcomeEstablished, OutcomeEstablished),
		Attempts: attempts,
		Note: fmt.Sprintf("%d/%d connected, %d SYN-ACKs delayed %v",
			count(attempts, OutcomeEstablished), len(attempts), delayer.Delayed(), synAckDelay),
	}
	return obs, e.genuineResets(ctx, &obs)
}

// dialEcho connects to sap from the client and checks a 5-byte echo.
func dialEcho(ctx context.Context, e *Env, sap netip.AddrPort) string {
	c, err := e.T.Dial(ctx, Client, clientDialer(3*time.Second), "tcp", sap.String())
	if err != nil {
		return describeErr(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	msg := []byte("hello")
	if _, err := c.Write(msg); err != nil {
		return "established, then " + describeErr(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return "established, then " + describeErr(err)
	}
	if !bytes.Equal(buf, msg) {
		return "established, echo corrupted"
	}
	return OutcomeEstablished
}

// summarize is the outcome of a run of attempts: all if every attempt is
// good, else the first other attempt's outcome (with how many were good
// when some were).
func summarize(attempts []string, good, all string) string {
	n := count(attempts, good)
	if n == len(attempts) {
		return all
	}
	i := slices.IndexFunc(attempts, func(a string) bool { return a != good })
	if n == 0 {
		return attempts[i]
	}
	return fmt.Sprintf("%s (%d of %d %s)", attempts[i], n, len(attempts), good)
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return fmt.Sprintf("%d %ss", n, s)
}

// Attempts formats attempts as runs: "1-9 intact, 10 reset".
func Attempts(attempts []string) string {
	var b strings.Builder
	for i := 0; i < len(attempts); {
		j := i
		for j+1 < len(attempts) && attempts[j+1] == attempts[i] {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if i == j {
			fmt.Fprintf(&b, "%d %s", i+1, attempts[i])
		} else {
			fmt.Fprintf(&b, "%d-%d %s", i+1, j+1, attempts[i])
		}
		i = j + 1
	}
	return b.String()
}

// genuineResets has the server send genuine resets after the attack,
// genuineEach refusals (a SYN to its closed port 9) and genuineEach aborts
// (SO_LINGER 0 and close in the middle of a transfer), and records in obs
// how many reached the client's application as ECONNREFUSED / ECONNRESET
// and how long each reset took from the server's eth0 to the client's
// (kernel timestamps of the two packet sockets). With [injection] mode =
// "hold" that trip includes the hold: nothing contradicts a genuine reset,
// so it waits for max_hold.
func (e *Env) genuineResets(ctx context.Context, obs *Observation) error {
	srv, err := e.T.NewSniffer(Server, "eth0")
	if err != nil {
		return err
	}
	defer srv.Close()
	var trips []time.Duration
	for range genuineEach {
		for _, abort := range []bool{false, true} {
			var (
				got      string
				want     string
				src, dst netip.AddrPort
				trip     func() (time.Duration, bool, error)
			)
			if abort {
				want = OutcomeReset
				p, err := e.T.NewPair(ctx, false)
				if err != nil {
					return err
				}
				src, dst = p.SAddr, p.CAddr
				trip = e.expectTrip(srv, func(s Seen) bool { return s.Src == src && s.Dst == dst && s.Flags.Has(packet.RST) })
				got = abortMidTransfer(p)
				p.Close()
			} else {
				want = OutcomeRefused
				closed := netip.AddrPortFrom(ServerV4, 9) // nothing listens on discard
				trip = e.expectTrip(srv, func(s Seen) bool { return s.Src == closed && s.Flags.Has(packet.RST) })
				c, err := e.T.Dial(ctx, Client, clientDialer(3*time.Second), "tcp", closed.String())
				if err == nil {
					c.Close()
					got = OutcomeEstablished
				} else {
					got = describeErr(err)
				}
			}
			obs.Genuine++
			if got == want {
				obs.GenuineSeen++
			}
			d, arrived, err := trip()
			if err != nil {
				return err
			}
			if arrived {
				obs.GenuineArrived++
				trips = append(trips, d)
			}
		}
	}
	obs.GenuineDelayMedian, obs.GenuineDelayMax = medianMax(trips)
	return nil
}

// expectTrip arms the watch for one genuine reset: its departure on the
// server's eth0 (srv) and its arrival on the client's. The returned func
// waits for both (up to a second after the departure) and returns the trip
// time, whether the reset arrived, and an error if it never left.
func (e *Env) expectTrip(srv *Sniffer, pred func(Seen) bool) func() (time.Duration, bool, error) {
	dep := srv.Expect(func(s Seen) bool { return s.Out && pred(s) })
	arr := e.ClientSniff.Expect(func(s Seen) bool { return !s.Out && pred(s) })
	return func() (time.Duration, bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d, err := dep.Wait(ctx)
		if err != nil {
			arr.Wait(ctx) // disarm
			return 0, false, fmt.Errorf("the server's genuine reset was not seen leaving its eth0: %w", err)
		}
		a, err := arr.Wait(ctx)
		if err != nil {
			return 0, false, nil
		}
		return a.At.Sub(d.At), true, nil
	}
}

// abortMidTransfer has the server stream to the client and, once the
// client has 32 KiB, close with SO_LINGER 0 (a genuine reset, RFC 9293
// 3.10.4 ABORT) while data is still flowing; it returns what the client's
// reads then end with.
func abortMidTransfer(p *Pair) string {
	abort := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := make([]byte, 4<<10)
		p.S.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for sent := 0; sent < 1<<20; sent += len(chunk) { // bounded: 1 MiB at most, about 256 ms
			select {
			case <-abort:
				p.S.(*net.TCPConn).SetLinger(0)
				p.S.Close()
				return
			default:
			}
			if _, err := p.S.Write(chunk); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		p.S.Close()
	}()
	defer func() { <-done }()
	p.C.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64<<10)
	received, aborted := 0, false
	for {
		n, err := p.C.Read(buf)
		received += n
		if received >= 32<<10 && !aborted {
			close(abort)
			aborted = true
		}
		if err != nil {
			if !aborted {
				close(abort)
			}
			return describeErr(err)
		}
	}
}

// medianMax returns the median and the maximum of ds in seconds (0, 0 for
// none).
func medianMax(ds []time.Duration) (median, max float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return m.Seconds(), s[len(s)-1].Seconds()
}

// Checks of the injection scenarios.

// allAttempts checks every attempt ended as want.
func allAttempts(want string) func(Observation) error {
	return func(o Observation) error {
		if len(o.Attempts) == 0 || count(o.Attempts, want) != len(o.Attempts) {
			return fmt.Errorf("attempts %s, want every one %s", Attempts(o.Attempts), want)
		}
		return nil
	}
}

// injectedDropped checks the guard dropped every forged reset that did
// not arrive as rst_injected.
func injectedDropped(o Observation) error {
	lost := float64(o.Forged - o.Delivered)
	if v := o.Metric("rstguard_packets_total", "reason", "rst_injected", "verdict", "drop"); v < lost {
		return fmt.Errorf("%v forged resets not delivered, %v dropped as rst_injected", lost, v)
	}
	return nil
}

// genuineDelivered checks every genuine reset reached the client's
// application (ECONNREFUSED, ECONNRESET) and was seen arriving, within
// limit (0: no limit).
func genuineDelivered(limit time.Duration) func(Observation) error {
	return func(o Observation) error {
		if o.Genuine == 0 || o.GenuineSeen != o.Genuine || o.GenuineArrived != o.Genuine {
			return fmt.Errorf("%d genuine resets sent, %d arrived, the client saw %d", o.Genuine, o.GenuineArrived, o.GenuineSeen)
		}
		if limit > 0 && o.GenuineDelayMax > limit.Seconds() {
			return fmt.Errorf("a genuine reset took %v to reach the client, want at most %v", seconds(o.GenuineDelayMax), limit)
		}
		return nil
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * 1e9) }
