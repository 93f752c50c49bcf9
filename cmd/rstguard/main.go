// Command rstguard is a transparent middlebox that validates TCP resets on a
// Linux gateway through NFQUEUE. One binary, several subcommands:
//
//	rstguard run [--config FILE]           the daemon
//	rstguard replay [--config FILE] [--format jsonl|text] [--drops-only] [--flow FILTER] [--summary] [--fail-on-drop] CAPTURE
//	rstguard lab [--keep] [--json]         self-contained demo (root)
//	rstguard check-config FILE             validate a configuration
//	rstguard version
//
// This is the only package that calls os.Exit.
package main

import (
	"fmt"
	"os"
)

type command struct {
	name, summary string
	run           func(args []string) int
}

func commands() []command {
	return []command{
		{"run", "run the daemon on NFQUEUE", cmdRun},
		{"replay", "run a pcap/pcapng capture through the engine", cmdReplay},
		{"lab", "build a namespace lab and play the attacks (root)", cmdLab},
		{"flows", "list, show or flush the running daemon's flows", cmdFlows},
		{"status", "show the running daemon's state", cmdStatus},
		{"check-config", "validate a configuration file", cmdCheckConfig},
		{"version", "print the version", cmdVersion},
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rstguard <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  %-13s %s\n", c.name, c.summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	for _, c := range commands() {
		if c.name == name {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "rstguard: unknown command %q\n", name)
	usage()
	os.Exit(2)
}
