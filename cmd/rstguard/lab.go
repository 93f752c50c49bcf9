package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rstguard/rstguard/lab"
)

const labUsage = `usage: rstguard lab [--keep] [--json] [--binary PATH] [--prefix PREFIX] [--only NAMES] [-v]

Builds four network namespaces (client, gateway, server, attacker), plays
forged-reset attacks and RFC 3360 cases between real Linux TCP endpoints,
first without and then with rstguard inline in the gateway, and prints what
reached the victim. Needs root.

Then, on a topology of its own (namespaces PREFIXha-*), the HA scenario
ha-failover: two gateways, each with rstguard, sharing the LANs' gateway
addresses with keepalived (VRRP); the active one fails over in the middle of
a transfer while forged resets are fired at it, without a guard, with one,
and with unknown_flow_rst = "drop". It needs keepalived and curl (skipped
with a note when they are missing, unless selected with --only or
RSTGUARD_E2E=1 is set).
`

// labOptions are lab's flags.
type labOptions struct {
	keep, json, verbose  *bool
	binary, prefix, only *string
}

// labFlags returns lab's flag set, whose help lists the scenarios too.
func labFlags(stderr io.Writer) (*flag.FlagSet, labOptions) {
	fs := newFlagSet("lab", stderr, labUsage)
	var o labOptions
	o.keep = fs.Bool("keep", false, "leave the namespaces up afterwards and print how to explore and remove them")
	o.json = fs.Bool("json", false, "print the results as JSON")
	o.binary = fs.String("binary", "", "the rstguard binary at `PATH` whose run command is the guard (default: this executable)")
	o.prefix = fs.String("prefix", lab.DefaultPrefix, "namespace name `PREFIX`")
	o.only = fs.String("only", "", "comma-separated scenario `NAMES` to play (default: all)")
	o.verbose = fs.Bool("v", false, "print every command and scenario as it runs")
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		w := fs.Output()
		fmt.Fprintln(w, "\nscenarios:")
		for _, s := range lab.Scenarios() {
			fmt.Fprintf(w, "  %-28s %s\n", s.Name, s.Expect)
		}
		fmt.Fprintf(w, "  %-28s %s (own topology, needs keepalived)\n", lab.HAScenario, lab.HAExpect)
	}
	return fs, o
}

func cmdLab(args []string) int {
	fs, o := labFlags(os.Stderr)
	if code, done := parseFlags(fs, args, os.Stdout); done {
		return code
	}
	binary, only, verbose := o.binary, o.only, o.verbose
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "rstguard lab: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	scenarios := lab.Scenarios()
	var selected func(string) bool
	// The HA failover (about 17 s) is part of the default run, when its
	// tools are there; --only ha-failover requires them.
	ha, haRequired := true, false
	if *only != "" {
		ha = false
		names := strings.Split(*only, ",")
		if i := slices.Index(names, lab.HAScenario); i >= 0 {
			ha, haRequired = true, true
			names = slices.DeleteFunc(names, func(n string) bool { return n == lab.HAScenario })
		}
		for _, n := range names {
			if !slices.ContainsFunc(scenarios, func(s lab.Scenario) bool { return s.Name == n }) {
				fmt.Fprintf(os.Stderr, "rstguard lab: unknown scenario %q (see rstguard lab --help)\n", n)
				return 2
			}
		}
		selected = func(n string) bool { return slices.Contains(names, n) }
		scenarios = slices.DeleteFunc(scenarios, func(s lab.Scenario) bool { return !selected(s.Name) })
	}
	bin := *binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(os.Stderr, "rstguard lab: cannot find this executable (%v); pass --binary PATH\n", err)
			return 1
		}
		bin = exe
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(os.Stderr, "rstguard lab: guard binary: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var log io.Writer
	progress := io.Writer(os.Stderr)
	if *verbose {
		log = os.Stderr
	}
	// The four-namespace scenarios first, then (on its own topology, after
	// the first is removed) the HA failover; with --json one document, the
	// HA report as the lab report's ha_failover.
	code := 0
	var rep *lab.Report
	if len(scenarios) > 0 {
		rep, code = labFour(ctx, o, bin, scenarios, selected, log, progress)
	}
	var haRep *lab.HAReport
	if ha && ctx.Err() == nil && code != 130 {
		var c int
		haRep, c = labHA(ctx, o, bin, haRequired, log, progress)
		if c != 0 && code == 0 {
			code = c
		}
	}
	if *o.json && (rep != nil || haRep != nil) {
		var doc any = haRep
		if rep != nil {
			rep.HA = haRep
			doc = rep
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return 1
		}
	}
	return code
}

// haPrefix is the HA topology's namespace prefix: the lab's with "ha-", so
// that it never meets a four-namespace lab left up with --keep.
func haPrefix(prefix string) string { return prefix + "ha-" }

// labFour plays scenarios on the four-namespace topology and prints the
// table (the report is returned for --json).
func labFour(ctx context.Context, o labOptions, bin string, scenarios []lab.Scenario, selected func(string) bool, log, progress io.Writer) (*lab.Report, int) {
	keep, asJSON, prefix := o.keep, o.json, o.prefix
	if err := lab.Preflight(ctx, *prefix); err != nil {
		fmt.Fprintf(os.Stderr, "rstguard lab: %v\n", err)
		return nil, 1
	}
	fmt.Fprintf(progress, "rstguard lab: building namespaces %s{client,gateway,server,attacker}\n", *prefix)
	topo, err := lab.NewTopology(ctx, lab.TopologyOptions{Prefix: *prefix, Log: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "rstguard lab: %v\n", err)
		return nil, 1
	}
	dir := ""
	if *keep {
		dir = filepath.Join(os.TempDir(), "rstguard-lab-"+strings.TrimSuffix(*prefix, "-"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "rstguard lab: %v\n", err)
			topo.Close()
			return nil, 1
		}
	}
	defer func() {
		if *keep && ctx.Err() == nil {
			topo.Keep()
		}
		if err := topo.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "rstguard lab: cleanup: %v\n(remove by hand: %s)\n", err, topo.TeardownCommand())
		}
	}()
	runLog := log
	if runLog == nil && !*asJSON {
		runLog = progress
	}
	fmt.Fprintf(progress, "rstguard lab: playing %s, guard off then on (guard: %s run)\n", plural(len(scenarios), "scenario"), bin)
	rep, err := lab.Run(ctx, topo, scenarios, lab.Options{Binary: bin, Dir: dir, Only: selected, Log: runLog})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "rstguard lab: interrupted; namespaces, rules and processes removed")
			return nil, 130
		}
		fmt.Fprintf(os.Stderr, "rstguard lab: %v\n", err)
		return nil, 1
	}
	if !*asJSON {
		printReport(os.Stdout, rep)
	}
	if *keep {
		// Leave the rule in place: with --queue-bypass traffic flows until a
		// guard binds the queue again.
		if err := topo.InstallQueueRule("0", true); err != nil {
			fmt.Fprintf(os.Stderr, "rstguard lab: %v\n", err)
		}
		cfg := filepath.Join(dir, "rstguard.toml")
		fmt.Fprintf(os.Stderr, `
The topology stays up (--keep). Explore it:
  ip netns exec %[1]sclient bash                      # a shell on the client (192.0.2.2, 2001:db8:1::2)
  ip netns exec %[1]sgateway iptables -t mangle -L FORWARD -v -n # the NFQUEUE rule (bypass: traffic flows with no guard)
  ip netns exec %[1]sgateway %[2]s run --config %[3]s  # run the guard inline again
  ip netns exec %[1]sclient iptables -L INPUT -v -n   # the victim's count of forged packets (TTL %[4]d)
Tear it down:
  %[5]s
`, *prefix, bin, cfg, lab.DeliveredTTL, topo.TeardownCommand())
	}
	if !rep.Pass {
		return rep, 1
	}
	return rep, 0
}

// labHA plays the HA failover (lab.RunHA) and prints its table (the report
// is returned for --json).
// Without required, missing tools skip it with a note instead of failing;
// with RSTGUARD_E2E=1 (CI) they always fail, so a missing keepalived is
// never hidden.
func labHA(ctx context.Context, o labOptions, bin string, required bool, log, progress io.Writer) (*lab.HAReport, int) {
	prefix := haPrefix(*o.prefix)
	if err := lab.PreflightHA(ctx, prefix); err != nil {
		if !required && os.Getenv("RSTGUARD_E2E") != "1" {
			fmt.Fprintf(os.Stderr, "rstguard lab: %s skipped (rstguard lab --only %[1]s requires it): %v\n", lab.HAScenario, err)
			return nil, 0
		}
		fmt.Fprintf(os.Stderr, "rstguard lab: %v\n", err)
		return nil, 1
	}
	if *o.keep {
		fmt.Fprintf(os.Stderr, "rstguard lab: --keep does not apply to %s (each variant builds and removes its own namespaces)\n", lab.HAScenario)
	}
	fmt.Fprintf(progress, "rstguard lab: %s: namespaces %s{switch,client,gw-a,gw-b,server,attacker}, one build per variant (guard: %s run)\n", lab.HAScenario, prefix, bin)
	var prog io.Writer
	if !*o.json || log != nil {
		prog = progress
	}
	rep, err := lab.RunHA(ctx, lab.HAOptions{Binary: bin, Prefix: prefix, Log: log, Progress: prog})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "rstguard lab: interrupted; namespaces, rules and processes removed")
			return nil, 130
		}
		fmt.Fprintf(os.Stderr, "rstguard lab: %s: %v\n", lab.HAScenario, err)
		return nil, 1
	}
	if !*o.json {
		printHAReport(os.Stdout, rep)
	}
	if !rep.Pass {
		return rep, 1
	}
	return rep, 0
}

// printHAReport prints one row per variant: the failover's timing, the
// forged resets delivered after it, and the window they passed in.
func printHAReport(w io.Writer, rep *lab.HAReport) {
	ms := func(s float64) string {
		if s < 0 {
			return "never"
		}
		return fmt.Sprintf("%.0fms", s*1000)
	}
	forged := func(f lab.Forged) string {
		c := fmt.Sprintf("%d/%d", f.DeliveredAfter, f.SentAfter)
		if f.DeliveredAfter > 0 {
			c += " (" + ms(f.WindowFirst) + ".." + ms(f.WindowLast) + ")"
		}
		return c
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HA FAILOVER\tTAKEOVER\tFIRST VIA GW-B\tBOTH WAYS\tLONGEST STALL\tDELIVERED AFTER: FAR (WINDOW)\tNEAR (WINDOW)\tGW-B DROPS: FIRST, FAR, NEAR\tTRANSFER\tRESULT")
	for _, r := range rep.Results {
		res := resultWord(r.Pass)
		drop := "-"
		if r.Variant.Guard && r.DroppedB > 0 {
			drop = ms(r.FirstDropped) + ", " + ms(r.Far.FirstOutOfWindow) + ", " + ms(r.Near.FirstOutOfWindow)
		}
		transfer := r.Outcome
		if r.Err != "" {
			transfer = "error"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Variant.Name, ms(r.Takeover), ms(r.FirstForwarded), ms(r.BothWays), ms(r.LongestStall),
			forged(r.Far), forged(r.Near), drop, transfer, res)
	}
	tw.Flush()
	for _, r := range rep.Results {
		if !r.Pass {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.Variant.Name, r.Why)
		}
	}
	fmt.Fprintln(w, "\nTimes are from gw-a's keepalived being stopped (its links go down once it has released the addresses).")
	fmt.Fprintln(w, "TAKEOVER: gw-b's notify script saw MASTER; FIRST VIA GW-B: the transfer's first segment forwarded by gw-b;")
	fmt.Fprintln(w, "BOTH WAYS: gw-b has seen the transfer's segments in both directions.")
	fmt.Fprintln(w, "Forged resets, a pair every 5 ms: FAR 2^31 beyond the client's RCV.NXT, NEAR 16 MiB beyond (inside the")
	fmt.Fprintln(w, "2^30 a picked-up flow allows until both directions are seen); delivered/sent after the failover, and the")
	fmt.Fprintln(w, "send times of the first and last delivered. GW-B DROPS: its first drop of a forged reset (any reason),")
	fmt.Fprintln(w, "and its first far and near one judged out of window against the picked-up flow.")
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\n%s: %s in %.1fs\n", verdict, lab.HAScenario, rep.Seconds)
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return fmt.Sprintf("%d %ss", n, s)
}

func obsCell(o lab.Observation) string {
	if o.Err != "" {
		return "error"
	}
	var d string
	if o.Forged > 0 {
		d = fmt.Sprintf("%d/%d delivered, ", o.Delivered, o.Forged)
	}
	s := d + o.Outcome
	if o.Note != "" {
		s += " (" + o.Note + ")"
	}
	if o.Genuine > 0 {
		s += fmt.Sprintf("; genuine %d/%d, %s", o.GenuineSeen, o.Genuine, ms(o.GenuineDelayMedian))
	}
	return s
}

// ms formats seconds for the report, to the microsecond.
func ms(s float64) string { return time.Duration(s * 1e9).Round(time.Microsecond).String() }

// printAttacks prints, for the scenarios that attack several requests or
// connections, each attempt's outcome, and where genuine resets were
// measured, their trip from the server's eth0 to the client's without and
// with the guard: the delay the guard's hold adds.
func printAttacks(w io.Writer, rep *lab.Report) {
	for _, r := range rep.Results {
		if len(r.Off.Attempts)+len(r.On.Attempts) == 0 && r.Off.Genuine+r.On.Genuine == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", r.Name)
		for _, h := range []struct {
			name string
			o    lab.Observation
		}{{"without guard", r.Off}, {"with guard", r.On}} {
			if len(h.o.Attempts) > 0 {
				fmt.Fprintf(w, "  %-13s attempts: %s\n", h.name, lab.Attempts(h.o.Attempts))
			}
		}
		for _, h := range []struct {
			name string
			o    lab.Observation
		}{{"without guard", r.Off}, {"with guard", r.On}} {
			if h.o.Genuine > 0 {
				fmt.Fprintf(w, "  %-13s genuine resets: %d sent, %d arrived, %d seen by the client; server eth0 -> client eth0 median %s, max %s\n",
					h.name, h.o.Genuine, h.o.GenuineArrived, h.o.GenuineSeen, ms(h.o.GenuineDelayMedian), ms(h.o.GenuineDelayMax))
			}
		}
		if r.Off.GenuineArrived > 0 && r.On.GenuineArrived > 0 {
			fmt.Fprintf(w, "  added by the guard: median %s, max %s\n",
				ms(r.On.GenuineDelayMedian-r.Off.GenuineDelayMedian), ms(r.On.GenuineDelayMax-r.Off.GenuineDelayMax))
		}
	}
}

// resultWord is a report's RESULT column.
func resultWord(pass bool) string {
	if pass {
		return "pass"
	}
	return "FAIL"
}

func printReport(w io.Writer, rep *lab.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tEXPECTED WITH GUARD\tWITHOUT GUARD\tWITH GUARD\tRESULT")
	for _, r := range rep.Results {
		res := resultWord(r.Pass)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Expect, obsCell(r.Off), obsCell(r.On), res)
	}
	tw.Flush()
	for _, r := range rep.Results {
		if !r.Pass {
			fmt.Fprintf(w, "FAIL %s: %s\n", r.Name, r.Why)
		}
	}
	printAttacks(w, rep)
	fmt.Fprintln(w, "\n\"delivered\" counts forged packets that reached the victim host (a counting rule in its INPUT chain);")
	fmt.Fprintln(w, "Linux itself ignores most of them (RFC 5961), hosts without that defence would not.")
	fmt.Fprintln(w, "\nguard metrics over the run (non-zero):")
	groups := []struct{ title, prefix string }{
		{"packets by verdict and reason", "rstguard_packets_total"},
		{"resets by state and outcome", "rstguard_resets_total"},
		{"flagged SYNs (RFC 3360: counted, never dropped)", "rstguard_syn_flagged_total"},
		{"flows created", "rstguard_flows_created_total"},
		{"resets suspected of injection, by signal", "rstguard_injection_suspected_total"},
		{"held resets by outcome ([injection] hold)", "rstguard_resets_held_total"},
	}
	for _, g := range groups {
		var keys []string
		for k := range rep.Metrics {
			if k == g.prefix || strings.HasPrefix(k, g.prefix+"{") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		fmt.Fprintf(w, "  %s:\n", g.title)
		if len(keys) == 0 {
			fmt.Fprintln(w, "    (none)")
		}
		for _, k := range keys {
			fmt.Fprintf(w, "    %-70s %v\n", k, rep.Metrics[k])
		}
	}
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\n%s: %s in %.1fs\n", verdict, plural(len(rep.Results), "scenario"), rep.Seconds)
}
