// Package ruleset reads the live firewall rules rstguard depends on: which
// queues the shipped queue rule sends to, whether the guard that drops
// unjudged resets is installed, and the packet counters of both, from which
// the daemon exports what passed the gateway without being judged.
//
// The shipped rules (deploy/iptables.rules, deploy/ip6tables.rules) name
// their rules with comments: "rstguard: queue" (the NFQUEUE rule, reached by
// every packet the guard covers), "rstguard: unjudged" (in mangle
// POSTROUTING, every packet that reached the queue rule but carries no
// judged mark: it passed through --queue-bypass or fail-open) and
// "rstguard: unjudged reset" (the resets among them, dropped). The kernel
// counts none of the packets it lets past a missing or full queue
// (nfnetlink_queue.c, __nfqnl_enqueue_packet's fail-open branch), so these
// rule counters are the only exact account of them.
//
// The rules are read with iptables-save -c and ip6tables-save -c (both the
// nf_tables and the legacy back end print the same format); the package
// imports only config/queuerange of rstguard's and does no I/O beyond
// running them.
package ruleset

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/rstguard/rstguard/config/queuerange"
)

// Comments naming the shipped rules.
const (
	CommentQueue         = "rstguard: queue"
	CommentUnjudged      = "rstguard: unjudged"
	CommentUnjudgedReset = "rstguard: unjudged reset"
)

// Counters are what one read of the rules found, IPv4 and IPv6 summed.
type Counters struct {
	// QueueRule, Unjudged and UnjudgedResets are the packet counters of the
	// rules named by the comments above.
	QueueRule, Unjudged, UnjudgedResets uint64
	// Queues are the queue numbers the rules named CommentQueue send to
	// (sorted, each once).
	Queues []uint16
	// HaveQueueRule and HaveGuard say whether a queue rule and the
	// unjudged-reset drop rule were found.
	HaveQueueRule, HaveGuard bool
}

// Parse reads the output of iptables-save -c (or several concatenated) and
// adds what it finds to c. Lines that are not rules with a comment of ours
// are skipped; a malformed counter of one of ours is an error.
func (c *Counters) Parse(save []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "[") {
			continue
		}
		comment, ok := commentOf(line)
		if !ok {
			continue
		}
		var field *uint64
		switch comment {
		case CommentQueue:
			field = &c.QueueRule
			c.HaveQueueRule = true
			qs, err := queuesOf(line)
			if err != nil {
				return fmt.Errorf("iptables-save line %d: %w", n, err)
			}
			c.Queues = append(c.Queues, qs...)
		case CommentUnjudged:
			field = &c.Unjudged
		case CommentUnjudgedReset:
			field = &c.UnjudgedResets
			c.HaveGuard = true
		default:
			continue
		}
		pk, err := packetsOf(line)
		if err != nil {
			return fmt.Errorf("iptables-save line %d: %w", n, err)
		}
		*field += pk
	}
	slices.Sort(c.Queues)
	c.Queues = slices.Compact(c.Queues)
	return sc.Err()
}

// packetsOf reads the packet count of a "[PACKETS:BYTES] -A ..." line.
func packetsOf(line string) (uint64, error) {
	end := strings.IndexByte(line, ']')
	colon := strings.IndexByte(line, ':')
	if end < 0 || colon < 0 || colon > end {
		return 0, fmt.Errorf("no [packets:bytes] counter in %q (run iptables-save with -c)", line)
	}
	n, err := strconv.ParseUint(line[1:colon], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad packet counter in %q: %w", line, err)
	}
	return n, nil
}

// commentOf returns the argument of --comment, quoted or not.
func commentOf(line string) (string, bool) {
	_, rest, ok := strings.Cut(line, "--comment ")
	if !ok {
		return "", false
	}
	if strings.HasPrefix(rest, `"`) {
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return "", false
		}
		return rest[1 : 1+end], true
	}
	s, _, _ := strings.Cut(rest, " ")
	return s, true
}

// queuesOf reads the queues of an NFQUEUE rule: --queue-num N (default 0)
// or --queue-balance FIRST:LAST.
func queuesOf(line string) ([]uint16, error) {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "--queue-num":
			n, err := strconv.ParseUint(f[i+1], 10, 16)
			if err != nil {
				return nil, fmt.Errorf("bad --queue-num %q", f[i+1])
			}
			return []uint16{uint16(n)}, nil
		case "--queue-balance":
			qs, err := queuerange.Parse(f[i+1])
			if err != nil {
				return nil, fmt.Errorf("--queue-balance: %w", err)
			}
			return qs, nil
		}
	}
	if slices.Contains(f, "NFQUEUE") {
		return []uint16{0}, nil // iptables' default queue
	}
	return nil, nil
}

// Read runs iptables-save -c and ip6tables-save -c (tables security and
// mangle, where the shipped rules live) and parses both. A missing ip6tables
// is not an error; a failing iptables-save is.
func Read(ctx context.Context) (Counters, error) {
	var c Counters
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		for _, table := range []string{"security", "mangle"} {
			out, err := exec.CommandContext(ctx, cmd, "-c", "-t", table).Output()
			if err != nil {
				if cmd == "ip6tables-save" {
					continue
				}
				return c, fmt.Errorf("%s -c -t %s: %w (is the iptables package installed, and does rstguard have CAP_NET_ADMIN?)", cmd, table, err)
			}
			if err := c.Parse(out); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

// Problems lists what is wrong with the live rules for a daemon bound to
// bound: queues the rules send to that no worker binds (their packets pass
// unjudged through --queue-bypass), and a missing unjudged-reset guard.
func (c *Counters) Problems(bound []uint16) (unbound []uint16, guardMissing bool) {
	for _, q := range c.Queues {
		if !slices.Contains(bound, q) {
			unbound = append(unbound, q)
		}
	}
	return unbound, !c.HaveGuard
}
