package main

import (
	"flag"
	"io"
)

const runUsage = `usage: rstguard run [--config FILE]

Binds the NFQUEUE queues of the configuration and validates TCP resets until
SIGTERM or SIGINT; SIGHUP reloads the configuration (a bad file is reported
and the running configuration stays). Under systemd it reports READY=1,
RELOADING=1, STOPPING=1 and WATCHDOG=1. Needs CAP_NET_ADMIN.
`

// runFlags returns run's flag set and its --config value ("" when not
// given: loadRunConfig then looks for defaultConfigPath).
func runFlags(stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlagSet("run", stderr, runUsage)
	path := fs.String("config", "", "configuration `FILE` (default: "+defaultConfigPath+" if it exists, else the built-in defaults)")
	return fs, path
}
