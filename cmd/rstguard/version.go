package main

import (
	"fmt"
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

func cmdVersion(args []string) int {
	fmt.Println("rstguard", buildVersion())
	return 0
}
