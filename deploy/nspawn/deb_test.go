//go:build linux

package nspawn

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const nspawnDebVersion = "0.0.0+nspawn"

// TestDebUnderSystemd installs the Debian package (make deb) with dpkg in a
// container booted with a real systemd, the way an operator does, and
// checks the maintainer scripts against it: after dpkg -i the unit is
// loaded but neither enabled nor started; check-config and systemd-analyze
// verify accept what was installed; started by hand it becomes active with
// the shipped configuration's queues bound; reinstalling (an upgrade)
// restarts the running service; dpkg -r stops it (prerm) and keeps the
// conffile; dpkg --purge removes the configuration and the runtime
// directory. Gated like TestSystemdUnit (root, the tools, RSTGUARD_E2E=1).
func TestDebUnderSystemd(t *testing.T) {
	start := time.Now()
	tb, repo, work, root, _ := containerSetup(t, "rstguard-nspawn-deb-",
		"flock /tmp/rstguard-netns.lock env RSTGUARD_E2E=1 go test -count=1 -v -run TestDebUnderSystemd ./deploy/nspawn/",
		[2]string{"make", "make"}, [2]string{"dpkg-deb", "dpkg"})
	defer tb.print()

	t0 := time.Now()
	debDir := filepath.Join(work, "deb")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "make", "-C", repo, "deb", "DEB_DIR="+debDir, "DEB_VERSION="+nspawnDebVersion).CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(debDir, "rstguard_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %q", debs)
	}
	data, err := os.ReadFile(debs[0])
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "root/rstguard.deb"), string(data))
	tb.pass("deb: build", "make deb %s (%s, %d bytes)", filepath.Base(debs[0]), since(t0), len(data))

	c := boot(t, root, work)
	t.Cleanup(func() {
		if t.Failed() {
			j, _ := c.run(10*time.Second, "journalctl", "--no-pager", "-o", "short-monotonic", "-u", "rstguard")
			t.Logf("journal of rstguard.service:\n%s", tail([]byte(j), 60))
		}
	})
	dpkg := func(args ...string) (string, error) {
		return c.run(60*time.Second, append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "dpkg"}, args...)...)
	}

	out, err := dpkg("-i", "/root/rstguard.deb")
	if err == nil && !strings.Contains(out, "installed but not started") {
		err = fmt.Errorf("dpkg -i did not say the service was left stopped:\n%s", out)
	}
	if err != nil {
		tb.fail("deb: dpkg -i", "%v", err)
		t.FailNow()
	}
	en, _ := c.run(10*time.Second, "systemctl", "is-enabled", "rstguard")
	st := c.show("rstguard", append(stateProps, "LoadState", "FragmentPath")...)
	err = nil
	switch {
	case strings.TrimSpace(en) != "disabled":
		err = fmt.Errorf("is-enabled %q, want disabled", strings.TrimSpace(en))
	case st["LoadState"] != "loaded" || st["FragmentPath"] != "/lib/systemd/system/rstguard.service":
		err = fmt.Errorf("LoadState=%s FragmentPath=%s", st["LoadState"], st["FragmentPath"])
	case st["ActiveState"] != "inactive":
		err = fmt.Errorf("after dpkg -i: %s, want inactive", fmtState(st))
	}
	tb.check("deb: installed, not started", err, "is-enabled disabled, %s, %s", st["FragmentPath"], fmtState(st))

	cc, err := c.run(10*time.Second, "rstguard", "check-config")
	if err == nil && !strings.HasPrefix(cc, "/etc/rstguard/config.toml: ok\n") {
		err = fmt.Errorf("rstguard check-config: %q", cc)
	}
	if err == nil {
		var v string
		if v, err = c.run(10*time.Second, "/usr/sbin/rstguard", "--version"); err == nil && v != "rstguard "+nspawnDebVersion+"\n" {
			err = fmt.Errorf("rstguard --version = %q", v)
		}
	}
	if err == nil {
		var va string
		if va, err = c.sh("systemd-analyze verify /lib/systemd/system/rstguard.service 2>&1"); err == nil && strings.TrimSpace(va) != "" {
			err = fmt.Errorf("systemd-analyze verify: %s", va)
		}
	}
	tb.check("deb: check-config, verify", err, "rstguard check-config: ok; systemd-analyze verify: clean; --version %s", nspawnDebVersion)

	_, err = c.run(30*time.Second, "systemctl", "start", "rstguard")
	st = c.show("rstguard", stateProps...)
	if err == nil && (st["ActiveState"] != "active" || st["MainPID"] == "0") {
		err = fmt.Errorf("after start: %s", fmtState(st))
	}
	if err == nil {
		if q, e := c.boundQueues(); e != nil || !q["0"] || !q["1"] {
			err = fmt.Errorf("queues 0 and 1 of the shipped configuration not both bound: %v %v", q, e)
		}
	}
	tb.check("deb: start", err, "%s, queues 0,1 bound", fmtState(st))
	firstPID := st["MainPID"]

	_, err = dpkg("-i", "/root/rstguard.deb")
	st = c.show("rstguard", stateProps...)
	if err == nil && (st["ActiveState"] != "active" || st["MainPID"] == firstPID || st["MainPID"] == "0") {
		err = fmt.Errorf("after reinstalling over the running service: %s, was MainPID=%s; want active with a new MainPID", fmtState(st), firstPID)
	}
	tb.check("deb: upgrade restarts", err, "MainPID %s -> %s, %s", firstPID, st["MainPID"], st["ActiveState"])

	_, err = dpkg("-r", "rstguard")
	st = c.show("rstguard", append(stateProps, "LoadState")...)
	if err == nil && st["ActiveState"] != "inactive" {
		err = fmt.Errorf("after dpkg -r: %s, want stopped by prerm", fmtState(st))
	}
	if err == nil {
		if q, e := c.boundQueues(); e != nil || q["0"] || q["1"] {
			err = fmt.Errorf("queues still bound after dpkg -r: %v %v", q, e)
		}
	}
	if err == nil {
		if _, e := c.run(10*time.Second, "test", "-f", "/etc/rstguard/config.toml"); e != nil {
			err = fmt.Errorf("dpkg -r removed the conffile (only purge should): %v", e)
		}
	}
	tb.check("deb: remove stops", err, "%s LoadState=%s; conffile kept", st["ActiveState"], st["LoadState"])

	_, err = dpkg("--purge", "rstguard")
	if err == nil {
		left, _ := c.sh("for p in /etc/rstguard /run/rstguard /usr/sbin/rstguard /lib/systemd/system/rstguard.service /usr/share/rstguard; do [ -e $p ] && echo $p; done; true")
		if strings.TrimSpace(left) != "" {
			err = fmt.Errorf("after dpkg --purge: %s", strings.Join(strings.Fields(left), " "))
		}
	}
	tb.check("deb: purge", err, "configuration, runtime directory, binary, unit and shared files gone")
	t.Logf("total %s", since(start))
}
