package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/rstguard/rstguard/config/queuerange"
)

// Load reads and parses the file at path. An empty file gives Default with
// File set. Errors: see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		why := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			why = pe.Err // the path is already in the message
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read the configuration: %v", why) + readHint(err)}
	}
	return Parse(path, data)
}

func readHint(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "; give the path of an existing file (config.example.toml documents every key)"
	case errors.Is(err, os.ErrPermission):
		return "; make the file readable by the user rstguard runs as"
	}
	return ""
}

// Parse parses data, the contents of the file name (used in errors and
// stored in File). Keys not given keep their Default value. The error is a
// *Error or several joined with errors.Join, sorted by line: a TOML syntax
// error (the parser stops at the first), or every unknown key, wrong type and
// bad value of the file.
func Parse(name string, data []byte) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, syntaxError(name, err)
	}
	d := &decoder{file: name, pos: locate(string(data))}
	c := Default()
	c.File = name
	d.table(schema, nil, raw, c)
	d.crossChecks(c)
	if err := join(d.errs); err != nil {
		return nil, err
	}
	return c, nil
}

func syntaxError(name string, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: name, Msg: "cannot parse the configuration: " + err.Error()}
	}
	key := ""
	if pe.LastKey != "" {
		key = keyName(strings.Split(pe.LastKey, "."))
	}
	return &Error{
		File: name, Line: pe.Position.Line, Column: pe.Position.Col, Key: key,
		Msg: fmt.Sprintf("TOML syntax error at column %d: %s; fix the syntax (strings take double quotes, sections are [name] on a line of their own; config.example.toml shows every key)",
			pe.Position.Col, pe.Message),
	}
}

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
			markKey("mark_accept", func(c *Config) **uint32 { return &c.Queue.MarkAccept }),
			markKey("mark_drop", func(c *Config) **uint32 { return &c.Queue.MarkDrop }),
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
	}}
}

type decoder struct {
	file string
	pos  map[string]position
	errs []*Error
}

// errorf records a mistake at path.
func (d *decoder) errorf(path []string, format string, args ...any) {
	d.errorAt(path, keyName(path), format, args...)
}

// errorAt records a mistake at path, naming the key as key.
func (d *decoder) errorAt(path []string, key, format string, args ...any) {
	p := d.pos[pathKey(path)]
	d.errs = append(d.errs, &Error{
		File: d.file, Line: p.line, Column: p.col, Key: key,
		Msg: fmt.Sprintf(format, args...),
	})
}

// table decodes the TOML table m at path against the schema node n.
func (d *decoder) table(n *node, path []string, m map[string]any, c *Config) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		kp := append(append([]string(nil), path...), k)
		child := n.child(k)
		switch {
		case child == nil:
			d.unknown(n, kp, v)
		case child.isTable():
			sub, ok := v.(map[string]any)
			if !ok {
				d.errorf(kp, "must be a table, not %s; write it as a section header [%s] followed by its keys",
					describe(v), strings.Join(kp, "."))
				continue
			}
			d.table(child, kp, sub, c)
		default:
			child.decode(d, kp, v, c)
		}
	}
}

// unknown reports a key the schema does not have, with the best hint: where
// it belongs, what it may be a misspelling of, or what the table holds.
func (d *decoder) unknown(parent *node, path []string, v any) {
	name := path[len(path)-1]
	if _, isTable := v.(map[string]any); isTable {
		key := "[" + strings.Join(path, ".") + "]"
		if len(path) == 1 {
			d.errorAt(path, key, "unknown section; the sections are %s", listOf(parent.names(), "[", "]"))
			return
		}
		d.errorAt(path, key, "unknown table; the keys of [%s] are %s", strings.Join(path[:len(path)-1], "."),
			listOf(parent.names(), "", ""))
		return
	}
	if home := homeOf(name); home != nil && !slices.Equal(home, path[:len(path)-1]) {
		d.errorf(path, "unknown key here; %s belongs in [%s]", name, strings.Join(home, "."))
		return
	}
	hint := ""
	if s := closest(name, parent.names()); s != "" {
		hint = fmt.Sprintf("did you mean %q? ", s)
	}
	if len(path) == 1 {
		d.errorf(path, "unknown key; %skeys go in one of the sections %s", hint, listOf(parent.names(), "[", "]"))
		return
	}
	d.errorf(path, "unknown key; %sthe keys of [%s] are %s", hint, strings.Join(path[:len(path)-1], "."),
		listOf(parent.names(), "", ""))
}

// homeOf finds the table path of the one schema value key called name.
func homeOf(name string) []string {
	var found [][]string
	var walk func(n *node, path []string)
	walk = func(n *node, path []string) {
		for _, c := range n.children {
			p := append(append([]string(nil), path...), c.name)
			if c.name == name && !c.isTable() {
				found = append(found, path)
			}
			walk(c, p)
		}
	}
	walk(schema, nil)
	if len(found) == 1 {
		return found[0]
	}
	return nil
}

// closest returns the candidate nearest to s, if exactly one is nearest and
// it is a likely misspelling: at most 2 edits, and at most a third of s.
func closest(s string, candidates []string) string {
	best, bestD, ties := "", min(3, len(s)/3+1), 0
	for _, c := range candidates {
		switch d := editDistance(strings.ToLower(s), c); {
		case d < bestD:
			best, bestD, ties = c, d, 0
		case d == bestD:
			ties++
		}
	}
	if ties > 0 {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func listOf(names []string, pre, post string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pre + n + post
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// describe names a TOML value's type and the value, for type errors.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

func boolKey(name string, field func(*Config) *bool) *node {
	return &node{name: name, decode: func(d *decoder, path []string, v any, c *Config) {
		b, ok := v.(bool)
		if !ok {
			d.errorf(path, "must be true or false (without quotes), not %s", describe(v))
			return
		}
		*field(c) = b
	}}
}

// intKey decodes an integer in [lo, hi]; what is appended to range errors.
func intKey[T int | uint32](name string, lo, hi int64, what string, field func(*Config) *T) *node {
	return &node{name: name, decode: func(d *decoder, path []string, v any, c *Config) {
		n, ok := v.(int64)
		if !ok {
			d.errorf(path, "must be an integer from %d to %d%s, not %s", lo, hi, what, describe(v))
			return
		}
		if n < lo || n > hi {
			d.errorf(path, "%d is out of range; use an integer from %d to %d%s", n, lo, hi, what)
			return
		}
		*field(c) = T(n)
	}}
}

// markKey decodes an optional 32-bit packet mark.
func markKey(name string, field func(*Config) **uint32) *node {
	return &node{name: name, decode: func(d *decoder, path []string, v any, c *Config) {
		n, ok := v.(int64)
		if !ok || n < 0 || n > math.MaxUint32 {
			d.errorf(path, "must be a packet mark, an integer from 0 to 4294967295 (0xffffffff), not %s; leave the key out for no mark", describe(v))
			return
		}
		m := uint32(n)
		*field(c) = &m
	}}
}

// decodeMaskedMark decodes a "VALUE/MASK" mark such as "0x40000000/0x40000000"
// (iptables --set-xmark notation); "" or "0/0" turns it off.
func decodeMaskedMark(d *decoder, path []string, v any, c *Config) {
	const how = `write "VALUE/MASK" such as "0x40000000/0x40000000" (the bits of MASK are set to VALUE, the packet's other mark bits are kept), or "" to turn it off`
	s, ok := v.(string)
	if !ok {
		d.errorf(path, "must be a string, not %s; %s", describe(v), how)
		return
	}
	if strings.TrimSpace(s) == "" {
		c.Guard.JudgedMark = MaskedMark{}
		return
	}
	vs, ms, found := strings.Cut(s, "/")
	val, err1 := strconv.ParseUint(strings.TrimSpace(vs), 0, 32)
	mask, err2 := strconv.ParseUint(strings.TrimSpace(ms), 0, 32)
	switch {
	case !found || err1 != nil || err2 != nil:
		d.errorf(path, "%q is not a mark; %s", s, how)
	case val&^mask != 0:
		d.errorf(path, "%q sets bits outside its mask (%#x); the value must lie within the mask", s, val&^mask)
	case mask != 0 && val == 0:
		d.errorf(path, "%q clears the bits it owns instead of setting them, so the shipped rules would see no packet as judged; give the value the mask's bits", s)
	default:
		c.Guard.JudgedMark = MaskedMark{Value: uint32(val), Mask: uint32(mask)}
	}
}

func enumKey(name string, allowed []string, field func(*Config) *string) *node {
	return &node{name: name, decode: func(d *decoder, path []string, v any, c *Config) {
		s, ok := v.(string)
		if !ok || !slices.Contains(allowed, s) {
			what := describe(v)
			if ok {
				what = strconv.Quote(s)
			}
			d.errorf(path, "%s is not a valid value; use %s", what, orList(allowed))
			return
		}
		*field(c) = s
	}}
}

func orList(allowed []string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// durationKey decodes a timeout: a Go duration string ("120s", "5m",
// "120h") or an integer number of seconds, from MinTimeout to MaxTimeout.
func durationKey(name string, field func(*Config) *time.Duration) *node {
	return &node{name: name, decode: func(d *decoder, path []string, v any, c *Config) {
		const how = `use a duration such as "120s", "30m" or "120h" (Go syntax: units ns, us, ms, s, m, h; no "d", write 5 days as "120h") or an integer number of seconds`
		var dur time.Duration
		switch v := v.(type) {
		case string:
			var err error
			if dur, err = time.ParseDuration(strings.TrimSpace(v)); err != nil {
				d.errorf(path, "%q is not a duration; %s", v, how)
				return
			}
		case int64:
			if v < 0 || v > int64(MaxTimeout/time.Second) {
				d.errorf(path, "%d seconds is out of range; use %d to %d seconds", v, int64(MinTimeout/time.Second), int64(MaxTimeout/time.Second))
				return
			}
			dur = time.Duration(v) * time.Second
		default:
			d.errorf(path, "must be a duration, not %s; %s", describe(v), how)
			return
		}
		if dur < MinTimeout || dur > MaxTimeout {
			d.errorf(path, "%v is out of range; use a timeout from 1s to 8760h (365 days)", dur)
			return
		}
		*field(c) = dur
	}}
}

// decodeQueueNumbers decodes [queue] numbers: an array of integers, one
// integer, or an iptables --queue-balance range "FIRST:LAST" (both included).
func decodeQueueNumbers(d *decoder, path []string, v any, c *Config) {
	const how = `write an array such as [0, 1, 2], or a range "0:3" as in iptables --queue-balance`
	var qs []uint16
	bad := false
	check := func(n int64) {
		if n < 0 || n > math.MaxUint16 {
			d.errorf(path, "queue %d is out of range; queue numbers go from 0 to 65535", n)
			bad = true
			return
		}
		qs = append(qs, uint16(n))
	}
	switch v := v.(type) {
	case int64:
		check(v)
	case []any:
		for _, e := range v {
			n, ok := e.(int64)
			if !ok {
				d.errorf(path, "queue numbers must be integers, not %s; %s", describe(e), how)
				return
			}
			check(n)
		}
	case string:
		a, b, ok := queuerange.Split(v)
		if !ok {
			d.errorf(path, "%q is not a queue range; %s", v, how)
			return
		}
		if a > b {
			d.errorf(path, "range %q runs backwards; write the lower queue first, e.g. \"%d:%d\"", v, b, a)
			return
		}
		if a < 0 || b > math.MaxUint16 {
			d.errorf(path, "range %q is out of range; queue numbers go from 0 to 65535", v)
			return
		}
		for n := a; n <= b; n++ {
			qs = append(qs, uint16(n))
		}
	default:
		d.errorf(path, "must be an array of queue numbers or a range string, not %s; %s", describe(v), how)
		return
	}
	if bad {
		return
	}
	if len(qs) == 0 {
		d.errorf(path, "no queues given; %s (the default is [0])", how)
		return
	}
	seen := make(map[uint16]bool, len(qs))
	for _, q := range qs {
		if seen[q] {
			d.errorf(path, "queue %d is listed twice; list each queue once", q)
			return
		}
		seen[q] = true
	}
	c.Queue.Numbers = qs
}

// decodeListen decodes [metrics] listen: "" or host:port with a port from 1
// to 65535 and a host that is empty (every address), an IP address or a
// host name.
func decodeListen(d *decoder, path []string, v any, c *Config) {
	const how = `use host:port such as "127.0.0.1:9813", "[::1]:9813" or ":9813" (every address), or "" to turn the listener off`
	s, ok := v.(string)
	if !ok {
		d.errorf(path, "must be a string, not %s; %s", describe(v), how)
		return
	}
	if s == "" {
		c.Metrics.Listen = ""
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		d.errorf(path, "%q is not a listen address; %s", s, how)
		return
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		d.errorf(path, "%q: the port must be a number from 1 to 65535 (Prometheus scrapes a fixed port); %s", s, how)
		return
	}
	if host != "" && !validHost(host) {
		d.errorf(path, "%q: %q is neither an IP address nor a host name; %s", s, host, how)
		return
	}
	c.Metrics.Listen = s
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if b := label[i]; !(isBare(b) && b != '_') {
				return false
			}
		}
	}
	return true
}

// decodeRateLimit decodes [log] rate_limit: lines per second, integer or
// float, finite, from 0 (per-packet lines off).
func decodeRateLimit(d *decoder, path []string, v any, c *Config) {
	var f float64
	switch v := v.(type) {
	case int64:
		f = float64(v)
	case float64:
		f = v
	default:
		d.errorf(path, "must be a number of log lines per second (e.g. 10 or 0.5; 0 turns per-packet lines off), not %s", describe(v))
		return
	}
	if math.IsNaN(f) || f < 0 || f > MaxLogRateLimit {
		d.errorf(path, "%v is out of range; use a number of lines per second from 0 (off) to %.0f", f, MaxLogRateLimit)
		return
	}
	c.Log.RateLimit = f
}

// crossChecks finds mistakes between keys, reported at the later key.
func (d *decoder) crossChecks(c *Config) {
	q := c.Queue
	if q.MarkAccept != nil && q.MarkDrop != nil && *q.MarkAccept == *q.MarkDrop {
		d.errorf([]string{"queue", "mark_drop"}, "equals mark_accept (%#x), so a firewall rule could not tell dropped packets from accepted ones; use two different marks", *q.MarkDrop)
	}
}
