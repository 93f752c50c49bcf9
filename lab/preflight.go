package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// PreflightError lists every missing prerequisite of the lab, each as a
// sentence that says how to fix it.
type PreflightError struct {
	Missing []string
}

func (e *PreflightError) Error() string {
	return "the lab cannot run on this machine:\n  - " + strings.Join(e.Missing, "\n  - ")
}

// Exact messages of Preflight (tests and users match on them).
const (
	msgNotRoot      = "not running as root: the lab creates network namespaces and firewall rules (run it with sudo, e.g. `sudo rstguard lab`)"
	msgNoIP         = "the `ip` command (iproute2) is missing: apt-get install -y iproute2"
	msgNoIPT        = "the `iptables` command is missing: apt-get install -y iptables"
	msgNoIP6T       = "the `ip6tables` command is missing: apt-get install -y iptables"
	msgNoNetns      = "cannot create a network namespace (%s): the kernel needs CONFIG_NET_NS and the process CAP_SYS_ADMIN (inside a container, run it privileged)"
	msgNoMatch      = "the kernel refused the lab's counting rule (%s): load the matches with `modprobe xt_hl xt_comment` (kernel config NETFILTER_XT_MATCH_HL, NETFILTER_XT_MATCH_COMMENT)"
	msgNoKeepalived = "the `keepalived` command is missing (the HA scenario runs it): apt-get install -y keepalived"
	msgNoCurl       = "the `curl` command is missing (keepalived's rstguard-check.sh runs it): apt-get install -y curl"
	msgNoNFQueue    = "the kernel refused an NFQUEUE rule (%s): load the module with `modprobe nfnetlink_queue xt_NFQUEUE` (kernel config NETFILTER_NETLINK_QUEUE and NETFILTER_XT_TARGET_NFQUEUE)"
)

// Preflight checks what the lab needs: root, the ip, iptables and ip6tables
// tools, network namespaces, and kernel NFQUEUE support (probed by
// installing an NFQUEUE rule for IPv4 and IPv6 in a scratch namespace named
// prefix+"probe", removed afterwards). It returns a *PreflightError listing
// everything missing, or nil.
func Preflight(ctx context.Context, prefix string) error {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !validPrefix(prefix) {
		return fmt.Errorf("%w: %q", errPrefix, prefix)
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, msgNotRoot)
	}
	tools := []struct{ name, msg string }{
		{"ip", msgNoIP}, {"iptables", msgNoIPT}, {"ip6tables", msgNoIP6T},
	}
	for _, tl := range tools {
		if _, err := exec.LookPath(tl.name); err != nil {
			missing = append(missing, tl.msg)
		}
	}
	if len(missing) > 0 {
		// Without root or the tools the kernel probe cannot run.
		return &PreflightError{Missing: missing}
	}
	if err := probeNFQueue(ctx, prefix+"probe"); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		return &PreflightError{Missing: missing}
	}
	return nil
}

func probeNFQueue(ctx context.Context, ns string) error {
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if nsExists(ns) {
		_ = run("ip", "netns", "del", ns)
	}
	if err := run("ip", "netns", "add", ns); err != nil {
		return fmt.Errorf(msgNoNetns, err)
	}
	defer func() { _ = run("ip", "netns", "del", ns) }()
	var errs []error
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if err := run("ip", "netns", "exec", ns, ipt, "-A", "FORWARD", "-p", "tcp", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf(msgNoNFQueue, err)
	}
	// The victim's counting rules (run.go): TTL / hop limit and comment.
	for _, r := range [][]string{
		{"iptables", "-A", "INPUT", "-p", "tcp", "-m", "ttl", "--ttl-eq", "1", "-m", "comment", "--comment", "probe"},
		{"ip6tables", "-A", "INPUT", "-p", "tcp", "-m", "hl", "--hl-eq", "1", "-m", "comment", "--comment", "probe"},
	} {
		if err := run(append([]string{"ip", "netns", "exec", ns}, r...)...); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf(msgNoMatch, err)
	}
	return nil
}

// PreflightHA is Preflight plus what the HA scenario needs: keepalived, and
// curl for the shipped keepalived scripts.
func PreflightHA(ctx context.Context, prefix string) error {
	var missing []string
	if err := Preflight(ctx, prefix); err != nil {
		var pe *PreflightError
		if !errors.As(err, &pe) {
			return err
		}
		missing = pe.Missing
	}
	for _, tl := range []struct{ name, msg string }{{"keepalived", msgNoKeepalived}, {"curl", msgNoCurl}} {
		if _, err := exec.LookPath(tl.name); err != nil {
			missing = append(missing, tl.msg)
		}
	}
	if len(missing) > 0 {
		return &PreflightError{Missing: missing}
	}
	return nil
}
