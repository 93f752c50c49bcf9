package config

// The schema: every key of the file, as a tree of tables and values.

import (
	"math"
	"strings"
	"time"
)

// keyName writes a key path the way messages name it: "[policy] rst_mode",
// "[conntrack.timeouts] syn_sent", "[bogus]" for a table, "foo" at the top.
func keyName(path []string) string {
	switch len(path) {
	case 0:
		return ""
	case 1:
		if n := schema.child(path[0]); n != nil && n.isTable() {
			return "[" + path[0] + "]"
		}
		return path[0]
	}
	last := path[len(path)-1]
	if n := schema.find(path); n != nil && n.isTable() {
		return "[" + strings.Join(path, ".") + "]"
	}
	return "[" + strings.Join(path[:len(path)-1], ".") + "] " + last
}

// node is one key of the schema: a table with children, or a value with a
// decode function that sets it in the Config.
type node struct {
	name     string
	children []*node
	decode   func(d *decoder, path []string, v any, c *Config)
}

func (n *node) isTable() bool { return n.children != nil }

func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (n *node) find(path []string) *node {
	for _, p := range path {
		if n = n.child(p); n == nil {
			return nil
		}
	}
	return n
}

func (n *node) names() []string {
	var s []string
	for _, c := range n.children {
		s = append(s, c.name)
	}
	return s
}

// schema lists every key. config.example.toml documents each one; tests
// check the three agree (schema, Config's toml tags, the example). It is
// built in init because the decode functions refer back to it for messages.
var schema *node

func init() { schema = buildSchema() }

func buildSchema() *node {
	return &node{children: []*node{
		{name: "queue", children: []*node{
			{name: "numbers", decode: decodeQueueNumbers},
			boolKey("fail_open", func(c *Config) *bool { return &c.Queue.FailOpen }),
			boolKey("gso", func(c *Config) *bool { return &c.Queue.GSO }),
			intKey("max_queue_len", 1, math.MaxUint32, "", func(c *Config) *uint32 { return &c.Queue.MaxQueueLen }),
			intKey("copy_range", MinCopyRange, MaxCopyRange,
				"; 128 bytes hold the largest IPv4 and TCP headers, and more copies payload for nothing",
				func(c *Config) *uint32 { return &c.Queue.CopyRange }),
			intKey("socket_receive_buffer", MinSocketReceiveBuffer, MaxSocketReceiveBuffer, " (bytes; the default is 4194304, 4 MiB)",
				func(c *Config) *int { return &c.Queue.SocketReceiveBuffer }),
			markKey("mark_accept", func(c *Config) **MaskedMark { return &c.Queue.MarkAccept }),
			markKey("mark_drop", func(c *Config) **MaskedMark { return &c.Queue.MarkDrop }),
		}},
		{name: "conntrack", children: []*node{
			intKey("max_flows", MinMaxFlows, MaxMaxFlows, " (flows for the whole daemon, split between the queues)",
				func(c *Config) *int { return &c.Conntrack.MaxFlows }),
			boolKey("pickup", func(c *Config) *bool { return &c.Conntrack.Pickup }),
			{name: "timeouts", children: []*node{
				durationKey("syn_sent", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.SynSent }),
				durationKey("syn_recv", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.SynRecv }),
				durationKey("established", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.Established }),
				durationKey("fin_wait", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.FinWait }),
				durationKey("close_wait", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.CloseWait }),
				durationKey("last_ack", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.LastAck }),
				durationKey("time_wait", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.TimeWait }),
				durationKey("closed", func(c *Config) *time.Duration { return &c.Conntrack.Timeouts.Closed }),
			}},
		}},
		{name: "policy", children: []*node{
			enumKey("mode", []string{"enforce", "monitor"}, func(c *Config) *string { return &c.Policy.Mode }),
			{name: "override", decode: decodeOverrides},
			enumKey("rst_mode", []string{"window", "exact"}, func(c *Config) *string { return &c.Policy.RSTMode }),
			enumKey("unknown_flow_rst", []string{"accept", "drop"}, func(c *Config) *string { return &c.Policy.UnknownFlowRST }),
			boolKey("drop_out_of_window", func(c *Config) *bool { return &c.Policy.DropOutOfWindow }),
		}},
		{name: "metrics", children: []*node{
			{name: "listen", decode: decodeListen},
		}},
		{name: "log", children: []*node{
			enumKey("level", []string{"debug", "info", "warn", "error"}, func(c *Config) *string { return &c.Log.Level }),
			enumKey("format", []string{"auto", "text", "json", "journal"}, func(c *Config) *string { return &c.Log.Format }),
			{name: "rate_limit", decode: decodeRateLimit},
			intKey("burst", 1, MaxLogBurst, " (per-packet log lines allowed at once)", func(c *Config) *int { return &c.Log.Burst }),
		}},
		{name: "guard", children: []*node{
			{name: "judged_mark", decode: decodeMaskedMark},
		}},
		{name: "control", children: []*node{
			{name: "socket", decode: func(d *decoder, path []string, v any, c *Config) {
				decodeAbsPath(d, path, v, &c.Control.Socket, DefaultControlSocket)
			}},
		}},
		{name: "injection", children: []*node{
			enumKey("mode", []string{"off", "log", "hold"}, func(c *Config) *string { return &c.Injection.Mode }),
			intKey("ttl_tolerance", 0, 64, " (hops a reset's TTL may differ from its sender's before it counts as evidence)",
				func(c *Config) *int { return &c.Injection.TTLTolerance }),
			durationRangeKey("max_hold", MinMaxHold, MaxMaxHold, "from 1ms to 1s",
				func(c *Config) *time.Duration { return &c.Injection.MaxHold }),
			intKey("max_held", 1, MaxMaxHeld, " (resets held at once per queue)",
				func(c *Config) *int { return &c.Injection.MaxHeld }),
		}},
		{name: "events", children: []*node{
			{name: "path", decode: func(d *decoder, path []string, v any, c *Config) {
				decodeAbsPath(d, path, v, &c.Events.Path, "/var/log/rstguard/events.jsonl")
			}},
			boolKey("journal", func(c *Config) *bool { return &c.Events.Journal }),
			intKey("ring_size", MinEventRing, MaxEventRing, " (events per queue waiting to be written)",
				func(c *Config) *int { return &c.Events.RingSize }),
		}},
	}}
}
