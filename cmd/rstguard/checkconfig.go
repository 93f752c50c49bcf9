package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rstguard/rstguard/config"
)

const checkConfigUsage = `usage: rstguard check-config FILE

Validates a configuration file without starting anything: TOML syntax,
unknown keys, types and values. Prints "FILE: ok" and the effective settings,
or every mistake with its file, line and key on standard error.

Exit status: 0 valid, 1 invalid or unreadable, 2 usage.
`

func cmdCheckConfig(args []string) int {
	return checkConfigMain(args, os.Stdout, os.Stderr)
}

// checkConfigMain is cmdCheckConfig with its streams as arguments, for tests.
func checkConfigMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, checkConfigUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "rstguard check-config: want exactly one configuration file, got %d\n\n", fs.NArg())
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	cfg, err := config.Load(path)
	if err != nil {
		printCheckErrors(stderr, path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n  %s\n", path, cfg.Summary())
	for _, o := range config.OverrideOverlaps(cfg.Policy.Overrides) {
		fmt.Fprintf(stdout, "  note: %s\n", o)
	}
	return 0
}

// printCheckErrors prints each mistake, followed by the line it is on.
func printCheckErrors(w io.Writer, path string, err error) {
	var lines []string
	if data, rerr := os.ReadFile(path); rerr == nil {
		lines = strings.Split(string(data), "\n")
	}
	errs := config.Errors(err)
	if len(errs) == 0 {
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return
	}
	for _, e := range errs {
		fmt.Fprintln(w, e)
		if e.Line >= 1 && e.Line <= len(lines) {
			fmt.Fprintf(w, "    %d | %s\n", e.Line, strings.TrimRight(lines[e.Line-1], "\r"))
		}
	}
	if len(errs) > 1 {
		fmt.Fprintf(w, "%s: %d mistakes\n", path, len(errs))
	}
}
