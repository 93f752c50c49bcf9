package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rstguard/rstguard/config"
)

const checkConfigUsage = `usage: rstguard check-config [FILE]
       rstguard check-config --config FILE

Validates a configuration file without starting anything: TOML syntax,
unknown keys, types and values. Prints "FILE: ok" and the effective settings,
or every mistake with its file, line and key on standard error.

Without FILE it checks what rstguard run would load: ` + defaultConfigPath + `
if it exists, else it says that the built-in defaults apply and prints them.
The keys and their defaults: the README's "Configuration reference" and
config.example.toml (/usr/share/rstguard/config.example.toml when installed
from the Debian package).

Exit status: 0 valid, 1 invalid or unreadable, 2 usage.
`

// checkConfigFlags returns check-config's flag set and its --config value.
func checkConfigFlags(stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlagSet("check-config", stderr, checkConfigUsage)
	path := fs.String("config", "", "configuration `FILE` to check, the same as naming it as the argument (default: "+defaultConfigPath+" if it exists, else the built-in defaults)")
	return fs, path
}

func cmdCheckConfig(args []string) int {
	return checkConfigMain(args, os.Stdout, os.Stderr)
}

// checkConfigMain is cmdCheckConfig with its streams as arguments, for tests.
func checkConfigMain(args []string, stdout, stderr io.Writer) int {
	fs, flagPath := checkConfigFlags(stderr)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	path, n := *flagPath, fs.NArg()
	if path != "" {
		n++
	}
	if n > 1 {
		fmt.Fprintf(stderr, "rstguard check-config: want at most one configuration file, got %d\n\n", n)
		fs.Usage()
		return 2
	}
	if fs.NArg() == 1 {
		path = fs.Arg(0)
	}
	// The same file, or none, as rstguard run would load.
	cfg, file, err := loadRunConfig(path, path != "")
	if err != nil {
		printCheckErrors(stderr, file, err)
		return 1
	}
	if file == "" {
		fmt.Fprintf(stdout, "no configuration file at %s: rstguard run uses the built-in defaults\n  %s\n", defaultConfigPath, cfg.Summary())
		return 0
	}
	path = file
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
