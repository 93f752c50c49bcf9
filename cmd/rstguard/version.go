package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set with -ldflags "-X main.version=..."; otherwise the module
// build info is used.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev := ""
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		if rev != "" {
			return "devel-" + rev
		}
	}
	return "devel"
}

const versionUsage = `usage: rstguard version

Prints "rstguard VERSION": the version stamped at build time (make deb
stamps the package version), else the module version or the git revision.
`

func versionFlags(stderr io.Writer) *flag.FlagSet {
	return newFlagSet("version", stderr, versionUsage)
}

func cmdVersion(args []string) int {
	fs := versionFlags(os.Stderr)
	if code, done := parseFlags(fs, args, os.Stdout); done {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "rstguard version: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fmt.Println("rstguard", buildVersion())
	return 0
}
