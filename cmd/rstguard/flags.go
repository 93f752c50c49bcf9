package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
)

// The conventions every subcommand follows (issue 9 item 7):
//
//   - -h and --help print the command's help on standard output and exit 0
//     (`rstguard help COMMAND` prints the same); a usage mistake prints the
//     mistake and the help on standard error and exits 2.
//   - --version prints "rstguard VERSION" on standard output and exits 0.
//   - A flag's placeholder is the backquoted word of its usage string
//     ("configuration `FILE`" prints as "-config FILE"); TestFlagPlaceholders
//     keeps every placeholder an upper-case word.
//
// Each subcommand builds its flag set with newFlagSet and parses with
// parseFlags. Its flags are listed by the flag set alone, which is what the
// man page and bash completion tests read (commandFlagSets).

// versionFlag is the --version flag: a boolean that parseFlags answers.
type versionFlag bool

func (v *versionFlag) IsBoolFlag() bool { return true }
func (v *versionFlag) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *versionFlag) Set(s string) error {
	b, err := strconv.ParseBool(s)
	*v = versionFlag(b)
	return err
}

// newFlagSet returns the flag set of subcommand name, writing mistakes to
// stderr. usage is the help text before the flag list (it ends in a
// newline); the flag list follows it when the set has flags of its own.
func newFlagSet(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(new(versionFlag), "version", "print the version and exit")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, usage)
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
		fmt.Fprintln(w, "  -h, --help\n    \tprint this help and exit")
	}
	return fs
}

// parseFlags parses args into fs. done reports that the command has
// nothing more to do and should exit with code: help or the version was
// printed on stdout (0), or a mistake and the help on the flag set's output
// (2).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	usage := fs.Usage
	fs.Usage = func() {} // printed below, where help and mistakes part
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(fs, stdout)
		return 0, true
	case err != nil:
		// flag has printed the mistake itself.
		fmt.Fprintln(fs.Output())
		usage()
		return 2, true
	}
	if v, ok := fs.Lookup("version").Value.(*versionFlag); ok && bool(*v) {
		fmt.Fprintln(stdout, "rstguard", buildVersion())
		return 0, true
	}
	return 0, false
}

// printHelp prints fs's help on w.
func printHelp(fs *flag.FlagSet, w io.Writer) {
	out := fs.Output()
	fs.SetOutput(w)
	fs.Usage()
	fs.SetOutput(out)
}
