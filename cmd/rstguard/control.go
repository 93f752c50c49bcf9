package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/flowfilter"
	"github.com/rstguard/rstguard/metrics"
	"github.com/rstguard/rstguard/nfq"
	"github.com/rstguard/rstguard/policy"
)

// The control socket: one JSON request line per connection, answered with
// JSON lines. Requests:
//
//	{"op":"flows","filter":"FILTER"}   one line per flow, then {"end":true,"flows":N}
//	{"op":"flush","filter":"FILTER"}   {"flushed":N} ("all": every flow)
//	{"op":"status"}                    one status object
//
// Errors are {"error":"..."}. The flows are walked by each queue's worker
// between its packets (nfq.Worker.Flows), in bounded steps.

type ctlRequest struct {
	Op     string `json:"op"`
	Filter string `json:"filter"`
}

type ctlWindow struct {
	Lo uint32 `json:"lo"`
	Hi uint32 `json:"hi"`
}

type ctlDir struct {
	Seen   bool      `json:"seen"`
	End    uint32    `json:"end"`
	Ack    uint32    `json:"ack"`
	Win    uint32    `json:"win"`
	MaxWin uint32    `json:"max_win"`
	WScale uint8     `json:"wscale"`
	TTL    uint8     `json:"ttl"`      // of its first accepted packet: the baseline
	TTLNow uint8     `json:"ttl_last"` // of its latest
	Window ctlWindow `json:"window"`   // where this side's segments and resets must fall
}

type ctlFlow struct {
	Queue    uint16  `json:"queue"`
	Src      string  `json:"src"`
	Dst      string  `json:"dst"`
	State    string  `json:"state"`
	Age      float64 `json:"age_seconds"`
	Idle     float64 `json:"idle_seconds"`
	PickedUp bool    `json:"picked_up"`
	OneWay   bool    `json:"one_way"`
	Original ctlDir  `json:"original"`
	Reply    ctlDir  `json:"reply"`
}

func toCtlFlow(f *nfq.FlowInfo) ctlFlow {
	dir := func(d nfq.DirInfo) ctlDir {
		return ctlDir{Seen: d.Seen, End: d.End, Ack: d.Ack, Win: d.Win, MaxWin: d.MaxWin, WScale: d.WScale, TTL: d.TTL, TTLNow: d.LastTTL,
			Window: ctlWindow{d.WinLo, d.WinHi}}
	}
	return ctlFlow{Queue: f.Queue, Src: f.Src.String(), Dst: f.Dst.String(), State: f.State.String(),
		Age: f.Age.Seconds(), Idle: f.Idle.Seconds(), PickedUp: f.PickedUp, OneWay: f.OneWay,
		Original: dir(f.Dir[conntrack.Original]), Reply: dir(f.Dir[conntrack.Reply])}
}

type ctlQueue struct {
	Queue   uint16 `json:"queue"`
	Bound   bool   `json:"bound"`
	Flows   int64  `json:"flows"`
	Limit   int    `json:"flow_limit"`
	Packets uint64 `json:"packets"`
	Flushed uint64 `json:"flushed"`
}

type ctlStatus struct {
	Version       string            `json:"version"`
	Uptime        float64           `json:"uptime_seconds"`
	ConfigFile    string            `json:"config_file"`
	ConfigSHA256  string            `json:"config_sha256,omitempty"`
	Settings      string            `json:"settings"`
	RestartNeeded []string          `json:"restart_required_for"`
	Queues        []ctlQueue        `json:"queues"`
	RulesetQueues []uint16          `json:"ruleset_queues"`
	Unbound       []uint16          `json:"ruleset_queues_not_bound"`
	Problems      []string          `json:"ruleset_problems"`
	Drops         map[string]uint64 `json:"drops"`
}

// fileHash is the SHA-256 of the configuration file as read ("" for the
// built-in defaults).
func fileHash(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// listenControl opens the control socket at path: a stale socket left by a
// daemon that died is removed, one another daemon listens on is an error.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another rstguard is listening on it; set [control] socket to another path", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s exists and is not a socket we can replace: %w", path, err)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o177) // the socket is created 0600
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// serveControl accepts control connections until ctx ends.
func (d *runDaemon) serveControl(ctx context.Context, ln net.Listener) {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("control socket accept failed; control is off until the next restart", "err", err)
			}
			return
		}
		go d.controlConn(ctx, c)
	}
}

func (d *runDaemon) controlConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 4096)).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return
	}
	bw := bufio.NewWriter(c)
	defer bw.Flush()
	enc := json.NewEncoder(bw)
	fail := func(format string, args ...any) { enc.Encode(map[string]string{"error": fmt.Sprintf(format, args...)}) }
	var req ctlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		fail("bad request: %v", err)
		return
	}
	var filter flowfilter.Filter // "" and "all": every flow
	if req.Filter != "" && req.Filter != "all" {
		if filter, err = flowfilter.Parse(req.Filter, true); err != nil {
			fail("%v", err)
			return
		}
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	switch req.Op {
	case "flows":
		n := 0
		for _, w := range d.workers {
			err := w.Flows(rctx, &filter, func(fs []nfq.FlowInfo) error {
				for i := range fs {
					if err := enc.Encode(toCtlFlow(&fs[i])); err != nil {
						return err
					}
				}
				n += len(fs)
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				return nil
			})
			if err != nil {
				fail("queue %d: %v", w.Queue(), err)
				return
			}
		}
		enc.Encode(map[string]any{"end": true, "flows": n})
	case "flush":
		if req.Filter == "" {
			fail(`flush needs a filter; "flush all" removes every flow`)
			return
		}
		total := 0
		for _, w := range d.workers {
			n, err := w.Flush(rctx, &filter)
			total += n
			if err != nil {
				fail("queue %d: %v (flushed %d)", w.Queue(), err, total)
				return
			}
		}
		d.log.Info("flows flushed through the control socket", "filter", filter.String(), "flushed", total)
		enc.Encode(map[string]int{"flushed": total})
	case "status":
		enc.Encode(d.status())
	default:
		fail("unknown op %q: use flows, flush or status", req.Op)
	}
}

func (d *runDaemon) status() ctlStatus {
	cfg := d.cfgNow.Load()
	st := ctlStatus{
		Version: buildVersion(), Uptime: time.Since(d.started).Seconds(),
		ConfigFile: cfg.file, ConfigSHA256: cfg.hash, Settings: cfg.summary, RestartNeeded: cfg.restart,
		Drops: map[string]uint64{}, RulesetQueues: []uint16{}, Unbound: []uint16{}, Problems: []string{},
	}
	if st.ConfigFile == "" {
		st.ConfigFile = "(built-in defaults)"
	}
	for _, w := range d.workers {
		ts := w.Engine().Table().Stats()
		var flows int64
		for s := range ts.Flows {
			flows += ts.Flows[s].Load()
		}
		st.Queues = append(st.Queues, ctlQueue{Queue: w.Queue(), Bound: w.Stats().Bound.Load(), Flows: flows,
			Limit: cfg.flowLimit, Packets: w.Stats().Packets.Load(), Flushed: w.Stats().Flushed.Load()})
		es := w.Engine().Stats()
		for r := range policy.NumReasons {
			if policy.Reason(r).Verdict() == policy.Drop {
				if n := es.Reasons[r].Load(); n > 0 {
					st.Drops[policy.Reason(r).String()] += n
				}
			}
		}
	}
	if rs := d.rules.Load(); rs != nil {
		st.RulesetQueues, st.Unbound = rs.queues, rs.unbound
	}
	for p := range d.proc.Problems {
		if d.proc.Problems[p].Load() {
			st.Problems = append(st.Problems, metrics.RulesetProblem(p).String())
		}
	}
	return st
}

// runningConfig is what status reports about the configuration in force.
type runningConfig struct {
	file, hash, summary string
	restart             []string // keys changed in the file that need a restart
	flowLimit           int
}

// rulesSeen is the last read of the live rules.
type rulesSeen struct{ queues, unbound []uint16 }
