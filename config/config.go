// Package config turns rstguard's TOML configuration (SPEC section 6) into
// typed settings. The daemon and the replay tool load the very same structs,
// so both decide alike.
//
// Every mistake a user can make — TOML syntax, an unknown key, a value of the
// wrong type, a value out of range — is reported as a *Error naming the file,
// the line and the key, with a hint on how to fix it. All mistakes of a file
// are reported at once (errors.Join), sorted by line. config.example.toml at
// the repository root documents every key with its default; a test keeps it
// equal to Default.
//
// It imports the engine packages (for their Config types) and BurntSushi/toml, never nfq, replay, metrics or cmd.
package config

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
)

// Config is the whole configuration. The toml tags name the keys; the
// [conntrack.timeouts] keys are the snake_case names of conntrack.Timeouts'
// fields (syn_sent, ..., closed).
type Config struct {
	File      string    `toml:"-"` // path it was loaded from ("" for defaults)
	Queue     Queue     `toml:"queue"`
	Conntrack Conntrack `toml:"conntrack"`
	Policy    Policy    `toml:"policy"`
	Metrics   Metrics   `toml:"metrics"`
	Log       Log       `toml:"log"`
	Guard     Guard     `toml:"guard"`
	Events    Events    `toml:"events"`
	Control   Control   `toml:"control"`
	Injection Injection `toml:"injection"`
}

// Injection is [injection]: what rstguard does about resets that pass
// every window check but may have been forged by an observer on the path,
// who sees the sequence numbers (Weaver, Sommer, Paxson, "Detecting Forged
// TCP Reset Packets", NDSS 2009).
type Injection struct {
	// Mode is "off" (no checks), "log" (accepted resets are checked after
	// the fact against what followed, counted and logged) or "hold" (a
	// reset that passed every other check waits in the queue for up to
	// MaxHold; if its purported sender shows it did not reset, the reset
	// is dropped as rst_injected).
	Mode string `toml:"mode"`
	// TTLTolerance is how many hops a reset's IP TTL (hop limit) may differ
	// from its claimed sender's other packets before that counts as
	// evidence (never as a reason to drop on its own).
	TTLTolerance int `toml:"ttl_tolerance"`
	// MaxHold is how long "hold" keeps a reset.
	MaxHold time.Duration `toml:"max_hold"`
	// MaxHeld bounds the resets held at once per queue; when full, new
	// resets are judged without a hold (counted).
	MaxHeld int `toml:"max_held"`
}

// Guard is [guard]: how rstguard and the shipped firewall rules keep resets
// it did not judge from being delivered (deploy/iptables.rules).
// Control configures the control socket (rstguard flows, status).
type Control struct {
	// Socket is the Unix socket's path (mode 0600); "" turns it off.
	Socket string `toml:"socket"`
}

// Events configures the event log (package events): one JSON line per
// dropped packet and per reset decision.
type Events struct {
	// Path is the file the lines are appended to, reopened on SIGHUP
	// (logrotate); "" writes no file.
	Path string `toml:"path"`
	// Journal also writes every line to standard output, which systemd
	// stores in the journal.
	Journal bool `toml:"journal"`
	// RingSize is each queue's buffer of events waiting to be written;
	// when it is full, events are counted in rstguard_events_lost_total.
	RingSize int `toml:"ring_size"`
}

type Guard struct {
	// JudgedMark is written on every packet rstguard accepts: the mark bits
	// of Mask are replaced by Value, the packet's other bits are kept. The
	// shipped rules drop resets that reached the queue rule without it
	// (daemon down, queue full, queue not bound). A zero Mask turns it off.
	JudgedMark MaskedMark `toml:"judged_mark"`
}

// MaskedMark is a packet mark "VALUE/MASK": the bits of Mask are set to
// Value, the others are left as they are.
type MaskedMark struct{ Value, Mask uint32 }

// String is the mark as written in the file: "off" for no mask, the bare
// value for a whole mark, else VALUE/MASK.
func (m MaskedMark) String() string {
	switch m.Mask {
	case 0:
		return "off"
	case 0xffffffff:
		return fmt.Sprintf("%#x", m.Value)
	}
	return fmt.Sprintf("%#x/%#x", m.Value, m.Mask)
}

// Default mark bits of the shipped rules (deploy/iptables.rules): the rules
// set QueuedBit on every packet that reaches the queue rule, rstguard sets
// JudgedBit on every packet it accepts.
const (
	QueuedBit = 0x20000000
	JudgedBit = 0x40000000
)

// Queue is [queue]: which NFQUEUE queues to bind and how.
type Queue struct {
	// Numbers are the queues to bind, one worker each. In TOML an array of
	// integers ([0, 1, 2]), one integer, or an iptables --queue-balance range
	// string ("0:3", both ends included).
	Numbers []uint16 `toml:"numbers"`
	// FailOpen asks the kernel to accept packets while the queue is full
	// instead of dropping them (NFQA_CFG_F_FAIL_OPEN).
	FailOpen bool `toml:"fail_open"`
	// GSO lets the kernel queue GSO super-packets unsegmented
	// (NFQA_CFG_F_GSO).
	GSO bool `toml:"gso"`
	// MaxQueueLen is the kernel queue's length in packets.
	MaxQueueLen uint32 `toml:"max_queue_len"`
	// CopyRange is how many bytes of each packet the kernel copies to us:
	// enough for the headers only.
	CopyRange uint32 `toml:"copy_range"`
	// SocketReceiveBuffer is the netlink socket's receive buffer in bytes.
	SocketReceiveBuffer int `toml:"socket_receive_buffer"`
	// MarkAccept, when set, is the packet mark set on accepted packets.
	MarkAccept *MaskedMark `toml:"mark_accept"`
	// MarkDrop, when set, switches to "mark instead of drop": packets the
	// policy drops are accepted with this mark, for a firewall rule to log or
	// drop (a staged rollout). A dropped packet cannot carry a mark anywhere,
	// so this is the only useful meaning of a drop mark.
	MarkDrop *MaskedMark `toml:"mark_drop"`
}

// Conntrack is [conntrack]: the flow table.
type Conntrack struct {
	// MaxFlows bounds the flows of the whole daemon; it is split evenly
	// between the queues' tables (TableConfig).
	MaxFlows int `toml:"max_flows"`
	// Pickup lets a mid-stream packet of an unknown flow create a flow
	// (SPEC section 3).
	Pickup bool `toml:"pickup"`
	// Timeouts are [conntrack.timeouts], the idle timeouts per state.
	Timeouts conntrack.Timeouts `toml:"timeouts"`
}

// Policy is [policy]: how resets and other segments are judged.
type Policy struct {
	// Mode is "enforce" (verdicts as decided) or "monitor" (decide and
	// count everything, accept every packet).
	Mode            string `toml:"mode"`
	RSTMode         string `toml:"rst_mode"`           // "window" or "exact"
	UnknownFlowRST  string `toml:"unknown_flow_rst"`   // "accept" or "drop"
	DropOutOfWindow bool   `toml:"drop_out_of_window"` // drop non-reset segments outside the window
	// Overrides are the [[policy.override]] entries, in file order.
	Overrides []policy.Override `toml:"override"`
}

// Metrics is [metrics].
type Metrics struct {
	// Listen is the host:port of the /metrics, /healthz and /readyz
	// listener; "" disables it.
	Listen string `toml:"listen"`
}

// Log is [log].
type Log struct {
	Level     string  `toml:"level"`      // debug, info, warn or error
	Format    string  `toml:"format"`     // auto, text, json or journal (LogFormat* constants)
	RateLimit float64 `toml:"rate_limit"` // per-packet log lines per second; 0 disables them
	Burst     int     `toml:"burst"`      // per-packet log lines allowed in a burst
}

// [log] format values.
const (
	// LogFormatAuto is LogFormatJournal when standard error is the
	// journal's stream (systemd sets JOURNAL_STREAM, systemd.exec(5)), else
	// LogFormatText.
	LogFormatAuto = "auto"
	// LogFormatText is logfmt, key=value pairs, one record per line.
	LogFormatText = "text"
	// LogFormatJSON is one JSON object per line.
	LogFormatJSON = "json"
	// LogFormatJournal is LogFormatText without the time (the journal
	// stamps each entry) and with each line prefixed by its syslog priority,
	// "<4>" for a warning (sd-daemon(3)), which journald strips and stores
	// as the entry's PRIORITY.
	LogFormatJournal = "journal"
)

// Defaults of the keys that have no default elsewhere.
const (
	DefaultMaxFlows            = 1 << 20
	DefaultMaxQueueLen         = 8192
	DefaultCopyRange           = 256
	DefaultSocketReceiveBuffer = 4 << 20
	DefaultMetricsListen       = "127.0.0.1:9813"
	DefaultLogRateLimit        = 10
	DefaultLogBurst            = 20
	DefaultEventRing           = 1 << 16
	DefaultControlSocket       = "/run/rstguard/control.sock"
	DefaultTTLTolerance        = 2
	DefaultMaxHold             = 50 * time.Millisecond
	DefaultMaxHeld             = policy.DefaultMaxHeld
)

// Limits enforced on values.
const (
	// MinCopyRange holds an IPv4 header with options (60 bytes) and a TCP
	// header with options (60 bytes), rounded up.
	MinCopyRange = 128
	MaxCopyRange = 65535
	// MinMaxFlows keeps a table from thrashing on eviction.
	MinMaxFlows = 1024
	// MaxMaxFlows is 2^27 flows, about 32 GiB of table at 256 bytes each.
	MaxMaxFlows                    = 1 << 27
	MinSocketReceiveBuffer         = 64 << 10
	MaxSocketReceiveBuffer         = 1 << 30
	MinTimeout                     = time.Second
	MaxTimeout                     = 365 * 24 * time.Hour
	MaxLogBurst                    = 1 << 20
	MinEventRing                   = 1 << 10
	MaxEventRing                   = 1 << 22
	MaxLogRateLimit        float64 = 1e6
	MinMaxHold                     = time.Millisecond
	MaxMaxHold                     = time.Second
	MaxMaxHeld                     = 1 << 16
)

// Default returns the built-in configuration: what an empty file gives.
func Default() *Config {
	return &Config{
		Queue: Queue{
			// The shipped rules queue with --queue-balance 0:1
			// (deploy/iptables.rules): widen both together.
			Numbers:             []uint16{0, 1},
			FailOpen:            true,
			GSO:                 true,
			MaxQueueLen:         DefaultMaxQueueLen,
			CopyRange:           DefaultCopyRange,
			SocketReceiveBuffer: DefaultSocketReceiveBuffer,
		},
		Conntrack: Conntrack{
			MaxFlows: DefaultMaxFlows,
			Pickup:   true,
			Timeouts: conntrack.DefaultTimeouts(),
		},
		Policy: Policy{
			Mode:           "enforce",
			RSTMode:        "window",
			UnknownFlowRST: "accept",
		},
		Metrics: Metrics{Listen: DefaultMetricsListen},
		Guard:   Guard{JudgedMark: MaskedMark{Value: JudgedBit, Mask: JudgedBit}},
		Events:  Events{RingSize: DefaultEventRing},
		Control: Control{Socket: DefaultControlSocket},
		Injection: Injection{
			Mode:         "log",
			TTLTolerance: DefaultTTLTolerance,
			MaxHold:      DefaultMaxHold,
			MaxHeld:      DefaultMaxHeld,
		},
		Log: Log{
			Level:     "info",
			Format:    LogFormatAuto,
			RateLimit: DefaultLogRateLimit,
			Burst:     DefaultLogBurst,
		},
	}
}

// PolicyConfig maps [policy] to the engine's settings.
func (c *Config) PolicyConfig() policy.Config {
	pc := policy.DefaultConfig()
	if c.Policy.RSTMode == "exact" {
		pc.RSTMode = policy.RSTModeExact
	} else {
		pc.RSTMode = policy.RSTModeWindow
	}
	pc.DropUnknownFlowRST = c.Policy.UnknownFlowRST == "drop"
	pc.DropOutOfWindow = c.Policy.DropOutOfWindow
	pc.Overrides = c.Policy.Overrides
	switch c.Injection.Mode {
	case "off":
		pc.Injection.Mode = policy.InjectionOff
	case "hold":
		pc.Injection.Mode = policy.InjectionHold
	default:
		pc.Injection.Mode = policy.InjectionLog
	}
	pc.Injection.TTLTolerance = uint8(c.Injection.TTLTolerance)
	pc.Injection.MaxHold = int64(c.Injection.MaxHold)
	return pc
}

// TableConfig is the configuration of one of shards tables: max_flows split
// evenly between them (rounded up, so the shards together hold at least
// max_flows), the timeouts and pickup. shards below 1 counts as 1.
func (c *Config) TableConfig(shards int) conntrack.Config {
	if shards < 1 {
		shards = 1
	}
	return conntrack.Config{
		MaxFlows: (c.Conntrack.MaxFlows + shards - 1) / shards,
		Timeouts: c.Conntrack.Timeouts,
		Pickup:   c.Conntrack.Pickup,
	}
}

// SlogLevel maps [log] level to a slog level (info for anything else).
func (c *Config) SlogLevel() slog.Level {
	switch c.Log.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Summary is a one-line description of the effective settings, for
// check-config and the daemon's start-up log line.
func (c *Config) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "queues %s", QueueList(c.Queue.Numbers))
	fmt.Fprintf(&b, " (fail_open=%t gso=%t max_queue_len=%d copy_range=%d socket_receive_buffer=%d",
		c.Queue.FailOpen, c.Queue.GSO, c.Queue.MaxQueueLen, c.Queue.CopyRange, c.Queue.SocketReceiveBuffer)
	if c.Queue.MarkAccept != nil {
		fmt.Fprintf(&b, " mark_accept=%s", c.Queue.MarkAccept)
	}
	if c.Queue.MarkDrop != nil {
		fmt.Fprintf(&b, " mark_drop=%s (drops are marked, not dropped)", c.Queue.MarkDrop)
	}
	b.WriteString(")")
	fmt.Fprintf(&b, "; max_flows %d (%d per queue) pickup=%t; rst_mode=%s unknown_flow_rst=%s drop_out_of_window=%t",
		c.Conntrack.MaxFlows, c.TableConfig(len(c.Queue.Numbers)).MaxFlows, c.Conntrack.Pickup,
		c.Policy.RSTMode, c.Policy.UnknownFlowRST, c.Policy.DropOutOfWindow)
	if c.Metrics.Listen == "" {
		b.WriteString("; metrics off")
	} else {
		fmt.Fprintf(&b, "; metrics on %s", c.Metrics.Listen)
	}
	fmt.Fprintf(&b, "; log %s %s, %g lines/s burst %d", c.Log.Level, c.Log.Format, c.Log.RateLimit, c.Log.Burst)
	fmt.Fprintf(&b, "; judged_mark %s", c.Guard.JudgedMark)
	if c.Policy.Mode == "monitor" {
		b.WriteString("; mode=monitor (nothing is dropped)")
	}
	fmt.Fprintf(&b, "; injection %s (ttl_tolerance=%d", c.Injection.Mode, c.Injection.TTLTolerance)
	if c.Injection.Mode == "hold" {
		fmt.Fprintf(&b, " max_hold=%v max_held=%d", c.Injection.MaxHold, c.Injection.MaxHeld)
	}
	b.WriteString(")")
	if n := len(c.Policy.Overrides); n > 0 {
		fmt.Fprintf(&b, "; %d [[policy.override]]", n)
	}
	return b.String()
}

// QueueList formats queue numbers compactly, with runs as ranges: "0-3,7".
func QueueList(qs []uint16) string {
	var b strings.Builder
	for i := 0; i < len(qs); {
		j := i
		for j+1 < len(qs) && qs[j+1] == qs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", qs[i], qs[j])
		} else {
			fmt.Fprintf(&b, "%d", qs[i])
		}
		i = j + 1
	}
	return b.String()
}
