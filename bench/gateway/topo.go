//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses: documentation ranges only (RFC 5737).
const (
	clientAddr     = "192.0.2.2"
	gwClientAddr   = "192.0.2.1"
	serverAddr     = "198.51.100.2"
	gwServerAddr   = "198.51.100.1"
	iperfPort      = "5201"
	netnsPrefix    = "rgb-"
	commandTimeout = 20 * time.Second
)

// topology is three namespaces, client - gateway - server, joined by two
// veth pairs; the gateway forwards. Names carry the benchmark's PID so a
// stale topology from a killed run never collides with this one.
type topology struct {
	client, gateway, server string
}

func newTopology(ctx context.Context) (*topology, error) {
	suffix := fmt.Sprint(os.Getpid())
	t := &topology{
		client:  netnsPrefix + "cli-" + suffix,
		gateway: netnsPrefix + "gw-" + suffix,
		server:  netnsPrefix + "srv-" + suffix,
	}
	steps := [][]string{
		{"ip", "netns", "add", t.client},
		{"ip", "netns", "add", t.gateway},
		{"ip", "netns", "add", t.server},
		{"ip", "-n", t.gateway, "link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", t.client},
		{"ip", "-n", t.gateway, "link", "add", "s0", "type", "veth", "peer", "name", "eth0", "netns", t.server},
		{"ip", "-n", t.client, "addr", "add", clientAddr + "/24", "dev", "eth0"},
		{"ip", "-n", t.gateway, "addr", "add", gwClientAddr + "/24", "dev", "c0"},
		{"ip", "-n", t.gateway, "addr", "add", gwServerAddr + "/24", "dev", "s0"},
		{"ip", "-n", t.server, "addr", "add", serverAddr + "/24", "dev", "eth0"},
	}
	for _, ns := range []string{t.client, t.gateway, t.server} {
		steps = append(steps, []string{"ip", "-n", ns, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"ip", "-n", t.client, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", t.server, "link", "set", "eth0", "up"},
		[]string{"ip", "-n", t.gateway, "link", "set", "c0", "up"},
		[]string{"ip", "-n", t.gateway, "link", "set", "s0", "up"},
		[]string{"ip", "-n", t.client, "route", "add", "default", "via", gwClientAddr},
		[]string{"ip", "-n", t.server, "route", "add", "default", "via", gwServerAddr},
		[]string{"ip", "netns", "exec", t.gateway, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	)
	for _, s := range steps {
		if _, err := run(ctx, s...); err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

// close deletes the namespaces (and with them the veths and rules). It
// runs on every exit path, with its own timeout.
func (t *topology) close() {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	for _, ns := range []string{t.client, t.gateway, t.server} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
				fmt.Fprintln(os.Stderr, "gateway: cleanup:", err)
			}
		}
	}
}

// run runs a command with a bounded time and returns its standard output;
// the error names the command and quotes its standard error.
func run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// inNetns runs fn on an OS thread switched into namespace ns. Sockets fn
// creates stay in ns for their whole life, whatever thread uses them later.
func inNetns(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(orig)
	target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards it when this
		// goroutine exits, so no other goroutine runs in ns by accident.
		return errors.Join(ferr, fmt.Errorf("setns back from %s: %w", ns, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// proc is a long-running child (iperf3 server, an NFQUEUE program) started
// in a namespace. ip netns exec execs the program, so the PID is the
// program's own; Pdeathsig kills it if the benchmark dies.
//
// stdout and stderr may be read only once done is closed.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

func startIn(ns, name string, args ...string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL; by PID only.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}
