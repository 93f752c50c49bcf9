//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/rstguard/rstguard/lab"
)

// Addresses of lab's topology (documentation ranges only, RFC 5737).
var (
	clientAddr = lab.ClientV4.String()
	serverAddr = lab.ServerV4.String()
)

const (
	iperfPort      = "5201"
	netnsPrefix    = "rgb-"
	commandTimeout = 20 * time.Second
)

// topology is lab's client - gateway - server network (its attacker
// namespace stays idle): the gateway routes between the client's veth and
// the server LAN (a bridge inside the gateway namespace).
type topology struct {
	lab                     *lab.Topology
	client, gateway, server string
}

func newTopology(ctx context.Context) (*topology, error) {
	lt, err := lab.NewTopology(ctx, lab.TopologyOptions{Prefix: netnsPrefix})
	if err != nil {
		return nil, err
	}
	return &topology{lab: lt, client: lt.NS(lab.Client), gateway: lt.NS(lab.Gateway), server: lt.NS(lab.Server)}, nil
}

// close deletes the namespaces (and with them the links and rules). It
// runs on every exit path.
func (t *topology) close() {
	if err := t.lab.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway: cleanup:", err)
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
func inNetns(ns string, fn func() error) error { return lab.DoIn(ns, fn) }

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
