package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rstguard/rstguard/deploy"
	"github.com/rstguard/rstguard/packet"
)

// HAScenario is the name `rstguard lab --only` selects the HA failover by.
const HAScenario = "ha-failover"

// HAExpect describes the HA scenario in `rstguard lab --help`.
const HAExpect = "active gateway fails over mid-transfer: transfer intact; the backup's guard drops forged resets (HA recipe: no far one delivered)"

// HAVariant is one play of the failover: what the gateways run.
type HAVariant struct {
	Name string `json:"name"`
	// Guard runs rstguard (and the shipped rules) on both gateways, and
	// keepalived's track script on its readiness.
	Guard bool `json:"guard"`
	// UnknownFlowRST is the guards' [policy] unknown_flow_rst.
	UnknownFlowRST string `json:"unknown_flow_rst,omitempty"`
}

// HAVariants are played in this order: without a guard (the attack is
// real), with the default configuration, and with the HA recipe
// (unknown_flow_rst = "drop" on both gateways).
var HAVariants = []HAVariant{
	{Name: "no guard"},
	{Name: "guard", Guard: true, UnknownFlowRST: "accept"},
	{Name: "guard, unknown_flow_rst=drop", Guard: true, UnknownFlowRST: "drop"},
}

// HAResult is what one failover showed. Times are seconds from the moment
// gw-a's keepalived was sent SIGTERM (T0); negative or absent when the
// event did not happen.
type HAResult struct {
	Variant HAVariant `json:"variant"`
	// Takeover: gw-b's notify script saw the group become MASTER.
	Takeover float64 `json:"takeover_s"`
	// FirstForwarded: the first segment of the transfer left gw-b towards
	// the client.
	FirstForwarded float64 `json:"first_forwarded_s"`
	// BothWays: gw-b has seen a segment of the transfer in each direction
	// (the first from the client arrived too); from then on a picked-up
	// flow is judged by both sides' numbers.
	BothWays float64 `json:"both_ways_s"`
	// LongestStall is the longest the client waited for data during the
	// transfer (seconds).
	LongestStall float64 `json:"longest_stall_s"`
	Outcome      string  `json:"outcome"`
	Bytes        int64   `json:"bytes"`
	// The forged resets, of two kinds fired in pairs: Far, 2^31 beyond the
	// client's RCV.NXT (outside every window, even a picked-up flow's
	// before its second direction is seen), and Near, 16 MiB beyond
	// (outside the client's window, inside the 2^30 a one-way picked-up
	// flow allows).
	Far  Forged `json:"far"`
	Near Forged `json:"near"`
	// FirstDropped is when gw-b's guard dropped its first forged reset (its
	// event log), for any reason (rst_unknown_flow before it has seen the
	// flow); DroppedB how many it dropped; PickupsB how many flows it
	// picked up mid-stream.
	FirstDropped float64 `json:"first_dropped_s,omitempty"`
	DroppedB     int     `json:"dropped_by_gw_b"`
	PickupsB     float64 `json:"pickups_gw_b"`
	Seconds      float64 `json:"seconds"`
	Err          string  `json:"error,omitempty"`
	Pass         bool    `json:"pass"`
	Why          string  `json:"why,omitempty"`
}

// Forged counts one kind of forged reset.
type Forged struct {
	// Sent in all and after T0; delivered to the client (seen on its
	// interface) in all and of those sent after T0.
	Sent           int `json:"sent"`
	SentAfter      int `json:"sent_after"`
	Delivered      int `json:"delivered"`
	DeliveredAfter int `json:"delivered_after"`
	// WindowFirst and WindowLast are the send times of the first and last
	// one sent after T0 that was delivered (the window they passed in).
	WindowFirst float64 `json:"window_first_s,omitempty"`
	WindowLast  float64 `json:"window_last_s,omitempty"`
	// FirstOutOfWindow is when gw-b's guard first dropped one judged
	// against the picked-up flow (rst_out_of_window).
	FirstOutOfWindow float64 `json:"first_out_of_window_s,omitempty"`
}

// HAReport is the result of RunHA.
type HAReport struct {
	Results  []HAResult `json:"variants"`
	Seconds  float64    `json:"seconds"`
	Pass     bool       `json:"pass"`
	Topology string     `json:"topology"`
}

// HAOptions configures RunHA.
type HAOptions struct {
	Binary  string    // the rstguard executable (needed for variants with Guard)
	Prefix  string    // namespace prefix (DefaultPrefix if empty)
	Replace bool      // delete leftover namespaces of the same names
	Dir     string    // configuration, logs and pid files (a temporary directory if empty)
	Log     io.Writer // every command (nil: silent)
	// Progress receives one line per variant (nil: silent).
	Progress io.Writer
	Variants []HAVariant // HAVariants if nil
}

// The failover's parameters.
const (
	haSize      = 6 << 20                // the transfer, server to client
	haDuration  = 3 * time.Second        // its pacing
	haFailAt    = 0.3                    // fraction received when gw-a fails
	haFireEvery = 5 * time.Millisecond   // forged reset spacing
	haMaxForged = 2000                   // bound on forged pairs per variant
	haNear      = 16 << 20               // the near forged resets' distance beyond RCV.NXT
	haSettle    = 100 * time.Millisecond // after the transfer, for late packets
)

// RunHA plays the failover once per variant, each on a fresh HA topology,
// and judges the results: every transfer intact and taken over by gw-b; with
// a guard, no forged reset delivered through gw-a before the failover and
// fewer delivered after it than sent; with unknown_flow_rst = "drop" none
// delivered at all; without a guard, forged resets delivered after the
// failover (the attack is real).
func RunHA(ctx context.Context, o HAOptions) (*HAReport, error) {
	start := time.Now()
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Variants == nil {
		o.Variants = HAVariants
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "rstguard-ha-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	rep := &HAReport{Topology: o.Prefix + "{switch,client,gw-a,gw-b,server,attacker}", Pass: true}
	for i, v := range o.Variants {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := filepath.Join(o.Dir, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		vs := time.Now()
		r, err := playHA(ctx, o, v, dir)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.Err = err.Error()
		}
		r.Variant = v
		r.Seconds = time.Since(vs).Seconds()
		judgeHA(&r)
		rep.Pass = rep.Pass && r.Pass
		rep.Results = append(rep.Results, r)
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "ha-failover %-30s takeover %s, first forwarded %s, both ways %s, longest stall %s, delivered after failover: far %d/%d, near %d/%d; %s%s\n",
				v.Name, secs(r.Takeover), secs(r.FirstForwarded), secs(r.BothWays), secs(r.LongestStall), r.Far.DeliveredAfter, r.Far.SentAfter, r.Near.DeliveredAfter, r.Near.SentAfter, r.Outcome, errNote(r.Err))
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func secs(s float64) string {
	if s < 0 {
		return "never"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// judgeHA sets r.Pass and r.Why.
func judgeHA(r *HAResult) {
	var why []string
	switch {
	case r.Err != "":
		why = append(why, r.Err)
	default:
		if r.Outcome != OutcomeSurvived {
			why = append(why, fmt.Sprintf("transfer %s, want survived", r.Outcome))
		}
		if r.Takeover < 0 || r.FirstForwarded < 0 {
			why = append(why, "gw-b did not take the transfer over")
		}
		if r.Far.SentAfter == 0 || r.Near.SentAfter == 0 {
			why = append(why, "no forged reset was sent after the failover")
		}
		before := r.Far.Delivered - r.Far.DeliveredAfter + r.Near.Delivered - r.Near.DeliveredAfter
		switch {
		case !r.Variant.Guard:
			if r.Far.DeliveredAfter == 0 || r.Near.DeliveredAfter == 0 {
				why = append(why, "without a guard forged resets were not delivered after the failover: the attack did not reach the victim")
			}
		case before != 0:
			why = append(why, fmt.Sprintf("%d forged resets delivered before the failover, through gw-a's guard", before))
		case r.Variant.UnknownFlowRST == "drop" && r.Far.DeliveredAfter != 0:
			why = append(why, fmt.Sprintf("%d far forged resets delivered after the failover, want 0 with unknown_flow_rst=drop", r.Far.DeliveredAfter))
		case r.Far.DeliveredAfter >= r.Far.SentAfter || r.Near.DeliveredAfter >= r.Near.SentAfter:
			why = append(why, "every forged reset of a kind after the failover was delivered: gw-b's guard did not validate")
		case r.DroppedB == 0:
			why = append(why, "gw-b's guard dropped no forged reset")
		}
	}
	r.Pass = len(why) == 0
	r.Why = strings.Join(why, "; ")
}

// shot is one forged reset: its sequence number, kind and send time.
type shot struct {
	seq  uint32
	near bool
	sent time.Time
}

// playHA builds the HA topology and fails gw-a over during a transfer while
// the attacker fires forged resets.
func playHA(ctx context.Context, o HAOptions, v HAVariant, dir string) (r HAResult, err error) {
	r = HAResult{Takeover: -1, FirstForwarded: -1, BothWays: -1}
	t, err := NewHATopology(ctx, TopologyOptions{Prefix: o.Prefix, Replace: o.Replace, Log: o.Log})
	if err != nil {
		return r, err
	}
	var kas []*Keepalived
	defer func() {
		for _, k := range kas {
			k.Kill()
		}
		if cerr := t.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	// The scripts users install, and each gateway's keepalived.conf.
	check, notify := filepath.Join(dir, "rstguard-check.sh"), filepath.Join(dir, "rstguard-notify.sh")
	for p, b := range map[string][]byte{check: deploy.KeepalivedCheck, notify: deploy.KeepalivedNotify} {
		if err := os.WriteFile(p, b, 0o755); err != nil {
			return r, err
		}
	}
	gws := []Host{GatewayA, GatewayB}
	notifyLog := map[Host]string{}
	confs := map[Host]string{}
	for _, h := range gws {
		notifyLog[h] = filepath.Join(dir, "notify-"+string(h)+".log")
		chk := ""
		if v.Guard {
			chk = check + " " + t.metricsAddr
		}
		confs[h] = filepath.Join(dir, "keepalived-"+string(h)+".conf")
		if err := os.WriteFile(confs[h], []byte(KeepalivedConfig(HAVRRP(h, chk, notify+" "+notifyLog[h]))), 0o644); err != nil {
			return r, err
		}
	}

	// The guards, hot on both gateways, each with the shipped rules.
	events := map[Host]string{}
	guards := map[Host]*Daemon{}
	if v.Guard {
		for _, h := range gws {
			events[h] = filepath.Join(dir, "events-"+string(h)+".jsonl")
			cfg := filepath.Join(dir, "rstguard-"+string(h)+".toml")
			if err := os.WriteFile(cfg, []byte(haConfig(v.UnknownFlowRST, t.metricsAddr, events[h], filepath.Join(dir, "control-"+string(h)+".sock"))), 0o644); err != nil {
				return r, err
			}
			if err := t.InstallShippedRulesIn(h); err != nil {
				return r, err
			}
			d, err := t.RunDaemonIn(ctx, h, o.Binary, cfg, 10*time.Second)
			if err != nil {
				return r, err
			}
			guards[h] = d
		}
	}
	// keepalived on both; gw-a (priority 150) becomes MASTER.
	for _, h := range gws {
		k, err := t.StartKeepalived(h, confs[h], dir)
		if err != nil {
			return r, err
		}
		kas = append(kas, k)
	}
	kaLog := func() string {
		var b strings.Builder
		for i, k := range kas {
			fmt.Fprintf(&b, "keepalived %s:\n%s\n", gws[i], k.Log())
		}
		return b.String()
	}
	if err := t.waitAddr(ctx, GatewayA, haServerIf, GatewayV4S, true, 10*time.Second); err != nil {
		return r, fmt.Errorf("%w\n%s", err, kaLog())
	}
	if err := t.waitAddr(ctx, GatewayA, haClientIf, GatewayV4C, true, 2*time.Second); err != nil {
		return r, fmt.Errorf("%w\n%s", err, kaLog())
	}
	// gw-b may have been MASTER for a moment at start (its track script
	// passed before gw-a's): it is BACKUP once gw-a preempts it.
	for _, ifc := range []struct {
		dev string
		vip netip.Addr
	}{{haServerIf, GatewayV4S}, {haClientIf, GatewayV4C}} {
		if err := t.waitAddr(ctx, GatewayB, ifc.dev, ifc.vip, false, 3*time.Second); err != nil {
			return r, fmt.Errorf("%w\n%s", err, kaLog())
		}
	}

	cliSniff, err := t.NewSniffer(Client, "eth0")
	if err != nil {
		return r, err
	}
	defer cliSniff.Close()
	bSniff, err := t.NewSniffer(GatewayB, haClientIf)
	if err != nil {
		return r, err
	}
	defer bSniff.Close()
	att, err := t.NewInjector(Attacker)
	if err != nil {
		return r, err
	}
	defer att.Close()

	tr, err := t.StartTransfer(ctx, false, haSize, haDuration)
	if err != nil {
		return r, err
	}
	defer tr.Close()
	// The forged resets the client receives, by sequence number, and the
	// first segments of the transfer gw-b forwards, one per direction;
	// timed by the kernel (Seen.At).
	var mu sync.Mutex
	arrived := map[uint32]time.Time{}
	var firstB, firstBC time.Time // gw-b: first server segment out, first client segment in
	stopCli := cliSniff.Tap(func(s Seen) bool {
		return !s.Out && s.Flags.Has(packet.RST) && s.TTL == DeliveredTTL && s.Dst == tr.CAddr
	}, func(s Seen) {
		mu.Lock()
		if _, ok := arrived[s.Seq]; !ok {
			arrived[s.Seq] = s.At
		}
		mu.Unlock()
	})
	defer stopCli()
	stopB := bSniff.Tap(func(s Seen) bool {
		return s.Out && s.Src == tr.SAddr && s.Dst == tr.CAddr && s.TTL != DeliveredTTL ||
			!s.Out && !s.Other && s.Src == tr.CAddr && s.Dst == tr.SAddr
	}, func(s Seen) {
		mu.Lock()
		defer mu.Unlock()
		first := &firstBC
		if s.Out {
			first = &firstB
		}
		if first.IsZero() {
			*first = s.At
		}
	})
	defer stopB()
	if err := tr.WaitProgress(ctx, 0.05); err != nil {
		return r, err
	}

	// The attacker: every haFireEvery a pair of resets claiming to come
	// from the server, one far (2^31 beyond the client's RCV.NXT) and one
	// near (16 MiB beyond), each with a sequence number of its own.
	var shots []shot
	stopFire := make(chan struct{})
	fired := make(chan error, 1)
	go func() {
		tick := time.NewTicker(haFireEvery)
		defer tick.Stop()
		for i := range haMaxForged {
			h, ok := cliSniff.Highest(tr.SAddr, tr.CAddr)
			if !ok {
				fired <- errors.New("the client's sniffer saw no segment of the transfer")
				return
			}
			for _, near := range []bool{false, true} {
				off := uint32(1 << 31)
				if near {
					off = haNear
				}
				seq := h.End() + off + uint32(i)*4099
				now := time.Now()
				if err := att.Send(forgedFromServer(&tr.Pair, seq, 0, packet.RST)); err != nil {
					fired <- err
					return
				}
				mu.Lock()
				shots = append(shots, shot{seq, near, now})
				mu.Unlock()
			}
			select {
			case <-stopFire:
				fired <- nil
				return
			case <-tick.C:
			}
		}
		fired <- nil
	}()
	stopAttack := func() error {
		select {
		case <-stopFire:
		default:
			close(stopFire)
		}
		return <-fired
	}

	// The failover: stop gw-a's keepalived (priority 0 advert, addresses
	// released), then its links, as soon as it has let the addresses go.
	if err := tr.WaitProgress(ctx, haFailAt); err != nil {
		stopAttack()
		return r, err
	}
	t0 := time.Now()
	if err := kas[0].Signal(syscall.SIGTERM); err != nil {
		stopAttack()
		return r, err
	}
	if err := t.waitAddr(ctx, GatewayA, haServerIf, GatewayV4S, false, 3*time.Second); err != nil {
		stopAttack()
		return r, err
	}
	for _, dev := range []string{haClientIf, haServerIf} {
		if _, err := t.Exec(GatewayA, "ip", "link", "set", dev, "down"); err != nil {
			stopAttack()
			return r, err
		}
	}
	r.Outcome = tr.Wait()
	r.Bytes = tr.Received()
	r.LongestStall = tr.LongestStall().Seconds()
	time.Sleep(haSettle)
	if err := stopAttack(); err != nil {
		return r, err
	}
	time.Sleep(haSettle)
	if err := kas[0].Stop(); err != nil {
		return r, fmt.Errorf("gw-a's keepalived: %w\n%s", err, kas[0].Log())
	}

	mu.Lock()
	for _, s := range shots {
		f := &r.Far
		if s.near {
			f = &r.Near
		}
		f.Sent++
		after := !s.sent.Before(t0)
		if after {
			f.SentAfter++
		}
		if _, ok := arrived[s.seq]; !ok {
			continue
		}
		f.Delivered++
		if after {
			f.DeliveredAfter++
			at := s.sent.Sub(t0).Seconds()
			if f.WindowFirst == 0 {
				f.WindowFirst = at
			}
			f.WindowLast = at
		}
	}
	if !firstB.IsZero() {
		r.FirstForwarded = firstB.Sub(t0).Seconds()
		if !firstBC.IsZero() {
			both := firstB
			if firstBC.After(both) {
				both = firstBC
			}
			r.BothWays = both.Sub(t0).Seconds()
		}
	}
	mu.Unlock()

	if b, err := os.ReadFile(notifyLog[GatewayB]); err == nil {
		if at, _, err := transitionTime(b, "MASTER", t0); err == nil {
			r.Takeover = at.Sub(t0).Seconds()
		}
	}
	if d := guards[GatewayB]; d != nil {
		body, err := t.ScrapeIn(GatewayB)
		if err != nil {
			return r, err
		}
		m, err := ParseMetrics(body, "rstguard_packets_total")
		if err != nil {
			return r, err
		}
		r.PickupsB = m[seriesKey("rstguard_packets_total", "reason", "pickup", "verdict", "accept")]
		for _, d := range guards {
			if err := d.Stop(); err != nil {
				return r, fmt.Errorf("stop the guard: %w\n%s", err, d.Log())
			}
		}
		forged := map[uint32]*Forged{}
		for _, s := range shots {
			forged[s.seq] = &r.Far
			if s.near {
				forged[s.seq] = &r.Near
			}
		}
		drops, err := forgedDrops(events[GatewayB], forged)
		if err != nil {
			return r, err
		}
		r.DroppedB = drops.n
		if !drops.first.IsZero() {
			r.FirstDropped = drops.first.Sub(t0).Seconds()
		}
		for f, at := range drops.firstOOW {
			f.FirstOutOfWindow = at.Sub(t0).Seconds()
		}
	}
	return r, nil
}

// haConfig is a gateway guard's configuration: the lab's, with
// unknown_flow_rst and a control socket of its own (two daemons share the
// file system).
func haConfig(unknownFlowRST, metricsAddr, eventsPath, control string) string {
	return fmt.Sprintf(`# rstguard HA lab configuration (generated)
[queue]
numbers = "0:1"

[policy]
rst_mode = "window"
unknown_flow_rst = %q

[metrics]
listen = %q

[events]
path = %q

[control]
socket = %q
`, unknownFlowRST, metricsAddr, eventsPath, control)
}

// dropStats are a guard's drops of forged resets: how many, the first, and
// per kind the first judged out of window.
type dropStats struct {
	n        int
	first    time.Time
	firstOOW map[*Forged]time.Time
}

// forgedDrops reads an event log for the dropped resets whose sequence
// numbers are in forged (mapped to their kind).
func forgedDrops(path string, forged map[uint32]*Forged) (dropStats, error) {
	st := dropStats{firstOOW: map[*Forged]time.Time{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("event log: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Time    time.Time `json:"time"`
			Verdict string    `json:"verdict"`
			Reason  string    `json:"reason"`
			Flags   string    `json:"flags"`
			Seq     uint32    `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return st, fmt.Errorf("event log %s: %w", path, err)
		}
		kind := forged[e.Seq]
		if e.Verdict != "drop" || !strings.Contains(e.Flags, "R") || kind == nil {
			continue
		}
		st.n++
		if st.first.IsZero() || e.Time.Before(st.first) {
			st.first = e.Time
		}
		if first, ok := st.firstOOW[kind]; e.Reason == "rst_out_of_window" && (!ok || e.Time.Before(first)) {
			st.firstOOW[kind] = e.Time
		}
	}
	return st, sc.Err()
}
