// Package flowfilter parses and matches the flow filters of the command
// line: `rstguard replay --flow`, `rstguard flows` and `rstguard flows flush`
// read one syntax (Syntax). It imports conntrack (for state names) and the
// standard library.
package flowfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rstguard/rstguard/conntrack"
)

// Syntax documents the syntax Parse reads, for help texts.
const Syntax = `A flow filter is one or more terms, all of which must match (separated
by spaces, optionally by "and"); each term matches either endpoint, so a
filter selects both directions of a connection:
  host ADDR         an endpoint's address is ADDR   (also: ADDR alone)
  net CIDR          an endpoint's address is in CIDR (also: CIDR alone)
  port N            an endpoint's TCP port is N
  ADDR:PORT         an endpoint is ADDR:PORT         ([v6]:PORT for IPv6)
  state NAME        the flow's state is NAME (flows and flush only):
                    syn_sent, syn_recv, established, fin_wait,
                    close_wait, last_ack, time_wait, closed
Examples: "host 192.0.2.1 port 443", "198.51.100.0/24",
"192.0.2.1:40000 192.0.2.2:443" (one connection), "2001:db8::/32 and port 22".`

// errEmptyFilter is returned for a filter without terms.
var errEmptyFilter = errors.New("empty flow filter: give at least one term (host ADDR, net CIDR, port N, ADDR:PORT or state NAME)")

// Filter selects flows by their endpoints (and state): it matches a packet
// or a flow when every one of its terms matches its source or its
// destination. Because no term is directional, both directions of a
// connection match alike: a filter selects whole flows. The zero Filter has
// no terms and matches everything.
type Filter struct {
	terms []filterTerm
	text  string
}

type filterKind uint8

const (
	filterNet      filterKind = iota // the address is in prefix (host: a /32 or /128)
	filterPort                       // the port is port (TCP only)
	filterEndpoint                   // the address and port are addr:port (TCP only)
	filterState                      // the flow's state is state
)

type filterTerm struct {
	kind   filterKind
	prefix netip.Prefix
	ap     netip.AddrPort
	port   uint16
	state  conntrack.State
}

// Parse parses a filter in the syntax of Syntax. withState allows state
// terms (for flows in a table; a capture's packets have no one state).
func Parse(s string, withState bool) (Filter, error) {
	words := strings.Fields(s)
	ff := Filter{text: strings.Join(words, " ")}
	for i := 0; i < len(words); i++ {
		w := words[i]
		arg := func() (string, error) {
			if i+1 >= len(words) {
				return "", fmt.Errorf("%q needs a value", w)
			}
			i++
			return words[i], nil
		}
		var t filterTerm
		var err error
		switch strings.ToLower(w) {
		case "and", "&&":
			if i == 0 || i == len(words)-1 {
				return Filter{}, fmt.Errorf("flow filter %q: %q must stand between two terms", s, w)
			}
			continue
		case "or", "||", "not", "!", "src", "dst":
			return Filter{}, fmt.Errorf("flow filter %q: %q is not supported: terms are joined by AND and match either endpoint; repeat --flow for alternatives", s, w)
		case "host":
			var v string
			if v, err = arg(); err == nil {
				t, err = parseHost(v)
			}
		case "net":
			var v string
			if v, err = arg(); err == nil {
				t, err = parseNet(v)
			}
		case "port":
			var v string
			if v, err = arg(); err == nil {
				t, err = parsePort(v)
			}
		case "state":
			var v string
			if !withState {
				err = errors.New(`"state" is not a term here: packets of a capture have no one state`)
			} else if v, err = arg(); err == nil {
				t, err = parseState(v)
			}
		default:
			t, err = parseBare(w)
		}
		if err != nil {
			return Filter{}, fmt.Errorf("flow filter %q: %w", s, err)
		}
		ff.terms = append(ff.terms, t)
	}
	if len(ff.terms) == 0 {
		return Filter{}, errEmptyFilter
	}
	return ff, nil
}

func parseHost(v string) (filterTerm, error) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return filterTerm{}, fmt.Errorf("host %q: not an IPv4 or IPv6 address", v)
	}
	a = a.Unmap().WithZone("")
	return filterTerm{kind: filterNet, prefix: netip.PrefixFrom(a, a.BitLen())}, nil
}

func parseNet(v string) (filterTerm, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return filterTerm{}, fmt.Errorf("net %q: not a CIDR prefix such as 192.0.2.0/24 or 2001:db8::/32", v)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return filterTerm{kind: filterNet, prefix: p.Masked()}, nil
}

func parseState(v string) (filterTerm, error) {
	var names []string
	for st := conntrack.StateSynSent; st < conntrack.NumStates; st++ {
		if st.String() == strings.ToLower(v) {
			return filterTerm{kind: filterState, state: st}, nil
		}
		names = append(names, st.String())
	}
	return filterTerm{}, fmt.Errorf("state %q: want one of %s", v, strings.Join(names, ", "))
}

func parsePort(v string) (filterTerm, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return filterTerm{}, fmt.Errorf("port %q: want a TCP port number from 1 to 65535", v)
	}
	return filterTerm{kind: filterPort, port: uint16(n)}, nil
}

// parseBare reads a term without a keyword: ADDR:PORT, [v6]:PORT, CIDR or
// ADDR.
func parseBare(w string) (filterTerm, error) {
	if ap, err := netip.ParseAddrPort(w); err == nil {
		if ap.Port() == 0 {
			return filterTerm{}, fmt.Errorf("%q: port 0 is no TCP port", w)
		}
		return filterTerm{kind: filterEndpoint, ap: netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())}, nil
	}
	if strings.Contains(w, "/") {
		return parseNet(w)
	}
	if _, err := netip.ParseAddr(w); err == nil {
		return parseHost(w)
	}
	return filterTerm{}, fmt.Errorf("%q is not a term: want host ADDR, net CIDR, port N, ADDR, CIDR or ADDR:PORT", w)
}

// String returns the filter as parsed (words separated by single spaces).
func (ff *Filter) String() string { return ff.text }

// Match reports whether a packet from src to dst (tcp: a TCP segment, the
// ports are valid) belongs to a flow the filter selects, whatever its state
// (state terms match only MatchFlow). Port and ADDR:PORT terms match only
// TCP.
func (ff *Filter) Match(src, dst netip.AddrPort, tcp bool) bool {
	return ff.match(src, dst, tcp, conntrack.StateNone, false)
}

// MatchFlow reports whether a tracked TCP flow between a and b in state st
// is selected.
func (ff *Filter) MatchFlow(a, b netip.AddrPort, st conntrack.State) bool {
	return ff.match(a, b, true, st, true)
}

func (ff *Filter) match(src, dst netip.AddrPort, tcp bool, st conntrack.State, flow bool) bool {
	for i := range ff.terms {
		t := &ff.terms[i]
		if t.kind == filterState {
			if !flow || st != t.state {
				return false
			}
			continue
		}
		if !t.match(src, tcp) && !t.match(dst, tcp) {
			return false
		}
	}
	return true
}

// Empty reports whether the filter has no terms (it matches everything).
func (ff *Filter) Empty() bool { return len(ff.terms) == 0 }

func (t *filterTerm) match(ap netip.AddrPort, tcp bool) bool {
	switch t.kind {
	case filterNet:
		return t.prefix.Contains(ap.Addr())
	case filterPort:
		return tcp && ap.Port() == t.port
	case filterEndpoint:
		return tcp && ap == t.ap
	}
	return false
}
