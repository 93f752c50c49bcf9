// Package lab builds a four-namespace network on the local kernel and plays
// forged-reset attacks against real Linux TCP endpoints, with and without the
// guard inline. `rstguard lab` and the end-to-end tests use it.
//
// # Topology
//
//	 client                 gateway                         server
//	+----------------+     +-----------------------------+     +------------------+
//	| eth0           |     | cli0          br0           |     | eth0             |
//	| 192.0.2.2      |-----| 192.0.2.1     198.51.100.1  |--+--| 198.51.100.2     |
//	| 2001:db8:1::2  |     | 2001:db8:1::1 2001:db8:2::1 |  |  | 2001:db8:2::2    |
//	+----------------+     |  (ports srv0, att0)         |  |  +------------------+
//	                       +-----------------------------+  |   attacker
//	                                                        |  +------------------+
//	                                                        +--| eth0             |
//	                                                           | 198.51.100.66    |
//	                                                           | 2001:db8:2::66   |
//	                                                           +------------------+
//
// The gateway routes between the client link (cli0) and the server LAN, a
// bridge br0 inside the gateway namespace whose ports srv0 and att0 lead to
// the server and the attacker: the attacker is a neighbour of the server on
// its LAN, off the path between client and server but able to send anything
// onto that LAN.
//
//   - Packets claiming to be the server (source 198.51.100.2 or
//     2001:db8:2::2) towards the client leave the attacker through its
//     default route, the gateway, which forwards them to the client: through
//     the FORWARD chain and so through the guard.
//   - Packets claiming to be the client towards the server also go through
//     the gateway: the attacker's routes to the server addresses point at the
//     gateway (an attacker anywhere upstream of the gateway), which forwards
//     them back out of br0 to the server. rp_filter and ICMP redirects are off
//     in the gateway for that. (Bridged frames between srv0 and att0 do not
//     cross iptables unless br_netfilter is loaded; the lab does not rely on
//     them.)
//
// NewHATopology builds the other topology of the lab, a pair of gateways
// behind keepalived (ha.go), for the HA failover (RunHA).
//
// Every namespace name starts with TopologyOptions.Prefix ("rsg-" for
// `rstguard lab`, "rgl-" for the tests); interfaces are created directly
// inside the namespaces and nothing is left in the root namespace. Only the
// documentation ranges 192.0.2.0/24, 198.51.100.0/24, 2001:db8:1::/64 and
// 2001:db8:2::/64 are used.
//
// # Use
//
//	if err := lab.Preflight(ctx, "rgl-"); err != nil { ... } // root, tools, NFQUEUE
//	t, err := lab.NewTopology(ctx, lab.TopologyOptions{Prefix: "rgl-"})
//	if err != nil { ... }
//	defer t.Close()
//	t.InstallQueueRule("0", true)            // mangle FORWARD -p tcp -> NFQUEUE 0, bypass (v4 and v6)
//	d, err := t.RunDaemon(ctx, bin, cfgPath, 10*time.Second) // rstguard run --config cfgPath in the gateway, until /readyz answers 200
//	err = t.Do(lab.Client, func() error {    // Go code with the client's network stack
//		c, err := net.Dial("tcp", "198.51.100.2:80") // the socket stays in the client ns
//		...
//	})
//	out, err := t.Exec(lab.Gateway, "iptables", "-L", "-n", "-v")
//	body, err := t.Scrape()                  // the daemon's /metrics text
//	d.Stop()                                 // SIGTERM and wait
//
// Sockets created inside Do keep their namespace after Do returns, so a
// listener or connection can be created in Do and used from any goroutine.
//
// It imports packet/craft, ruleset, deploy (the shipped rules), go-nfqueue (the Delayer's
// consumer in the server namespace) and the standard library; never the daemon's packages
// nfq or metrics: it runs the real binary.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/rstguard/rstguard/config/queuerange"
	"github.com/rstguard/rstguard/deploy"
	"github.com/rstguard/rstguard/ruleset"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Host names one of the four namespaces.
type Host string

// The four namespaces of the topology; the namespace name is the prefix
// followed by the host name.
const (
	Client   Host = "client"
	Gateway  Host = "gateway"
	Server   Host = "server"
	Attacker Host = "attacker"
)

// Hosts lists the namespaces in creation order.
var Hosts = []Host{Client, Gateway, Server, Attacker}

// Addresses of the topology (documentation ranges only, RFC 5737 and RFC 3849).
var (
	ClientV4   = netip.MustParseAddr("192.0.2.2")
	GatewayV4C = netip.MustParseAddr("192.0.2.1")    // client side
	GatewayV4S = netip.MustParseAddr("198.51.100.1") // server side
	ServerV4   = netip.MustParseAddr("198.51.100.2")
	AttackerV4 = netip.MustParseAddr("198.51.100.66")

	ClientV6   = netip.MustParseAddr("2001:db8:1::2")
	GatewayV6C = netip.MustParseAddr("2001:db8:1::1")
	GatewayV6S = netip.MustParseAddr("2001:db8:2::1")
	ServerV6   = netip.MustParseAddr("2001:db8:2::2")
	AttackerV6 = netip.MustParseAddr("2001:db8:2::66")
)

// DefaultPrefix is the namespace prefix of `rstguard lab`.
const DefaultPrefix = "rsg-"

// TopologyOptions configures NewTopology.
type TopologyOptions struct {
	// Prefix starts every namespace name (DefaultPrefix if empty). It must
	// be short: namespace names end up in /run/netns.
	Prefix string
	// Replace deletes namespaces left over with the same names (by an
	// earlier run with --keep, or a crash) instead of failing.
	Replace bool
	// Log, if set, receives every command the topology runs.
	Log io.Writer
	// MetricsAddr is the daemon's metrics listener inside the gateway
	// namespace (DefaultMetricsAddr if empty), used by Scrape and WaitReady.
	MetricsAddr string
}

// DefaultMetricsAddr is the daemon's default metrics listener (SPEC 6).
const DefaultMetricsAddr = "127.0.0.1:9813"

// cmdTimeout bounds every command the topology runs.
const cmdTimeout = 30 * time.Second

// Topology is a running lab network. All methods are safe for concurrent use
// except Close.
type Topology struct {
	prefix      string
	log         io.Writer
	metricsAddr string
	hosts       []Host // the namespaces of this topology, in creation order

	mu      sync.Mutex
	created []Host // namespaces that exist, for Close
	daemons []*Daemon
	queued  []string // the installed NFQUEUE rule's arguments, nil if none
}

// errPrefix is returned for prefixes that cannot name a namespace.
var errPrefix = errors.New("namespace prefix must be 1-8 characters of [a-z0-9-]")

func validPrefix(p string) bool {
	if p == "" || len(p) > 8 {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// NS returns the namespace name of h.
func (t *Topology) NS(h Host) string { return t.prefix + string(h) }

// Prefix returns the namespace prefix.
func (t *Topology) Prefix() string { return t.prefix }

// NewTopology creates the four namespaces, links, addresses, routes and
// sysctls. On any error everything created so far is removed.
func NewTopology(ctx context.Context, o TopologyOptions) (_ *Topology, err error) {
	t, err := newNamespaces(ctx, o, Hosts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	c, g, s, a := t.NS(Client), t.NS(Gateway), t.NS(Server), t.NS(Attacker)
	steps := [][]string{
		// Links are created inside the namespaces: nothing in the root ns.
		{"ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "cli0", "netns", g},
		{"ip", "-n", s, "link", "add", "eth0", "type", "veth", "peer", "name", "srv0", "netns", g},
		{"ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "att0", "netns", g},
		{"ip", "-n", g, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", g, "link", "set", "srv0", "master", "br0"},
		{"ip", "-n", g, "link", "set", "att0", "master", "br0"},
	}
	for _, st := range steps {
		if _, err := t.run(ctx, st[0], st[1:]...); err != nil {
			return nil, err
		}
	}
	// Sysctls before addresses so that they apply to the new interfaces.
	sysctls := map[Host][]string{
		Gateway: {
			"net.ipv4.ip_forward=1",
			"net.ipv6.conf.all.forwarding=1",
			"net.ipv4.conf.all.rp_filter=0",
			"net.ipv4.conf.default.rp_filter=0",
			"net.ipv4.conf.br0.rp_filter=0",
			"net.ipv4.conf.all.send_redirects=0",
			"net.ipv4.conf.br0.send_redirects=0",
			"net.ipv6.conf.all.accept_dad=0",
			"net.ipv6.conf.default.accept_dad=0",
		},
		Client:   {"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"},
		Server:   {"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"},
		Attacker: {"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"},
	}
	for _, h := range Hosts {
		if err := t.Sysctl(h, sysctls[h]...); err != nil {
			return nil, err
		}
	}
	type addr struct {
		h   Host
		dev string
		pfx string
	}
	addrs := []addr{
		{Client, "eth0", "192.0.2.2/24"}, {Client, "eth0", "2001:db8:1::2/64"},
		{Gateway, "cli0", "192.0.2.1/24"}, {Gateway, "cli0", "2001:db8:1::1/64"},
		{Gateway, "br0", "198.51.100.1/24"}, {Gateway, "br0", "2001:db8:2::1/64"},
		{Server, "eth0", "198.51.100.2/24"}, {Server, "eth0", "2001:db8:2::2/64"},
		{Attacker, "eth0", "198.51.100.66/24"}, {Attacker, "eth0", "2001:db8:2::66/64"},
	}
	for _, ad := range addrs {
		if _, err := t.Exec(ad.h, "ip", "addr", "add", ad.pfx, "dev", ad.dev, "nodad"); err != nil {
			return nil, err
		}
	}
	ups := map[Host][]string{
		Client: {"eth0"}, Server: {"eth0"}, Attacker: {"eth0"},
		Gateway: {"cli0", "srv0", "att0", "br0"},
	}
	for _, h := range Hosts {
		for _, dev := range ups[h] {
			if _, err := t.Exec(h, "ip", "link", "set", dev, "up"); err != nil {
				return nil, err
			}
		}
	}
	routes := []struct {
		h    Host
		args []string
	}{
		{Client, []string{"ip", "route", "add", "default", "via", "192.0.2.1"}},
		{Client, []string{"ip", "-6", "route", "add", "default", "via", "2001:db8:1::1"}},
		{Server, []string{"ip", "route", "add", "default", "via", "198.51.100.1"}},
		{Server, []string{"ip", "-6", "route", "add", "default", "via", "2001:db8:2::1"}},
		{Attacker, []string{"ip", "route", "add", "default", "via", "198.51.100.1"}},
		{Attacker, []string{"ip", "-6", "route", "add", "default", "via", "2001:db8:2::1"}},
		// Client-spoofed packets to the server go through the gateway too.
		{Attacker, []string{"ip", "route", "add", "198.51.100.2/32", "via", "198.51.100.1"}},
		{Attacker, []string{"ip", "-6", "route", "add", "2001:db8:2::2/128", "via", "2001:db8:2::1"}},
	}
	for _, r := range routes {
		if _, err := t.Exec(r.h, r.args[0], r.args[1:]...); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// newNamespaces applies o's defaults (prefix, metrics address), checks the
// prefix and creates the namespaces of hosts (deleting leftovers with
// o.Replace), each with its loopback up. On error everything created so far
// is removed.
func newNamespaces(ctx context.Context, o TopologyOptions, hosts []Host) (_ *Topology, err error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !validPrefix(o.Prefix) {
		return nil, fmt.Errorf("%w: %q", errPrefix, o.Prefix)
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = DefaultMetricsAddr
	}
	t := &Topology{prefix: o.Prefix, log: o.Log, metricsAddr: o.MetricsAddr, hosts: hosts}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	for _, h := range hosts {
		if nsExists(t.NS(h)) {
			if !o.Replace {
				return nil, fmt.Errorf("network namespace %s already exists (a lab left up with --keep?); remove it with: %s", t.NS(h), t.TeardownCommand())
			}
			if _, err := t.run(ctx, "ip", "netns", "del", t.NS(h)); err != nil {
				return nil, err
			}
		}
	}
	for _, h := range hosts {
		if _, err := t.run(ctx, "ip", "netns", "add", t.NS(h)); err != nil {
			return nil, err
		}
		t.mu.Lock()
		t.created = append(t.created, h)
		t.mu.Unlock()
		if _, err := t.Exec(h, "ip", "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// TeardownCommand is the shell command that removes this topology's
// namespaces by hand (and with them every link, rule and address in them).
func (t *Topology) TeardownCommand() string {
	var b strings.Builder
	for i, h := range t.hosts {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString("ip netns del " + t.NS(h))
	}
	return b.String()
}

// Close stops the daemons it started and deletes the namespaces (which
// removes their links, rules and addresses). It is safe to call twice.
func (t *Topology) Close() error {
	t.mu.Lock()
	ds := t.daemons
	t.daemons = nil
	created := t.created
	t.created = nil
	t.mu.Unlock()
	for _, d := range ds {
		d.Kill()
	}
	var errs []error
	for i := len(created) - 1; i >= 0; i-- {
		// A fresh context: Close also runs after the caller's was cancelled.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := t.run(ctx, "ip", "netns", "del", t.NS(created[i]))
		cancel()
		if err != nil && nsExists(t.NS(created[i])) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Keep forgets the namespaces so that Close leaves them up (`--keep`); the
// daemons are still stopped.
func (t *Topology) Keep() {
	t.mu.Lock()
	t.created = nil
	t.mu.Unlock()
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// run runs a command in the root namespace and returns its combined output;
// the error carries the command line and output.
func (t *Topology) run(ctx context.Context, name string, args ...string) (string, error) {
	if t.log != nil {
		fmt.Fprintf(t.log, "+ %s %s\n", name, strings.Join(args, " "))
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Exec runs a command inside h's namespace (ip netns exec) and returns its
// combined output.
func (t *Topology) Exec(h Host, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return t.run(ctx, "ip", append([]string{"netns", "exec", t.NS(h), name}, args...)...)
}

// Sysctl sets key=value sysctls inside h's namespace, writing
// /proc/sys from a thread inside it (net.* sysctls are per namespace, and
// /proc/sys/net resolves against the writing thread's namespace).
func (t *Topology) Sysctl(h Host, kv ...string) error {
	if len(kv) == 0 {
		return nil
	}
	if t.log != nil {
		fmt.Fprintf(t.log, "+ [%s] sysctl -w %s\n", t.NS(h), strings.Join(kv, " "))
	}
	return t.Do(h, func() error {
		for _, s := range kv {
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" || strings.Contains(k, "/") {
				return fmt.Errorf("sysctl %q: want key=value", s)
			}
			path := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(path, []byte(v), 0); err != nil {
				return fmt.Errorf("sysctl %s in %s: %w", s, t.NS(h), err)
			}
		}
		return nil
	})
}

// Do runs fn on an OS thread switched into h's network namespace and waits
// for it. Sockets fn creates belong to h's namespace for their lifetime, so
// they may be used after Do returns, from any goroutine. fn must not start
// goroutines that create sockets (they run on other threads, in the root
// namespace).
func (t *Topology) Do(h Host, fn func() error) error {
	return DoIn(t.NS(h), fn)
}

// DoIn is Do for a namespace given by name (/run/netns/NAME).
func DoIn(ns string, fn func() error) error {
	target, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", ns, err)
	}
	defer unix.Close(target)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", ns, err)
			return
		}
		var ferr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					ferr = fmt.Errorf("panic in namespace %s: %v", ns, r)
				}
			}()
			ferr = fn()
		}()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime discards it when this
			// goroutine exits, so no other goroutine runs in ns by accident.
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a TCP listener inside h's namespace.
func (t *Topology) Listen(h Host, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := t.Do(h, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Dial connects from inside h's namespace with d (a zero Dialer if nil).
func (t *Topology) Dial(ctx context.Context, h Host, d *net.Dialer, network, addr string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	var c net.Conn
	err := t.Do(h, func() error {
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns an HTTP client whose connections are made from inside
// h's namespace.
func (t *Topology) HTTPClient(h Host) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return t.Dial(ctx, h, nil, network, addr)
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// Scrape fetches the daemon's /metrics from inside the gateway namespace, at
// TopologyOptions.MetricsAddr.
func (t *Topology) Scrape() (string, error) { return t.ScrapeIn(Gateway) }

// ScrapeIn is Scrape for the daemon in h's namespace.
func (t *Topology) ScrapeIn(h Host) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return t.get(ctx, h, t.metricsAddr, "/metrics")
}

// ScrapeAddr fetches http://addr/metrics from inside the gateway namespace.
func (t *Topology) ScrapeAddr(ctx context.Context, addr string) (string, error) {
	return t.get(ctx, Gateway, addr, "/metrics")
}

func (t *Topology) get(ctx context.Context, h Host, addr, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := t.HTTPClient(h).Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s in %s: %w", path, t.NS(h), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s in %s: %s", path, t.NS(h), resp.Status)
	}
	return string(body), nil
}

// RunDaemon is the lab's one daemon runner: it starts the guard
// (StartDaemon) and waits up to timeout until its /readyz answers. If the
// daemon exits or is not ready in time it is killed, and the error carries
// its output.
func (t *Topology) RunDaemon(ctx context.Context, binary, configPath string, timeout time.Duration) (*Daemon, error) {
	return t.RunDaemonIn(ctx, Gateway, binary, configPath, timeout)
}

// RunDaemonIn is RunDaemon in h's namespace.
func (t *Topology) RunDaemonIn(ctx context.Context, h Host, binary, configPath string, timeout time.Duration) (*Daemon, error) {
	d, err := t.StartDaemonIn(h, binary, configPath)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- t.WaitReadyIn(rctx, h) }()
	select {
	case err = <-errc:
	case <-d.Done():
		cancel()
		<-errc
		_, werr := d.Exited()
		err = fmt.Errorf("rstguard run exited: %v", werr)
	}
	if err != nil {
		d.Kill()
		return nil, fmt.Errorf("start the guard (%s run --config %s) in %s: %w\ndaemon output:\n%s", binary, configPath, t.NS(h), err, d.Log())
	}
	return d, nil
}

// WaitReady polls /readyz at TopologyOptions.MetricsAddr inside the gateway
// until it answers 200 or ctx ends.
func (t *Topology) WaitReady(ctx context.Context) error { return t.WaitReadyIn(ctx, Gateway) }

// WaitReadyIn is WaitReady for the daemon in h's namespace.
func (t *Topology) WaitReadyIn(ctx context.Context, h Host) error {
	addr := t.metricsAddr
	var last error
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := t.get(c, h, addr, "/readyz")
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("daemon not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// InstallQueueRule appends the NFQUEUE rule to the gateway's mangle FORWARD
// chain, for IPv4 and IPv6, as deploy/iptables.rules installs it (mangle, so
// that an accept verdict still goes through the filter table's FORWARD
// rules): queues is "N" (one queue)
// or "N:M" (--queue-balance); bypass adds --queue-bypass (traffic flows
// while no daemon is bound).
func (t *Topology) InstallQueueRule(queues string, bypass bool) error {
	args := queueRuleArgs(queues, bypass)
	if args == nil {
		return fmt.Errorf("bad queue spec %q: want N or N:M", queues)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queued != nil {
		return errors.New("the NFQUEUE rule is already installed; RemoveQueueRule first")
	}
	for i, ipt := range []string{"iptables", "ip6tables"} {
		if _, err := t.Exec(Gateway, ipt, append([]string{"-t", "mangle", "-A", "FORWARD"}, args...)...); err != nil {
			if i > 0 {
				t.Exec(Gateway, "iptables", append([]string{"-t", "mangle", "-D", "FORWARD"}, args...)...)
			}
			return err
		}
	}
	t.queued = args
	return nil
}

// InstallShippedRules installs the rules users install
// (deploy/rstguard-rules.sh install: rstguard's chains in security FORWARD
// and mangle POSTROUTING, IPv4 and IPv6) in the gateway, from the copies
// embedded in the binary.
func (t *Topology) InstallShippedRules() error { return t.shippedRules(Gateway, "install") }

// InstallShippedRulesIn is InstallShippedRules in h's namespace.
func (t *Topology) InstallShippedRulesIn(h Host) error { return t.shippedRules(h, "install") }

// RemoveShippedRules removes them again (rstguard-rules.sh remove).
func (t *Topology) RemoveShippedRules() error { return t.shippedRules(Gateway, "remove") }

func (t *Topology) shippedRules(h Host, action string) error {
	dir, err := os.MkdirTemp("", "rstguard-rules-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for name, b := range map[string][]byte{
		"iptables.rules": deploy.IPTablesRules, "ip6tables.rules": deploy.IP6TablesRules, "rstguard-rules.sh": deploy.RulesScript,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	_, err = t.Exec(h, "sh", filepath.Join(dir, "rstguard-rules.sh"), action)
	return err
}

// GuardCounters reads the shipped rules' counters in the gateway.
func (t *Topology) GuardCounters() (ruleset.Counters, error) {
	var c ruleset.Counters
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := t.Exec(Gateway, cmd, "-c")
		if err != nil {
			return c, err
		}
		if err := c.Parse([]byte(out)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// RemoveQueueRule deletes the rule InstallQueueRule added (IPv4 and IPv6);
// other FORWARD rules stay. Without an installed rule it does nothing.
func (t *Topology) RemoveQueueRule() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queued == nil {
		return nil
	}
	var errs []error
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if _, err := t.Exec(Gateway, ipt, append([]string{"-t", "mangle", "-D", "FORWARD"}, t.queued...)...); err != nil {
			errs = append(errs, err)
		}
	}
	t.queued = nil
	return errors.Join(errs...)
}

func queueRuleArgs(queues string, bypass bool) []string {
	if _, err := queuerange.Parse(queues); err != nil {
		return nil
	}
	args := []string{"-p", "tcp", "-j", "NFQUEUE"}
	if strings.Contains(queues, ":") {
		args = append(args, "--queue-balance", queues)
	} else {
		args = append(args, "--queue-num", queues)
	}
	if bypass {
		args = append(args, "--queue-bypass")
	}
	return args
}

// Daemon is a process inside a namespace: `rstguard run` in the gateway, or
// another daemon of the lab (keepalived in the HA topology).
type Daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
	log  lockedBuffer
}

// StartDaemon starts `binary run --config configPath` inside the gateway
// namespace. Its standard output and error are kept (Daemon.Log). Close
// kills daemons still running.
func (t *Topology) StartDaemon(binary, configPath string) (*Daemon, error) {
	return t.StartDaemonIn(Gateway, binary, configPath)
}

// StartDaemonIn is StartDaemon in h's namespace.
func (t *Topology) StartDaemonIn(h Host, binary, configPath string) (*Daemon, error) {
	args := []string{"run"}
	if configPath != "" {
		args = append(args, "--config", configPath)
	}
	return t.StartProcess(h, binary, args...)
}

// StartProcess starts name with args inside h's namespace (ip netns exec,
// which execs it: the process is name itself, its PID the Daemon's) and
// keeps its output (Daemon.Log). It gets SIGKILL if the lab dies; Close
// kills it if still running.
func (t *Topology) StartProcess(h Host, name string, arg ...string) (*Daemon, error) {
	args := append([]string{"netns", "exec", t.NS(h), name}, arg...)
	if t.log != nil {
		fmt.Fprintf(t.log, "+ ip %s &\n", strings.Join(args, " "))
	}
	d := &Daemon{done: make(chan struct{})}
	// ip netns exec execs the binary: the process is the daemon itself.
	d.cmd = exec.Command("ip", args...)
	d.cmd.Stdout = &d.log
	d.cmd.Stderr = &d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, t.NS(h), err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.mu.Lock()
	t.daemons = append(t.daemons, d)
	t.mu.Unlock()
	return d, nil
}

// PID is the daemon's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Signal sends sig to the daemon (e.g. syscall.SIGHUP to reload).
func (d *Daemon) Signal(sig os.Signal) error { return d.cmd.Process.Signal(sig) }

// Exited reports whether the process has ended, and how.
func (d *Daemon) Exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// Done is closed when the process has ended.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Stop sends SIGTERM and waits up to 10 s for the process to exit (then
// kills it). It returns the process's exit error, nil for a clean exit.
func (d *Daemon) Stop() error {
	select {
	case <-d.done:
		return d.err
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.err
	case <-time.After(10 * time.Second):
		d.Kill()
		return fmt.Errorf("daemon pid %d did not exit within 10s of SIGTERM; killed", d.PID())
	}
}

// Kill sends SIGKILL and waits for the process.
func (d *Daemon) Kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}

// Log returns what the daemon has written so far.
func (d *Daemon) Log() string { return d.log.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
