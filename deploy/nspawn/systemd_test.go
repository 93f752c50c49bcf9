//go:build linux

package nspawn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

const (
	// debPackages is what the container root needs besides the apt variant.
	debPackages = "systemd,systemd-sysv,dbus,iptables,procps"
	suite       = "bookworm"
	// rootMarker records, in a finished cache, what it was built from; a
	// different value (or none) rebuilds the cache.
	rootMarker = ".rstguard-nspawn-root"

	metricsAddr = "127.0.0.1:9813"
	// The queues live in the container's own network namespace
	// (--private-network), so they collide with nothing on the host.
	goodConfig = `# rstguard nspawn test
[queue]
numbers = [7, 8]

[metrics]
listen = "` + metricsAddr + `"

[log]
level = "info"
format = "auto" # the default: journal lines with a <N> priority prefix under systemd
`
	// reloadConfig changes the queue numbers, which a reload keeps and
	// warns about: the warning the journal priority check looks for.
	reloadConfig = `# rstguard nspawn test, reloaded
[queue]
numbers = [7, 8, 9]

[metrics]
listen = "` + metricsAddr + `"

[log]
level = "info"
format = "auto"
`
	brokenConfig = "[queue\nnumbers = [7,\n"
	// dupConfig binds the queues the service already holds, without a
	// metrics listener: a second instance that can never become ready.
	dupConfig = `[queue]
numbers = [7, 8]

[metrics]
listen = ""
`
	watchdogDropIn = "[Service]\n# nspawn test: a short watchdog so the SIGSTOP check takes seconds.\nWatchdogSec=3s\n"

	warnQueueChanged = "settings changed that take effect only at the next restart"
	// infoReady and infoReloaded are info lines the daemon logs at start
	// and on reload:
	// journalctl -p warning must not show them.
	infoReady       = "ready: every queue is bound"
	infoReloaded    = "msg=reloaded file="
	errReloadFailed = "reload failed; keeping the running configuration"
	maxExposure     = 1.5
)

func e2e() bool { return os.Getenv("RSTGUARD_E2E") == "1" }

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if e2e() {
		t.Fatalf("RSTGUARD_E2E=1: "+format, args...)
	}
	t.Skipf(format+" (set RSTGUARD_E2E=1 to make this a failure)", args...)
}

func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		skipOrFail(t, "%s not found: apt-get install -y %s (or make deps)", tool, pkg)
	}
	return p
}

// table collects the checks and their results for the lead to paste.
type table struct {
	t    *testing.T
	rows [][3]string
}

func (tb *table) pass(name, detail string, args ...any) {
	tb.rows = append(tb.rows, [3]string{name, "PASS", fmt.Sprintf(detail, args...)})
}

func (tb *table) fail(name, detail string, args ...any) {
	tb.t.Helper()
	d := fmt.Sprintf(detail, args...)
	tb.rows = append(tb.rows, [3]string{name, "FAIL", d})
	tb.t.Errorf("%s: %s", name, d)
}

// check records a pass when err is nil, else a failure.
func (tb *table) check(name string, err error, detail string, args ...any) {
	tb.t.Helper()
	if err != nil {
		tb.fail(name, "%v", err)
		return
	}
	tb.pass(name, detail, args...)
}

func (tb *table) print() {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CHECK\tRESULT\tDETAIL")
	for _, r := range tb.rows {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	w.Flush()
	tb.t.Log("systemd checks:\n" + b.String())
}

// containerSetup is the preamble of the container tests: root, the tools,
// RSTGUARD_E2E=1 (without it, a plain go test ./... as root must not
// download a Debian root or boot containers outside the netns lock), then
// the cached root and an overlay on it in a fresh work directory named
// after prefix. It returns the check table (printed at the end of the
// test), the repository, the work directory, the overlay and the go tool.
func containerSetup(t *testing.T, prefix, run string, tools ...[2]string) (tb *table, repo, work, root, goTool string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to boot a systemd-nspawn container; run: sudo env RSTGUARD_E2E=1 go test ./deploy/nspawn/")
	}
	needTool(t, "systemd-nspawn", "systemd-container")
	needTool(t, "mmdebstrap", "mmdebstrap")
	needTool(t, "nsenter", "util-linux")
	for _, tool := range tools {
		needTool(t, tool[0], tool[1])
	}
	goTool = needTool(t, "go", "golang")
	if _, err := os.Stat("/proc/sys/net/netfilter"); err != nil {
		skipOrFail(t, "no netfilter in this kernel (/proc/sys/net/netfilter: %v)", err)
	}
	if _, err := os.Stat("/proc/net/netfilter/nfnetlink_queue"); err != nil {
		skipOrFail(t, "nfnetlink_queue is not loaded and a container cannot load it: modprobe nfnetlink_queue (%v)", err)
	}
	if !e2e() {
		t.Skip("boots systemd in a systemd-nspawn container (and builds a 200 MB root once with mmdebstrap): run " + run)
	}
	tb = &table{t: t}
	var err error
	if repo, err = filepath.Abs("../.."); err != nil {
		t.Fatal(err)
	}
	cache := cachedRoot(t, tb)
	if work, err = os.MkdirTemp("", prefix); err != nil {
		t.Fatal(err)
	}
	return tb, repo, work, overlay(t, cache, work), goTool
}

func TestSystemdUnit(t *testing.T) {
	start := time.Now()
	tb, repo, work, root, goTool := containerSetup(t, "rstguard-nspawn-",
		"flock /tmp/rstguard-netns.lock env RSTGUARD_E2E=1 go test -count=1 -v ./deploy/nspawn/")
	defer tb.print()

	// Install the way a user does: build, then deploy/install.sh into the
	// container's root (make install DESTDIR=... runs the same script).
	bin := filepath.Join(work, "rstguard")
	t0 := time.Now()
	build := exec.Command(goTool, "build", "-trimpath", "-o", bin, "./cmd/rstguard")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rstguard: %v\n%s", err, out)
	}
	inst := exec.Command("sh", filepath.Join(repo, "deploy", "install.sh"), bin)
	inst.Env = append(os.Environ(), "DESTDIR="+root)
	if out, err := inst.CombinedOutput(); err != nil {
		t.Fatalf("deploy/install.sh with DESTDIR=%s: %v\n%s", root, err, out)
	}
	writeFile(t, filepath.Join(root, "etc/rstguard/config.toml"), goodConfig)
	writeFile(t, filepath.Join(root, "etc/rstguard/dup.toml"), dupConfig)
	writeFile(t, filepath.Join(root, "etc/systemd/system/rstguard.service.d/50-nspawn-test.conf"), watchdogDropIn)
	if out, err := exec.Command(bin, "check-config", filepath.Join(root, "etc/rstguard/config.toml")).CombinedOutput(); err != nil {
		t.Fatalf("rstguard check-config of the test configuration: %v\n%s", err, out)
	}
	tb.pass("install", "go build + deploy/install.sh DESTDIR=<overlay> (%s); drop-in WatchdogSec=3s", since(t0))

	t0 = time.Now()
	c := boot(t, root, work)
	ver, _ := c.sh("systemctl --version | head -n1")
	tb.pass("boot", "%s as PID 1 (host pid %d), system running after %s", strings.TrimSpace(ver), c.pid1, since(t0))

	t.Cleanup(func() {
		// Before the container goes: on a failure, the unit's journal.
		if t.Failed() {
			j, _ := c.run(10*time.Second, "journalctl", "--no-pager", "-o", "short-monotonic", "-u", "rstguard", "-u", "rstguard-dup")
			t.Logf("journal of rstguard.service and rstguard-dup.service:\n%s", tail([]byte(j), 80))
		}
	})
	checkStart(t, tb, c)
	checkIdentity(t, tb, c)
	checkReload(t, tb, c, root)
	checkJournalPriority(t, tb, c)
	checkWatchdog(t, tb, c)
	checkKill9(t, tb, c)
	checkSecurity(t, tb, c)
	checkStop(t, tb, c)
	t.Logf("total %s", since(start))
}

func since(t0 time.Time) string { return time.Since(t0).Round(10 * time.Millisecond).String() }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cachedRoot returns the cached container root, building it with mmdebstrap
// when it is missing or was built from another package list.
func cachedRoot(t *testing.T, tb *table) string {
	t.Helper()
	dir := os.Getenv("RSTGUARD_NSPAWN_CACHE")
	if dir == "" {
		dir = "/var/cache/rstguard-nspawn/" + suite
	}
	want := "mmdebstrap --variant=apt --include=" + debPackages + " " + suite + "\n"
	if got, err := os.ReadFile(filepath.Join(dir, rootMarker)); err == nil && string(got) == want {
		if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
			tb.pass("root cache", "%s (cached)", dir)
			return dir
		}
	}
	t0 := time.Now()
	tmp := dir + ".building"
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatalf("removing a half-built root %s: %v", tmp, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=apt", "--include="+debPackages, suite, tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("mmdebstrap %s into %s failed (needs network access to a Debian mirror): %v\n%s", suite, tmp, err, tail(out, 40))
	}
	if err := os.WriteFile(filepath.Join(tmp, rootMarker), []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	tb.pass("root cache", "%s built by mmdebstrap in %s", dir, since(t0))
	return dir
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// overlay mounts a writable overlay of the cached root under work and
// returns it; the cleanup unmounts it and removes work.
func overlay(t *testing.T, lower, work string) string {
	t.Helper()
	upper, wdir, merged := filepath.Join(work, "upper"), filepath.Join(work, "ovl-work"), filepath.Join(work, "root")
	for _, d := range []string{upper, wdir, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + wdir
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		os.RemoveAll(work)
		skipOrFail(t, "cannot mount an overlay of %s (%v); the test needs overlayfs to keep the cached root pristine", lower, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(merged, 0); err != nil {
			// Never RemoveAll through a live mount (it would write
			// whiteouts, not delete the cache, but leave it alone).
			if err2 := syscall.Unmount(merged, syscall.MNT_DETACH); err2 != nil {
				t.Errorf("unmount %s: %v; %v (remove %s by hand)", merged, err, err2, work)
				return
			}
		}
		if err := os.RemoveAll(work); err != nil {
			t.Errorf("removing %s: %v", work, err)
		}
	})
	return merged
}

// container is a booted systemd-nspawn container.
type container struct {
	t      *testing.T
	nspawn *exec.Cmd
	exited chan struct{}
	pid1   int // the container's init, as the host sees it
	log    string
}

func boot(t *testing.T, root, work string) *container {
	t.Helper()
	name := fmt.Sprintf("rstguard-test-%d", os.Getpid())
	logPath := filepath.Join(work, "nspawn.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-nspawn", "-D", root, "-b", "--private-network",
		"--register=no", "--keep-unit", "--console=read-only", "-M", name)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a ^C of go test must not reach the container
	// before the cleanup powers it off.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("systemd-nspawn: %v", err)
	}
	logf.Close()
	c := &container{t: t, nspawn: cmd, exited: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); close(c.exited) }()
	t.Cleanup(c.terminate)

	deadline := time.Now().Add(20 * time.Second)
	for c.pid1 == 0 {
		select {
		case <-c.exited:
			t.Fatalf("systemd-nspawn exited before the container started:\n%s", c.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container init under systemd-nspawn (pid %d) after 20s:\n%s", cmd.Process.Pid, c.logTail())
		}
		c.pid1 = findInit(cmd.Process.Pid)
		if c.pid1 == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	var state string
	for {
		out, err := c.run(30*time.Second, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container systemd did not finish booting: is-system-running %q (%v)\n%s", state, err, c.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if state == "degraded" {
		failed, _ := c.run(10*time.Second, "systemctl", "--failed", "--no-pager")
		t.Logf("container booted degraded (not fatal for these checks):\n%s", failed)
	}
	return c
}

// findInit returns the child of the nspawn process that is PID 1 of its
// own PID namespace, or 0.
func findInit(nspawn int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		var ppid int
		var nspid []string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			} else if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
				nspid = strings.Fields(v)
			}
		}
		if ppid == nspawn && len(nspid) == 2 && nspid[1] == "1" {
			return pid
		}
	}
	return 0
}

func (c *container) logTail() string {
	b, _ := os.ReadFile(c.log)
	return tail(b, 30)
}

// terminate powers the container off through its nspawn process (SIGTERM
// makes nspawn send SIGRTMIN+3 to the container's systemd), then kills by
// PID what is left.
func (c *container) terminate() {
	p := c.nspawn.Process
	p.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return
	case <-time.After(15 * time.Second):
	}
	c.t.Errorf("container did not shut down within 15s of SIGTERM to systemd-nspawn (pid %d); killing it", p.Pid)
	if c.pid1 != 0 {
		syscall.Kill(c.pid1, syscall.SIGKILL) // its PID namespace dies with it
	}
	p.Kill()
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		c.t.Errorf("systemd-nspawn (pid %d) still running after SIGKILL", p.Pid)
	}
}

// run executes a command inside every namespace of the container with a
// clean environment and returns its standard output.
func (c *container) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(c.pid1), "-a", "--",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "TERM=dumb"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

func (c *container) sh(script string) (string, error) {
	return c.run(30*time.Second, "/bin/sh", "-c", script)
}

// show returns systemctl show properties of a unit.
func (c *container) show(unit string, props ...string) map[string]string {
	out, err := c.run(10*time.Second, "systemctl", "show", unit, "-p", strings.Join(props, ","))
	if err != nil {
		c.t.Errorf("systemctl show %s: %v", unit, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

var stateProps = []string{"ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText"}

func fmtState(m map[string]string) string {
	return fmt.Sprintf("%s/%s MainPID=%s NRestarts=%s Result=%s", m["ActiveState"], m["SubState"], m["MainPID"], m["NRestarts"], m["Result"])
}

// waitFor polls cond every 100ms until it returns nil or timeout passes;
// it returns the last error.
func waitFor(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// http fetches a path from the daemon's listener inside the container with
// bash's /dev/tcp (the root has no curl or wget).
func (c *container) http(path string) (status string, body string, err error) {
	out, err := c.run(10*time.Second, "/bin/bash", "-c",
		`exec 3<>/dev/tcp/${0%:*}/${0##*:} && printf 'GET %s HTTP/1.0\r\nHost: rstguard\r\n\r\n' "$1" >&3 && cat <&3`,
		metricsAddr, path)
	if err != nil {
		return "", "", err
	}
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	status, _, _ = strings.Cut(head, "\r\n")
	return status, body, nil
}

// metric returns the value of an unlabelled sample in the daemon's scrape.
func (c *container) metric(name string) (float64, error) {
	status, body, err := c.http("/metrics")
	if err != nil {
		return 0, err
	}
	if !strings.Contains(status, " 200") {
		return 0, fmt.Errorf("GET /metrics: %q", status)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no sample %s in /metrics", name)
}

// journal returns the MESSAGE and PRIORITY of every rstguard.service
// journal entry, optionally only those at priority warning or more severe.
type entry struct{ msg, prio string }

func (c *container) journal(unit string, warningOnly bool) ([]entry, error) {
	args := []string{"journalctl", "--no-pager", "-o", "json", "-u", unit}
	if warningOnly {
		args = append(args, "-p", "warning")
	}
	out, err := c.run(10*time.Second, args...)
	if err != nil {
		// journalctl exits 1 when nothing matched, on some versions.
		if strings.TrimSpace(out) == "" && strings.Contains(err.Error(), "No entries") {
			return nil, nil
		}
		return nil, err
	}
	var es []entry
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			return nil, fmt.Errorf("journalctl -o json line %q: %v", l, err)
		}
		var e entry
		if json.Unmarshal(m["MESSAGE"], &e.msg) != nil {
			var raw []byte // non-UTF-8 messages are byte arrays
			json.Unmarshal(m["MESSAGE"], &raw)
			e.msg = string(raw)
		}
		json.Unmarshal(m["PRIORITY"], &e.prio)
		es = append(es, e)
	}
	return es, nil
}

// waitJournal waits until a rstguard.service journal message contains sub.
func (c *container) waitJournal(sub string, timeout time.Duration) error {
	return waitFor(timeout, func() error {
		es, err := c.journal("rstguard.service", false)
		if err != nil {
			return err
		}
		for _, e := range es {
			if strings.Contains(e.msg, sub) {
				return nil
			}
		}
		return fmt.Errorf("no journal line of rstguard.service contains %q", sub)
	})
}

// boundQueues reads the container's nfnetlink_queue table (per network
// namespace).
func (c *container) boundQueues() (map[string]bool, error) {
	out, err := c.run(10*time.Second, "cat", "/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		return nil, err
	}
	q := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			q[f[0]] = true
		}
	}
	return q, nil
}

func checkStart(t *testing.T, tb *table, c *container) {
	t0 := time.Now()
	if _, err := c.run(30*time.Second, "systemctl", "daemon-reload"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run(30*time.Second, "systemctl", "enable", "--now", "rstguard"); err != nil {
		j, _ := c.run(10*time.Second, "journalctl", "--no-pager", "-u", "rstguard")
		t.Fatalf("systemctl enable --now rstguard: %v\n%s", err, j)
	}
	took := since(t0)
	st := c.show("rstguard", append(stateProps, "Type", "NotifyAccess", "ActiveEnterTimestampMonotonic")...)
	err := func() error {
		if st["Type"] != "notify" {
			return fmt.Errorf("Type=%s, want notify", st["Type"])
		}
		if st["ActiveState"] != "active" || st["SubState"] != "running" || st["MainPID"] == "0" {
			return fmt.Errorf("after enable --now: %s", fmtState(st))
		}
		if err := c.waitJournal("ready: every queue is bound", 5*time.Second); err != nil {
			return err
		}
		q, err := c.boundQueues()
		if err != nil {
			return err
		}
		if !q["7"] || !q["8"] {
			return fmt.Errorf("active, but queues 7 and 8 are not both bound in the container's namespace: %v", q)
		}
		status, _, err := c.http("/readyz")
		if err != nil {
			return err
		}
		if !strings.Contains(status, " 200") {
			return fmt.Errorf("GET /readyz while active: %q, want 200", status)
		}
		return nil
	}()
	tb.check("start: active after READY=1", err, "enable --now returned in %s; %s Type=notify, queues 7,8 bound, /readyz 200, StatusText=%q",
		took, fmtState(st), st["StatusText"])

	// The negative: a second instance on the same queues cannot bind, so it
	// never sends READY=1 and systemd must never call it active.
	t0 = time.Now()
	_, runErr := c.run(30*time.Second, "systemd-run", "--unit=rstguard-dup", "-p", "Type=notify",
		"-p", "DynamicUser=yes", "-p", "AmbientCapabilities=CAP_NET_ADMIN", "-p", "CapabilityBoundingSet=CAP_NET_ADMIN",
		"/usr/local/bin/rstguard", "run", "--config", "/etc/rstguard/dup.toml")
	dup := c.show("rstguard-dup", "ActiveState", "Result", "ActiveEnterTimestampMonotonic", "ExecMainStatus")
	dupLog, dupErr := c.journal("rstguard-dup.service", false)
	c.run(10*time.Second, "systemctl", "reset-failed", "rstguard-dup")
	err = func() error {
		if dupErr != nil {
			return dupErr
		}
		bindFailed := false
		for _, e := range dupLog {
			bindFailed = bindFailed || strings.Contains(e.msg, "could not bind a queue")
		}
		if !bindFailed {
			return fmt.Errorf("the second instance did not fail for the reason under test: no 'could not bind a queue' in its journal")
		}
		if runErr == nil {
			return fmt.Errorf("systemd-run of a second instance on queues 7,8 succeeded; its start job must fail (no READY=1)")
		}
		if dup["ActiveEnterTimestampMonotonic"] != "0" {
			return fmt.Errorf("second instance entered active at %s µs without binding its queues", dup["ActiveEnterTimestampMonotonic"])
		}
		if dup["ActiveState"] != "failed" || dup["Result"] != "exit-code" {
			return fmt.Errorf("second instance: ActiveState=%s Result=%s, want failed/exit-code", dup["ActiveState"], dup["Result"])
		}
		return nil
	}()
	tb.check("start: never active without READY=1", err, "duplicate instance on bound queues: start job failed in %s, %s/%s exit %s, never active",
		since(t0), dup["ActiveState"], dup["Result"], dup["ExecMainStatus"])
}

func readStatus(c *container, pid string) (map[string]string, error) {
	out, err := c.run(10*time.Second, "cat", "/proc/"+pid+"/status")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m, nil
}

func checkIdentity(t *testing.T, tb *table, c *container) {
	pid := c.show("rstguard", "MainPID")["MainPID"]
	var st map[string]string
	err := func() error {
		var err error
		st, err = readStatus(c, pid)
		if err != nil {
			return err
		}
		// DynamicUser= allocates from 61184-65519 (systemd's
		// DYNAMIC_UID_MIN/MAX); real, effective, saved and fs IDs alike.
		for _, k := range []string{"Uid", "Gid"} {
			ids := strings.Fields(st[k])
			if len(ids) != 4 {
				return fmt.Errorf("%s: %q", k, st[k])
			}
			for _, s := range ids {
				id, _ := strconv.Atoi(s)
				if id < 61184 || id > 65519 || s != ids[0] {
					return fmt.Errorf("%s: %s, want one dynamic ID in 61184-65519", k, st[k])
				}
			}
		}
		const netAdmin = 1 << 12 // CAP_NET_ADMIN
		for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
			v, err := strconv.ParseUint(st[k], 16, 64)
			if err != nil {
				return fmt.Errorf("%s: %q", k, st[k])
			}
			if v != netAdmin {
				return fmt.Errorf("%s=%s, want exactly CAP_NET_ADMIN (%016x)", k, st[k], netAdmin)
			}
		}
		if st["NoNewPrivs"] != "1" {
			return fmt.Errorf("NoNewPrivs=%s, want 1", st["NoNewPrivs"])
		}
		return nil
	}()
	tb.check("DynamicUser, only CAP_NET_ADMIN", err, "MainPID %s Uid %s CapEff %s CapBnd %s NoNewPrivs %s; bound queues 7,8 as that user",
		pid, strings.Fields(st["Uid"] + " ?")[0], st["CapEff"], st["CapBnd"], st["NoNewPrivs"])
}

func checkReload(t *testing.T, tb *table, c *container, root string) {
	before := c.show("rstguard", stateProps...)
	cfg := filepath.Join(root, "etc/rstguard/config.toml")
	writeFile(t, cfg, reloadConfig)
	t0 := time.Now()
	_, err := c.run(20*time.Second, "systemctl", "reload", "rstguard")
	var after map[string]string
	if err == nil {
		err = waitFor(5*time.Second, func() error {
			v, err := c.metric("rstguard_config_reloads_total")
			if err != nil {
				return err
			}
			if v != 1 {
				return fmt.Errorf("rstguard_config_reloads_total %g, want 1", v)
			}
			// RELOADING=1 put the unit in "reload"; READY=1 must bring it
			// back to running.
			after = c.show("rstguard", append(stateProps, "ReloadResult")...)
			if after["SubState"] != "running" {
				return fmt.Errorf("after reload: %s, want running again (READY=1 after RELOADING=1)", fmtState(after))
			}
			return nil
		})
	}
	if err == nil {
		err = c.waitJournal("reloaded", 3*time.Second)
	}
	if err == nil && (after["MainPID"] != before["MainPID"] || after["NRestarts"] != before["NRestarts"]) {
		err = fmt.Errorf("reload restarted the daemon: before %s, after %s", fmtState(before), fmtState(after))
	}
	if err == nil && after["ReloadResult"] != "" && after["ReloadResult"] != "success" {
		err = fmt.Errorf("ReloadResult=%s", after["ReloadResult"])
	}
	tb.check("reload: RELOADING=1 -> READY=1", err, "%s; config_reloads_total 1, same MainPID %s, NRestarts %s, back to running",
		since(t0), before["MainPID"], before["NRestarts"])

	writeFile(t, cfg, brokenConfig)
	t0 = time.Now()
	_, err = c.run(20*time.Second, "systemctl", "reload", "rstguard")
	if err == nil {
		err = waitFor(5*time.Second, func() error {
			v, err := c.metric("rstguard_config_reload_failed_total")
			if err != nil {
				return err
			}
			if v != 1 {
				return fmt.Errorf("rstguard_config_reload_failed_total %g, want 1", v)
			}
			after = c.show("rstguard", stateProps...)
			if after["ActiveState"] != "active" || after["SubState"] != "running" || after["MainPID"] != before["MainPID"] {
				return fmt.Errorf("after a broken reload: %s, want active/running MainPID=%s", fmtState(after), before["MainPID"])
			}
			return nil
		})
	}
	if err == nil {
		if v, e := c.metric("rstguard_config_reloads_total"); e != nil || v != 1 {
			err = fmt.Errorf("rstguard_config_reloads_total %g (%v) after a broken reload, want still 1", v, e)
		}
	}
	if err == nil {
		err = c.waitJournal(errReloadFailed, 3*time.Second)
	}
	if err == nil {
		if q, e := c.boundQueues(); e != nil || !q["7"] || !q["8"] {
			err = fmt.Errorf("queues after a broken reload: %v %v", q, e)
		}
	}
	tb.check("reload: broken file keeps config", err, "%s; config_reload_failed_total 1, still active, queues 7,8 bound", since(t0))
	writeFile(t, cfg, goodConfig)
}

// checkJournalPriority: the daemon's warnings and errors are stored at
// their priority (journalctl -p warning -u rstguard shows them, PRIORITY 4
// and 3, the "<N>" prefix stripped) and its info lines at 6, so -p warning
// leaves them out.
func checkJournalPriority(t *testing.T, tb *table, c *container) {
	const name = "journal: warnings at priority<=4"
	all, err := c.journal("rstguard.service", false)
	if err != nil {
		tb.fail(name, "%v", err)
		return
	}
	warn, err := c.journal("rstguard.service", true)
	if err != nil {
		tb.fail(name, "%v", err)
		return
	}
	// The daemon's own lines, not systemd's about the unit.
	daemonLine := func(e entry, sub string) bool {
		return strings.Contains(e.msg, sub) && !strings.Contains(e.msg, "rstguard.service:")
	}
	var problems, seen []string
	for _, w := range []struct{ msg, prio string }{
		{warnQueueChanged, "4"}, {errReloadFailed, "3"}, {infoReady, "6"}, {infoReloaded, "6"},
	} {
		var prio, text string
		for _, e := range all {
			if daemonLine(e, w.msg) {
				prio, text = e.prio, e.msg
				break
			}
		}
		if prio == "" {
			problems = append(problems, fmt.Sprintf("the daemon never logged %q", w.msg))
			continue
		}
		if prio != w.prio {
			problems = append(problems, fmt.Sprintf("%q stored at PRIORITY=%s, want %s", w.msg, prio, w.prio))
		}
		if strings.HasPrefix(text, "<") || strings.Contains(text, "time=") {
			problems = append(problems, fmt.Sprintf("MESSAGE %q keeps the prefix or a time (want it stripped, the journal stamps entries)", text))
		}
		shown := false
		for _, e := range warn {
			if daemonLine(e, w.msg) {
				shown = true
			}
		}
		if want := w.prio <= "4"; shown != want {
			problems = append(problems, fmt.Sprintf("journalctl -p warning shows %q: %v, want %v", w.msg, shown, want))
		}
		seen = append(seen, fmt.Sprintf("%q=%s", w.msg, prio))
	}
	for _, e := range warn {
		if e.prio > "4" {
			problems = append(problems, fmt.Sprintf("journalctl -p warning returned %q at PRIORITY=%s", e.msg, e.prio))
		}
	}
	if len(problems) > 0 {
		tb.fail(name, "%s", strings.Join(problems, "; "))
		return
	}
	tb.pass(name, "journalctl -p warning -u rstguard: %d of %d lines; PRIORITY %s", len(warn), len(all), strings.Join(seen, ", "))
}

// waitRestart waits until the unit has restarted once more than before and
// is active with a new main PID.
func waitRestart(c *container, before map[string]string, timeout time.Duration) (map[string]string, error) {
	n, _ := strconv.Atoi(before["NRestarts"])
	var st map[string]string
	err := waitFor(timeout, func() error {
		st = c.show("rstguard", stateProps...)
		if m, _ := strconv.Atoi(st["NRestarts"]); m != n+1 {
			return fmt.Errorf("NRestarts %s, want %d: %s", st["NRestarts"], n+1, fmtState(st))
		}
		if st["ActiveState"] != "active" || st["SubState"] != "running" || st["MainPID"] == before["MainPID"] || st["MainPID"] == "0" {
			return fmt.Errorf("not running again with a new MainPID: %s (was %s)", fmtState(st), before["MainPID"])
		}
		return nil
	})
	return st, err
}

func checkWatchdog(t *testing.T, tb *table, c *container) {
	before := c.show("rstguard", append(stateProps, "WatchdogUSec")...)
	t0 := time.Now()
	var after map[string]string
	err := func() error {
		if before["WatchdogUSec"] != "3s" {
			return fmt.Errorf("WatchdogUSec=%s, the test drop-in sets 3s", before["WatchdogUSec"])
		}
		if _, err := c.run(10*time.Second, "kill", "-STOP", before["MainPID"]); err != nil {
			return err
		}
		var err error
		after, err = waitRestart(c, before, 15*time.Second)
		if err != nil {
			return err
		}
		return c.waitJournal("Watchdog timeout", 3*time.Second)
	}()
	tb.check("watchdog: SIGSTOP -> restart", err, "WatchdogSec=3s: pid %s stopped, restarted as %s after %s (NRestarts %s -> %s, 'Watchdog timeout' logged)",
		before["MainPID"], after["MainPID"], since(t0), before["NRestarts"], after["NRestarts"])
}

func checkKill9(t *testing.T, tb *table, c *container) {
	before := c.show("rstguard", stateProps...)
	t0 := time.Now()
	var after map[string]string
	err := func() error {
		if _, err := c.run(10*time.Second, "kill", "-KILL", before["MainPID"]); err != nil {
			return err
		}
		var err error
		after, err = waitRestart(c, before, 10*time.Second)
		if err != nil {
			return err
		}
		return c.waitJournal("status=9/KILL", 3*time.Second)
	}()
	tb.check("kill -9 -> Restart=on-failure", err, "pid %s killed, restarted as %s after %s (NRestarts %s -> %s)",
		before["MainPID"], after["MainPID"], since(t0), before["NRestarts"], after["NRestarts"])
}

var exposureRe = regexp.MustCompile(`Overall exposure level for rstguard\.service: ([0-9.]+)`)

func checkSecurity(t *testing.T, tb *table, c *container) {
	out, err := c.run(30*time.Second, "systemd-analyze", "security", "--no-pager", "rstguard.service")
	var level float64
	if err == nil {
		m := exposureRe.FindStringSubmatch(out)
		if m == nil {
			err = fmt.Errorf("no 'Overall exposure level for rstguard.service' in systemd-analyze security output:\n%s", tail([]byte(out), 10))
		} else if level, err = strconv.ParseFloat(m[1], 64); err == nil && level > maxExposure {
			err = fmt.Errorf("exposure %.1f > %.1f; what raises it:\n%s", level, maxExposure, exposed(out))
		}
	}
	tb.check("systemd-analyze security", err, "exposure %.1f <= %.1f", level, maxExposure)
}

// exposed lists the lines of systemd-analyze security that cost exposure.
func exposed(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "✗") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func checkStop(t *testing.T, tb *table, c *container) {
	t0 := time.Now()
	_, err := c.run(30*time.Second, "systemctl", "stop", "rstguard")
	st := c.show("rstguard", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
	if err == nil {
		switch {
		case st["ActiveState"] != "inactive" || st["Result"] != "success":
			err = fmt.Errorf("after stop: ActiveState=%s Result=%s, want inactive/success", st["ActiveState"], st["Result"])
		case st["ExecMainStatus"] != "0" || st["ExecMainCode"] != "1": // CLD_EXITED
			err = fmt.Errorf("after stop: ExecMainCode=%s ExecMainStatus=%s, want 1 (exited) and 0", st["ExecMainCode"], st["ExecMainStatus"])
		}
	}
	if err == nil {
		err = c.waitJournal("stopping: giving queued packets their verdicts", 3*time.Second)
	}
	if err == nil {
		err = c.waitJournal("stopped", 3*time.Second)
	}
	if err == nil {
		if q, e := c.boundQueues(); e != nil {
			err = e
		} else if q["7"] || q["8"] {
			err = fmt.Errorf("queues still bound after stop: %v", q)
		}
	}
	tb.check("stop: drain, exit 0", err, "%s; Result=%s ExecMainStatus=%s, queues unbound", since(t0), st["Result"], st["ExecMainStatus"])
}
