package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rstguard/rstguard/config"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/replay"
)

const replayUsage = `usage: rstguard replay [--config FILE] [--format jsonl|text] [--drops-only]
                      [--flow FILTER]... [--summary] [--fail-on-drop] CAPTURE

Runs every packet of a pcap or pcapng capture through the daemon's engine,
with the capture's timestamps as the clock, and prints one line per frame:
its verdict, reason and the flow's state before it. CAPTURE "-" reads
standard input. No root needed. With [injection] mode = "hold" in the
configuration, a held reset's line, at its own frame, carries its final
verdict (rst_injected, or accepted once max_hold of capture time passed).

Link types: Ethernet (with 802.1Q/802.1ad tags), raw IP (LINKTYPE_RAW,
LINKTYPE_IPV4, LINKTYPE_IPV6), Linux cooked SLL/SLL2 (tcpdump -i any), BSD
loopback DLT_NULL and DLT_LOOP, PPP and PPP in HDLC framing (or Cisco HDLC).

Every packet goes through the engine; --drops-only and --flow only choose
what is printed (and what --summary and --fail-on-drop count). With
--summary it prints one line (jsonl: one JSON object) per TCP flow instead
of one per frame. Standard error gets the configuration used (the file and
its SHA-256, or "defaults") first and a summary of verdicts by reason last.

` + replay.FilterSyntax + `
Several --flow flags select the flows that match any of them.

Exit status: 0 replayed, 1 unreadable capture or configuration, 2 usage,
3 with --fail-on-drop: a selected packet was dropped.
`

// replayOptions are replay's flags.
type replayOptions struct {
	config, format                 *string
	dropsOnly, summary, failOnDrop *bool
	filters                        *[]replay.FlowFilter
}

// replayFlags returns replay's flag set and the options it fills.
func replayFlags(stderr io.Writer) (*flag.FlagSet, replayOptions) {
	fs := newFlagSet("replay", stderr, replayUsage)
	o := replayOptions{filters: new([]replay.FlowFilter)}
	o.config = fs.String("config", "", "the daemon's configuration `FILE` (TOML; default: the built-in defaults, not "+defaultConfigPath+")")
	o.format = fs.String("format", "text", "output `FORMAT`: text (aligned, for people) or jsonl (one JSON object per frame, the fields of the README's \"Offline replay\" section)")
	o.dropsOnly = fs.Bool("drops-only", false, "print only the frames that were dropped (with --summary: only the flows with a drop)")
	o.summary = fs.Bool("summary", false, "print one line per TCP flow (5-tuple, frames, packets, accepted, dropped by reason, final state) instead of one per frame")
	o.failOnDrop = fs.Bool("fail-on-drop", false, "exit with status 3 when a selected packet was dropped (for CI)")
	fs.Func("flow", "print only the flows matching `FILTER` (host ADDR, net CIDR, port N, ADDR:PORT; terms ANDed; repeat to OR)", func(v string) error {
		ff, err := replay.ParseFlowFilter(v)
		if err != nil {
			return err
		}
		*o.filters = append(*o.filters, ff)
		return nil
	})
	return fs, o
}

func cmdReplay(args []string) int {
	return replayMain(args, os.Stdin, os.Stdout, os.Stderr)
}

// exitDropped is replay's exit status with --fail-on-drop when a selected
// packet was dropped (1 and 2 are taken by errors and usage).
const exitDropped = 3

// replayMain is cmdReplay with its streams as arguments, for tests.
func replayMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, o := replayFlags(stderr)
	cfgPath, format, dropsOnly, summary, failOnDrop := o.config, o.format, o.dropsOnly, o.summary, o.failOnDrop
	// Flags may come before or after the capture name.
	var pos []string
	for rest := args; ; {
		if code, done := parseFlags(fs, rest, stdout); done {
			return code
		}
		consumed := rest[:len(rest)-len(fs.Args())]
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			pos = append(pos, rest...) // after "--", everything is a name
			break
		}
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	filters := *o.filters
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "rstguard replay: want exactly one capture file, got %d\n\n", len(pos))
		fs.Usage()
		return 2
	}
	jsonl := false
	switch *format {
	case "jsonl", "json":
		jsonl = true
	case "text":
	default:
		fmt.Fprintf(stderr, "rstguard replay: unknown --format %q: use text or jsonl\n", *format)
		return 2
	}

	cfg := config.Default()
	cfgLine := "config: defaults (no --config given)"
	if *cfgPath != "" {
		// Hash exactly the bytes that are parsed.
		data, err := os.ReadFile(*cfgPath)
		if err == nil {
			cfg, err = config.Parse(*cfgPath, data)
		} else {
			_, err = config.Load(*cfgPath) // its message and hint for the read error
		}
		if err != nil {
			fmt.Fprintf(stderr, "rstguard replay: %v\n(fix the configuration, or check it with: rstguard check-config %s)\n", err, *cfgPath)
			return 1
		}
		cfgLine = fmt.Sprintf("config: %s (sha256 %x)", *cfgPath, sha256.Sum256(data))
	}

	name := pos[0]
	var in io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "rstguard replay: cannot read the capture: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	fmt.Fprintln(stderr, cfgLine)

	// One engine, one table: the daemon's shards only split flows by
	// address pair, which changes no decision.
	eng := policy.NewEngine(cfg.PolicyConfig(), cfg.TableConfig(1))
	out := bufio.NewWriter(stdout)
	var line []byte
	if !jsonl && !*summary {
		fmt.Fprintf(out, "%6s %-18s %-7s %-24s %-12s %22s   %-22s %s\n",
			"frame", "time (UTC)", "verdict", "reason", "state before", "src", "dst", "flags seq ack len")
	}
	var (
		flows             replay.FlowTracker
		selected, dropped int
		filtered          = len(filters) > 0 || *dropsOnly
	)
	// [injection] mode "hold": held resets get their final verdicts with
	// capture time as the clock, at most max_held of them at once.
	opts := replay.Options{MaxHeld: cfg.Injection.MaxHeld}
	sum, err := replay.RunOptions(in, eng, opts, func(f replay.Frame) {
		if !matchAny(filters, &f) {
			return
		}
		selected++
		if f.Verdict == policy.Drop {
			dropped++
		}
		if *summary {
			flows.Add(&f)
			return
		}
		if *dropsOnly && f.Verdict != policy.Drop {
			return
		}
		if jsonl {
			line = f.AppendJSON(line[:0])
		} else {
			line = f.AppendText(line[:0])
		}
		line = append(line, '\n')
		_, _ = out.Write(line)
	})
	if *summary {
		var list []replay.FlowSummary
		for _, fl := range flows.Flows() {
			if !*dropsOnly || fl.Dropped > 0 {
				list = append(list, fl)
			}
		}
		if jsonl {
			for i := range list {
				line = list[i].AppendJSON(line[:0])
				line = append(line, '\n')
				_, _ = out.Write(line)
			}
		} else {
			_ = replay.WriteFlowsText(out, list)
		}
	}
	if ferr := out.Flush(); ferr != nil && err == nil {
		fmt.Fprintf(stderr, "rstguard replay: writing the output: %v\n", ferr)
		return 1
	}
	if sum.Frames > 0 || err == nil {
		_ = sum.WriteSummary(stderr)
		if filtered {
			fmt.Fprintf(stderr, "selected: %d frames (%s), dropped: %d\n", selected, selection(filters, *dropsOnly), dropped)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "rstguard replay: %s: %v\n%s", name, err, replayHint(err, sum.Frames))
		return 1
	}
	if *failOnDrop && dropped > 0 {
		fmt.Fprintf(stderr, "rstguard replay: %d selected packets dropped (--fail-on-drop): exit status %d\n", dropped, exitDropped)
		return exitDropped
	}
	return 0
}

// matchAny reports whether f matches one of filters (every frame when there
// are none).
func matchAny(filters []replay.FlowFilter, f *replay.Frame) bool {
	if len(filters) == 0 {
		return true
	}
	for i := range filters {
		if filters[i].Match(f) {
			return true
		}
	}
	return false
}

// selection describes what --flow and --drops-only selected, for the
// summary on standard error.
func selection(filters []replay.FlowFilter, dropsOnly bool) string {
	var parts []string
	for i := range filters {
		parts = append(parts, fmt.Sprintf("--flow %q", filters[i].String()))
	}
	what := "all flows"
	if len(parts) > 0 {
		what = strings.Join(parts, " or ")
	}
	if dropsOnly {
		what += ", printing drops only"
	}
	return what
}

// replayHint says how to fix an unreadable capture.
func replayHint(err error, frames int) string {
	switch {
	case errors.Is(err, replay.ErrUnsupportedLinkType):
		return "(capture on an Ethernet interface or with tcpdump -i any, or convert the file with editcap -T ether)\n"
	case errors.Is(err, io.ErrUnexpectedEOF) && frames > 0:
		return fmt.Sprintf("(the file ends inside a frame: was it still being written? The %d frames before it were replayed.)\n", frames)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "(the file is cut short: copy it again or let tcpdump finish writing it)\n"
	}
	return "(replay reads pcap and pcapng files, as written by tcpdump -w, dumpcap or Wireshark)\n"
}
