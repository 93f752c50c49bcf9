package config

// Decoders of the kinds of value the schema holds, each with the message
// that tells the user how to write it.

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rstguard/rstguard/config/queuerange"
)

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
// markKey decodes an optional packet mark: an integer replaces the whole
// mark (mask 0xffffffff), a "VALUE/MASK" string only the bits of MASK,
// keeping the packet's other mark bits.
func markKey(name string, field func(*Config) **MaskedMark) *node {
	return &node{name: name, decode: func(d *decoder, path []string, v any, c *Config) {
		if s, ok := v.(string); ok {
			m, err := parseMaskedMark(s)
			if err != nil || m.Mask == 0 {
				d.errorf(path, "%q is not a mark: write an integer (the whole mark) or \"VALUE/MASK\" such as \"0x10/0xf0\" (only MASK's bits are set, the packet's others kept)", s)
				return
			}
			*field(c) = &m
			return
		}
		n, ok := v.(int64)
		if !ok || n < 0 || n > math.MaxUint32 {
			d.errorf(path, "must be a packet mark, an integer from 0 to 4294967295 (0xffffffff) or a \"VALUE/MASK\" string, not %s; leave the key out for no mark", describe(v))
			return
		}
		*field(c) = &MaskedMark{Value: uint32(n), Mask: 0xffffffff}
	}}
}

// parseMaskedMark parses "VALUE/MASK" (numbers in Go syntax: 0x.., decimal).
func parseMaskedMark(s string) (MaskedMark, error) {
	vs, ms, found := strings.Cut(s, "/")
	val, err1 := strconv.ParseUint(strings.TrimSpace(vs), 0, 32)
	mask, err2 := strconv.ParseUint(strings.TrimSpace(ms), 0, 32)
	switch {
	case !found || err1 != nil || err2 != nil:
		return MaskedMark{}, fmt.Errorf("%q is not VALUE/MASK", s)
	case val&^mask != 0:
		return MaskedMark{}, fmt.Errorf("%q sets bits outside its mask (%#x); the value must lie within the mask", s, val&^mask)
	}
	return MaskedMark{Value: uint32(val), Mask: uint32(mask)}, nil
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
	m, err := parseMaskedMark(s)
	switch {
	case err != nil && strings.Contains(err.Error(), "outside its mask"):
		d.errorf(path, "%v", err)
	case err != nil:
		d.errorf(path, "%q is not a mark; %s", s, how)
	case m.Mask != 0 && m.Value == 0:
		d.errorf(path, "%q clears the bits it owns instead of setting them, so the shipped rules would see no packet as judged; give the value the mask's bits", s)
	default:
		c.Guard.JudgedMark = m
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

// durationKey decodes a timeout: a Go duration string ("120s", "5m",
// "120h") or an integer number of seconds, from MinTimeout to MaxTimeout.
func durationKey(name string, field func(*Config) *time.Duration) *node {
	return durationRangeKey(name, MinTimeout, MaxTimeout, "a timeout from 1s to 8760h (365 days)", field)
}

// durationRangeKey decodes a duration string or an integer number of
// seconds from lo to hi (range says so in the message).
func durationRangeKey(name string, lo, hi time.Duration, rangeText string, field func(*Config) *time.Duration) *node {
	return &node{name: name, decode: func(d *decoder, path []string, v any, c *Config) {
		const how = `use a duration such as "50ms", "120s", "30m" or "120h" (Go syntax: units ns, us, ms, s, m, h; no "d", write 5 days as "120h") or an integer number of seconds`
		var dur time.Duration
		switch v := v.(type) {
		case string:
			var err error
			if dur, err = time.ParseDuration(strings.TrimSpace(v)); err != nil {
				d.errorf(path, "%q is not a duration; %s", v, how)
				return
			}
		case int64:
			if v < 0 || v > int64(hi/time.Second) {
				d.errorf(path, "%d seconds is out of range; use %s", v, rangeText)
				return
			}
			dur = time.Duration(v) * time.Second
		default:
			d.errorf(path, "must be a duration, not %s; %s", describe(v), how)
			return
		}
		if dur < lo || dur > hi {
			d.errorf(path, "%v is out of range; use %s", dur, rangeText)
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

// decodeAbsPath decodes a file name that is "" (off) or absolute; example
// is shown in the messages.
func decodeAbsPath(d *decoder, path []string, v any, field *string, example string) {
	s, ok := v.(string)
	if !ok {
		d.errorf(path, `must be a string, not %s; give an absolute file name such as %q, or "" to turn it off`, describe(v), example)
		return
	}
	if s != "" && !filepath.IsAbs(s) {
		d.errorf(path, `%q is not an absolute path; the daemon's working directory is not yours: write it in full, such as %q`, s, example)
		return
	}
	*field = s
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
