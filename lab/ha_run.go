package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
const HAExpect = "active gateway fails over mid-transfer: transfer intact; the backup's guard drops forged resets (HA recipe: none delivered)"

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
	// LongestStall is the longest the client waited for data during the
	// transfer (seconds).
	LongestStall float64 `json:"longest_stall_s"`
	Outcome      string  `json:"outcome"`
	Bytes        int64   `json:"bytes"`
	// Forged resets sent in all and after T0; delivered to the client (its
	// interface) in all and of those sent after T0.
	Forged         int `json:"forged"`
	ForgedAfter    int `json:"forged_after"`
	Delivered      int `json:"delivered"`
	DeliveredAfter int `json:"delivered_after"`
	// WindowFirst and WindowLast are the send times of the first and last
	// forged reset sent after T0 that was delivered (the window a forged
	// reset could pass in); zero when none was.
	WindowFirst float64 `json:"window_first_s,omitempty"`
	WindowLast  float64 `json:"window_last_s,omitempty"`
	// FirstDropped is when gw-b's guard dropped its first forged reset (its
	// event log), for any reason (rst_unknown_flow before it has seen the
	// flow); FirstOutOfWindow its first judged against the picked-up flow
	// (rst_out_of_window); DroppedB how many it dropped; PickupsB how many
	// flows it picked up mid-stream.
	FirstDropped     float64 `json:"first_dropped_s,omitempty"`
	FirstOutOfWindow float64 `json:"first_out_of_window_s,omitempty"`
	DroppedB         int     `json:"dropped_by_gw_b"`
	PickupsB         float64 `json:"pickups_gw_b"`
	Seconds          float64 `json:"seconds"`
	Err              string  `json:"error,omitempty"`
	Pass             bool    `json:"pass"`
	Why              string  `json:"why,omitempty"`
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
	haMaxForged = 3000                   // bound on forged resets per variant
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
			fmt.Fprintf(o.Progress, "ha-failover %-30s takeover %s, first forwarded %s, longest stall %s, forged %d (%d after failover), delivered %d (%d after), %s%s\n",
				v.Name, secs(r.Takeover), secs(r.FirstForwarded), secs(r.LongestStall), r.Forged, r.ForgedAfter, r.Delivered, r.DeliveredAfter, r.Outcome, errNote(r.Err))
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
		if r.ForgedAfter == 0 {
			why = append(why, "no forged reset was sent after the failover")
		}
		switch {
		case !r.Variant.Guard:
			if r.DeliveredAfter == 0 {
				why = append(why, "without a guard no forged reset was delivered after the failover: the attack did not reach the victim")
			}
		case r.Delivered != r.DeliveredAfter:
			why = append(why, fmt.Sprintf("%d forged resets delivered before the failover, through gw-a's guard", r.Delivered-r.DeliveredAfter))
		case r.Variant.UnknownFlowRST == "drop" && r.DeliveredAfter != 0:
			why = append(why, fmt.Sprintf("%d forged resets delivered after the failover, want 0 with unknown_flow_rst=drop", r.DeliveredAfter))
		case r.DeliveredAfter >= r.ForgedAfter:
			why = append(why, "every forged reset after the failover was delivered: gw-b's guard did not validate")
		case r.DroppedB == 0:
			why = append(why, "gw-b's guard dropped no forged reset")
		}
	}
	r.Pass = len(why) == 0
	r.Why = strings.Join(why, "; ")
}

// shot is one forged reset: its sequence number and send time.
type shot struct {
	seq  uint32
	sent time.Time
}

// playHA builds the HA topology and fails gw-a over during a transfer while
// the attacker fires forged resets.
func playHA(ctx context.Context, o HAOptions, v HAVariant, dir string) (r HAResult, err error) {
	r = HAResult{Takeover: -1, FirstForwarded: -1}
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
	// first segment of the transfer gw-b forwards.
	var mu sync.Mutex
	arrived := map[uint32]time.Time{}
	var firstB time.Time
	stopCli := cliSniff.Watch(func(s Seen) {
		if !s.Out && s.Flags.Has(packet.RST) && s.TTL == DeliveredTTL && s.Dst == tr.CAddr {
			mu.Lock()
			if _, ok := arrived[s.Seq]; !ok {
				arrived[s.Seq] = time.Now()
			}
			mu.Unlock()
		}
	})
	defer stopCli()
	stopB := bSniff.Watch(func(s Seen) {
		if s.Out && s.Src == tr.SAddr && s.Dst == tr.CAddr && s.TTL != DeliveredTTL {
			mu.Lock()
			if firstB.IsZero() {
				firstB = time.Now()
			}
			mu.Unlock()
		}
	})
	defer stopB()
	if err := tr.WaitProgress(ctx, 0.05); err != nil {
		return r, err
	}

	// The attacker: a reset claiming to come from the server every
	// haFireEvery, 2^31 beyond the client's RCV.NXT (outside any window),
	// each with its own sequence number.
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
			seq := h.End() + 1<<31 + uint32(i)*4099
			now := time.Now()
			if err := att.Send(forgedFromServer(&tr.Pair, seq, 0, packet.RST)); err != nil {
				fired <- err
				return
			}
			mu.Lock()
			shots = append(shots, shot{seq, now})
			mu.Unlock()
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
		r.Forged++
		after := !s.sent.Before(t0)
		if after {
			r.ForgedAfter++
		}
		if _, ok := arrived[s.seq]; !ok {
			continue
		}
		r.Delivered++
		if after {
			r.DeliveredAfter++
			at := s.sent.Sub(t0).Seconds()
			if r.WindowFirst == 0 {
				r.WindowFirst = at
			}
			r.WindowLast = at
		}
	}
	if !firstB.IsZero() {
		r.FirstForwarded = firstB.Sub(t0).Seconds()
	}
	mu.Unlock()

	if b, err := os.ReadFile(notifyLog[GatewayB]); err == nil {
		if at, _, err := transitionTime(b, "MASTER"); err == nil {
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
		forged := map[uint32]bool{}
		for _, s := range shots {
			forged[s.seq] = true
		}
		drops, err := forgedDrops(events[GatewayB], forged)
		if err != nil {
			return r, err
		}
		r.DroppedB = drops.n
		if !drops.first.IsZero() {
			r.FirstDropped = drops.first.Sub(t0).Seconds()
		}
		if !drops.firstOOW.IsZero() {
			r.FirstOutOfWindow = drops.firstOOW.Sub(t0).Seconds()
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
// the first judged out of window.
type dropStats struct {
	n               int
	first, firstOOW time.Time
}

// forgedDrops reads an event log for the dropped resets whose sequence
// numbers are in forged.
func forgedDrops(path string, forged map[uint32]bool) (dropStats, error) {
	var st dropStats
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
		if e.Verdict != "drop" || !strings.Contains(e.Flags, "R") || !forged[e.Seq] {
			continue
		}
		st.n++
		if st.first.IsZero() || e.Time.Before(st.first) {
			st.first = e.Time
		}
		if e.Reason == "rst_out_of_window" && (st.firstOOW.IsZero() || e.Time.Before(st.firstOOW)) {
			st.firstOOW = e.Time
		}
	}
	return st, sc.Err()
}
