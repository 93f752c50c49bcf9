package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The HA topology: two gateways, each with its own rstguard, share the
// client LAN's and the server LAN's gateway addresses with keepalived (VRRP).
//
//	                       switch
//	                +------------------+
//	 client --------| brc (client LAN) |---- eth0 gw-a 192.0.2.11     (VRRP priority 150)
//	 192.0.2.2      |                  |---- eth0 gw-b 192.0.2.12     (VRRP priority 100)
//	                |                  |
//	 server --------| brs (server LAN) |---- eth1 gw-a 198.51.100.11
//	 198.51.100.2   |                  |---- eth1 gw-b 198.51.100.12
//	 attacker ------|                  |
//	 198.51.100.66  +------------------+
//
// The virtual addresses are the four-namespace topology's gateway addresses,
// 192.0.2.1 on the client LAN and 198.51.100.1 on the server LAN, held by
// the MASTER of one VRRP sync group (two instances, unicast adverts between
// the gateways' own addresses every 0.1 s, VRRPv3). The client's, the
// server's and the attacker's routes point at them, so after a takeover
// (gratuitous ARP from the new master) the backup forwards every packet:
// the live transfer's and the attacker's forged resets claiming to come from
// the server. The switch's bridges are the only things in its namespace.
//
// IPv4 only: the IPv6 paths are those of the four-namespace lab.

// The HA topology's namespaces besides client, server and attacker.
const (
	GatewayA Host = "gw-a"   // the active gateway (higher VRRP priority)
	GatewayB Host = "gw-b"   // the backup
	Switch   Host = "switch" // the two LAN bridges
)

// HAHosts lists the HA topology's namespaces in creation order.
var HAHosts = []Host{Switch, Client, GatewayA, GatewayB, Server, Attacker}

// The gateways' own addresses (the virtual ones are GatewayV4C and
// GatewayV4S).
var (
	GatewayAV4C = netip.MustParseAddr("192.0.2.11")
	GatewayAV4S = netip.MustParseAddr("198.51.100.11")
	GatewayBV4C = netip.MustParseAddr("192.0.2.12")
	GatewayBV4S = netip.MustParseAddr("198.51.100.12")
)

// HA interface names inside each gateway.
const (
	haClientIf = "eth0" // on the client LAN
	haServerIf = "eth1" // on the server LAN
)

// NewHATopology creates the HA topology: the switch with its two bridges,
// the hosts and both gateways (forwarding, rp_filter and redirects off, as
// in the four-namespace gateway). Neither gateway holds the virtual
// addresses until keepalived runs (StartKeepalived). On any error
// everything created so far is removed.
func NewHATopology(ctx context.Context, o TopologyOptions) (_ *Topology, err error) {
	t, err := newNamespaces(ctx, o, HAHosts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	sw := t.NS(Switch)
	// Each host's link is a veth pair whose switch end is a bridge port
	// named after the LAN and the host ("c-client", "s-gw-a").
	type port struct {
		h      Host
		dev    string
		bridge string
	}
	ports := []port{
		{Client, "eth0", "brc"},
		{GatewayA, haClientIf, "brc"}, {GatewayB, haClientIf, "brc"},
		{GatewayA, haServerIf, "brs"}, {GatewayB, haServerIf, "brs"},
		{Server, "eth0", "brs"}, {Attacker, "eth0", "brs"},
	}
	steps := [][]string{
		{"ip", "-n", sw, "link", "add", "brc", "type", "bridge"},
		{"ip", "-n", sw, "link", "add", "brs", "type", "bridge"},
	}
	for _, p := range ports {
		peer := p.bridge[2:3] + "-" + string(p.h)
		steps = append(steps,
			[]string{"ip", "-n", t.NS(p.h), "link", "add", p.dev, "type", "veth", "peer", "name", peer, "netns", sw},
			[]string{"ip", "-n", sw, "link", "set", peer, "master", p.bridge},
			[]string{"ip", "-n", sw, "link", "set", peer, "up"})
	}
	steps = append(steps,
		[]string{"ip", "-n", sw, "link", "set", "brc", "up"},
		[]string{"ip", "-n", sw, "link", "set", "brs", "up"})
	for _, st := range steps {
		if _, err := t.run(ctx, st[0], st[1:]...); err != nil {
			return nil, err
		}
	}
	gw := []string{
		"net.ipv4.ip_forward=1",
		"net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.all.send_redirects=0",
		"net.ipv4.conf.default.send_redirects=0",
	}
	for _, h := range []Host{GatewayA, GatewayB} {
		if err := t.Sysctl(h, gw...); err != nil {
			return nil, err
		}
		if err := t.Sysctl(h, "net.ipv4.conf."+haClientIf+".rp_filter=0", "net.ipv4.conf."+haServerIf+".rp_filter=0"); err != nil {
			return nil, err
		}
	}
	addrs := []struct {
		h   Host
		dev string
		pfx string
	}{
		{Client, "eth0", ClientV4.String() + "/24"},
		{GatewayA, haClientIf, GatewayAV4C.String() + "/24"}, {GatewayA, haServerIf, GatewayAV4S.String() + "/24"},
		{GatewayB, haClientIf, GatewayBV4C.String() + "/24"}, {GatewayB, haServerIf, GatewayBV4S.String() + "/24"},
		{Server, "eth0", ServerV4.String() + "/24"},
		{Attacker, "eth0", AttackerV4.String() + "/24"},
	}
	for _, a := range addrs {
		if _, err := t.Exec(a.h, "ip", "addr", "add", a.pfx, "dev", a.dev); err != nil {
			return nil, err
		}
		if _, err := t.Exec(a.h, "ip", "link", "set", a.dev, "up"); err != nil {
			return nil, err
		}
	}
	routes := []struct {
		h   Host
		via netip.Addr
	}{
		{Client, GatewayV4C}, {Server, GatewayV4S}, {Attacker, GatewayV4S},
	}
	for _, r := range routes {
		if _, err := t.Exec(r.h, "ip", "route", "add", "default", "via", r.via.String()); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// VRRP is one gateway's keepalived configuration (KeepalivedConfig).
type VRRP struct {
	RouterID               string
	Priority               int
	ClientIf, ServerIf     string
	ClientSelf, ClientPeer netip.Addr // own and peer's address on the client LAN
	ServerSelf, ServerPeer netip.Addr
	ClientVIP, ServerVIP   netip.Prefix
	Check                  string // the track script command line ("" for none)
	Notify                 string // the notify command line ("" for none)
	ScriptUser             string // user the scripts run as ("root" if empty)
	ClientVRID, ServerVRID int    // virtual_router_id of the two instances
}

// HAVRRP returns the lab's VRRP settings of gateway h (GatewayA or
// GatewayB), with check and notify as the script command lines.
func HAVRRP(h Host, check, notify string) VRRP {
	v := VRRP{
		RouterID: string(h), ClientIf: haClientIf, ServerIf: haServerIf,
		ClientVIP: netip.PrefixFrom(GatewayV4C, 24), ServerVIP: netip.PrefixFrom(GatewayV4S, 24),
		Check: check, Notify: notify, ClientVRID: 51, ServerVRID: 52,
	}
	if h == GatewayA {
		v.Priority = 150
		v.ClientSelf, v.ClientPeer, v.ServerSelf, v.ServerPeer = GatewayAV4C, GatewayBV4C, GatewayAV4S, GatewayBV4S
	} else {
		v.Priority = 100
		v.ClientSelf, v.ClientPeer, v.ServerSelf, v.ServerPeer = GatewayBV4C, GatewayAV4C, GatewayBV4S, GatewayAV4S
	}
	return v
}

// KeepalivedConfig renders v as keepalived.conf: one sync group of two
// VRRPv3 instances (client LAN, server LAN), unicast adverts every 0.1 s,
// both in BACKUP at start with no preemption delay, the track script (if
// any) gating both instances with init_fail, and the notify script on the
// group. deploy/keepalived/keepalived.conf is this for gw-a with the
// installed scripts.
func KeepalivedConfig(v VRRP) string {
	user := v.ScriptUser
	if user == "" {
		user = "root"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# keepalived.conf of gateway %s of an rstguard pair (VRRP priority %d); the
# peer runs the same with its own priority, router_id and addresses. The
# scripts are rstguard's deploy/keepalived/rstguard-check.sh and
# rstguard-notify.sh, owned by root, mode 0755 (enable_script_security).
# rstguard lab --only ha-failover runs this (lab.KeepalivedConfig).
global_defs {
    router_id %s
    vrrp_version 3
    script_user %s
    enable_script_security
}
`, v.RouterID, v.Priority, v.RouterID, user)
	track := ""
	if v.Check != "" {
		fmt.Fprintf(&b, `
# The guard must be ready (every queue bound) before this gateway may hold
# the addresses: init_fail starts the instances in FAULT until it is.
vrrp_script rstguard_ready {
    script "%s"
    interval 1
    timeout 2
    fall 2
    rise 1
    init_fail
}
`, v.Check)
		track = `
    track_script {
        rstguard_ready
    }`
	}
	notify := ""
	if v.Notify != "" {
		notify = fmt.Sprintf("\n    notify \"%s\"", v.Notify)
	}
	fmt.Fprintf(&b, `
# Both LANs fail over together: a gateway holds both addresses or neither.
vrrp_sync_group rstguard {
    group {
        client_lan
        server_lan
    }%s
}
`, notify)
	inst := func(name, ifc string, id int, self, peer netip.Addr, vip netip.Prefix) {
		fmt.Fprintf(&b, `
vrrp_instance %s {
    state BACKUP
    interface %s
    virtual_router_id %d
    priority %d
    advert_int 0.1
    unicast_src_ip %s
    unicast_peer {
        %s
    }
    virtual_ipaddress {
        %s dev %s
    }%s
}
`, name, ifc, id, v.Priority, self, peer, vip, ifc, track)
	}
	inst("client_lan", v.ClientIf, v.ClientVRID, v.ClientSelf, v.ClientPeer, v.ClientVIP)
	inst("server_lan", v.ServerIf, v.ServerVRID, v.ServerSelf, v.ServerPeer, v.ServerVIP)
	return b.String()
}

// Keepalived is a keepalived running in the foreground in a gateway
// namespace (--dont-fork, its own pid files): Stop ends it and its VRRP
// child by PID.
type Keepalived struct {
	*Daemon
	vrrpPID string // the VRRP child's pid file
}

// StartKeepalived runs keepalived with config file conf in h's namespace,
// VRRP only, logging to its output (Daemon.Log), with its pid files in dir.
func (t *Topology) StartKeepalived(h Host, conf, dir string) (*Keepalived, error) {
	base := filepath.Join(dir, "keepalived-"+string(h))
	k := &Keepalived{vrrpPID: base + ".vrrp.pid"}
	d, err := t.StartProcess(h, "keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog",
		"--vrrp", "--use-file="+conf, "--pid="+base+".pid", "--vrrp_pid="+k.vrrpPID)
	if err != nil {
		return nil, err
	}
	k.Daemon = d
	return k, nil
}

// Stop sends keepalived SIGTERM (it sends priority 0 adverts and releases
// the addresses), waits for it, and kills a VRRP child left behind.
func (k *Keepalived) Stop() error {
	err := k.Daemon.Stop()
	k.reapChild()
	return err
}

// Kill kills keepalived and its VRRP child.
func (k *Keepalived) Kill() {
	k.Daemon.Kill()
	k.reapChild()
}

func (k *Keepalived) reapChild() {
	b, err := os.ReadFile(k.vrrpPID)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "keepalived" {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// HasAddr reports whether h's interface dev has address a.
func (t *Topology) HasAddr(h Host, dev string, a netip.Addr) (bool, error) {
	var has bool
	err := t.Do(h, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		as, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, x := range as {
			if n, ok := x.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
					has = true
				}
			}
		}
		return nil
	})
	return has, err
}

// waitAddr polls until h's dev has (want) or lacks (!want) address a.
func (t *Topology) waitAddr(ctx context.Context, h Host, dev string, a netip.Addr, want bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		has, err := t.HasAddr(h, dev, a)
		if err != nil {
			return err
		}
		if has == want {
			return nil
		}
		select {
		case <-ctx.Done():
			verb := "hold"
			if !want {
				verb = "release"
			}
			return fmt.Errorf("%s did not %s %v on %s within %v", t.NS(h), verb, a, dev, timeout)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// errNoTransition is returned when a notify log lacks the transition.
var errNoTransition = errors.New("no such VRRP transition")

// transitionTime returns the time of the first line of a notify log
// (rstguard-notify.sh: "UNIXTIME.NANOS TYPE NAME STATE guard=...") with
// type GROUP and the given state, not before after, and the guard's
// readiness it recorded.
func transitionTime(log []byte, state string, after time.Time) (time.Time, string, error) {
	for _, line := range strings.Split(string(log), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != "GROUP" || f[3] != state {
			continue
		}
		sec, frac, _ := strings.Cut(f[0], ".")
		s, err := strconv.ParseInt(sec, 10, 64)
		if err != nil {
			return time.Time{}, "", fmt.Errorf("notify log line %q: %w", line, err)
		}
		ns := int64(0)
		if frac != "" {
			frac = (frac + "000000000")[:9]
			if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
				return time.Time{}, "", fmt.Errorf("notify log line %q: %w", line, err)
			}
		}
		at := time.Unix(s, ns)
		if at.Before(after) {
			continue
		}
		guard := ""
		if len(f) > 4 {
			guard = strings.TrimPrefix(f[4], "guard=")
		}
		return at, guard, nil
	}
	return time.Time{}, "", fmt.Errorf("%w: GROUP %s", errNoTransition, state)
}
