// Command rstguard is a transparent middlebox that validates TCP resets on a
// Linux gateway through NFQUEUE. One binary, several subcommands:
//
//	rstguard run [--config FILE]           the daemon
//	rstguard replay [--config FILE] [--format jsonl|text] [--drops-only] [--flow FILTER] [--summary] [--fail-on-drop] CAPTURE
//	rstguard lab [--keep] [--json]         self-contained demo (root)
//	rstguard check-config [FILE]           validate a configuration
//	rstguard version
//	rstguard help [COMMAND]
//
// Every subcommand takes -h/--help and --version (flags.go); the man page
// (docs/rstguard.8) and the bash completion
// (deploy/rstguard.bash-completion) list the same flags, and tests read
// the flag sets to keep them in step.
//
// This is the only package that calls os.Exit.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

type command struct {
	name, summary string
	run           func(args []string) int
	// flags returns the command's flag set, for help, the man page and
	// completion tests (flags.go). nil for help, and for a command that does
	// not have one yet: help then runs it with --help, and the tests cover
	// only its man page section.
	flags func() *flag.FlagSet
}

func commands() []command {
	return []command{
		{"run", "run the daemon on NFQUEUE", cmdRun,
			func() *flag.FlagSet { fs, _ := runFlags(io.Discard); return fs }},
		{"replay", "run a pcap/pcapng capture through the engine", cmdReplay,
			func() *flag.FlagSet { fs, _ := replayFlags(io.Discard); return fs }},
		{"lab", "build a namespace lab and play the attacks (root)", cmdLab,
			func() *flag.FlagSet { fs, _ := labFlags(io.Discard); return fs }},
		{"flows", "list, show or flush the running daemon's flows", cmdFlows,
			func() *flag.FlagSet { fs, _ := flowsFlags(io.Discard); return fs }},
		{"status", "show the running daemon's state", cmdStatus,
			func() *flag.FlagSet { fs, _ := statusFlags(io.Discard); return fs }},
		{"check-config", "validate a configuration file", cmdCheckConfig,
			func() *flag.FlagSet { fs, _ := checkConfigFlags(io.Discard); return fs }},
		{"version", "print the version", cmdVersion,
			func() *flag.FlagSet { return versionFlags(io.Discard) }},
		{"help", "print the help of rstguard or of a command", cmdHelp, nil},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: rstguard COMMAND [flags]\n       rstguard help COMMAND\n       rstguard --version\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes -h/--help and --version. The manual: man 8 rstguard.")
}

// cmdHelp is `rstguard help [COMMAND]`: the command's --help, on stdout.
func cmdHelp(args []string) int {
	return helpMain(args, os.Stdout, os.Stderr)
}

func helpMain(args []string, stdout, stderr io.Writer) int {
	switch len(args) {
	case 0:
		usage(stdout)
		return 0
	case 1:
	default:
		fmt.Fprintln(stderr, "usage: rstguard help [COMMAND]")
		return 2
	}
	for _, c := range commands() {
		switch {
		case c.name != args[0]:
			continue
		case c.name == "help":
			fmt.Fprintln(stdout, "usage: rstguard help [COMMAND]\n\nPrints the commands, or the help of COMMAND (the same as rstguard COMMAND --help).")
		case c.flags == nil:
			return c.run([]string{"--help"}) // a command without a flags accessor prints its own
		default:
			printHelp(c.flags(), stdout)
		}
		return 0
	}
	fmt.Fprintf(stderr, "rstguard help: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

// mainArgs dispatches the command line (without the program name).
func mainArgs(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		usage(stderr)
		return 2
	}
	name := args[0]
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:])
		}
	}
	switch name {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "-version", "--version":
		fmt.Fprintln(stdout, "rstguard", buildVersion())
		return 0
	}
	fmt.Fprintf(stderr, "rstguard: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}
