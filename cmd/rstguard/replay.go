package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/rstguard/rstguard/config"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/replay"
)

const replayUsage = `usage: rstguard replay [--config FILE] [--format jsonl|text] CAPTURE

Runs every packet of a pcap or pcapng capture (Ethernet, 802.1Q, raw IP,
Linux cooked SLL/SLL2) through the daemon's engine, with the capture's
timestamps as the clock, and prints one line per frame: its verdict, reason
and the flow's state before it. CAPTURE "-" reads standard input. A summary
goes to standard error. No root needed.

Exit status: 0 replayed, 1 unreadable capture or configuration, 2 usage.

flags:
`

func cmdReplay(args []string) int {
	return replayMain(args, os.Stdin, os.Stdout, os.Stderr)
}

// replayMain is cmdReplay with its streams as arguments, for tests.
func replayMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "TOML `FILE` with the daemon's configuration (default: the built-in defaults)")
	format := fs.String("format", "text", "output `FORMAT`: text (aligned, for people) or jsonl (one JSON object per frame, SPEC section 8)")
	fs.Usage = func() {
		fmt.Fprint(stderr, replayUsage)
		fs.PrintDefaults()
	}
	// Flags may come before or after the capture name.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		pos, rest = append(pos, rest[0]), rest[1:]
	}
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
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintf(stderr, "rstguard replay: %v\n(fix the configuration, or check it with: rstguard check-config %s)\n", err, *cfgPath)
			return 1
		}
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

	// One engine, one table: the daemon's shards only split flows by
	// address pair, which changes no decision.
	eng := policy.NewEngine(cfg.PolicyConfig(), cfg.TableConfig(1))
	out := bufio.NewWriter(stdout)
	var line []byte
	if !jsonl {
		fmt.Fprintf(out, "%6s %-18s %-7s %-24s %-12s %22s   %-22s %s\n",
			"frame", "time (UTC)", "verdict", "reason", "state before", "src", "dst", "flags seq ack len")
	}
	sum, err := replay.Run(in, eng, func(f replay.Frame) {
		if jsonl {
			line = f.AppendJSON(line[:0])
		} else {
			line = f.AppendText(line[:0])
		}
		line = append(line, '\n')
		_, _ = out.Write(line)
	})
	if ferr := out.Flush(); ferr != nil && err == nil {
		fmt.Fprintf(stderr, "rstguard replay: writing the output: %v\n", ferr)
		return 1
	}
	if sum.Frames > 0 || err == nil {
		_ = sum.WriteSummary(stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "rstguard replay: %s: %v\n%s", name, err, replayHint(err, sum.Frames))
		return 1
	}
	return 0
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
