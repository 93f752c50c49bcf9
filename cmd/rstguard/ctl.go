package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rstguard/rstguard/flowfilter"
)

// controlFlags are the flags of the commands that talk to the daemon.
type controlFlags struct {
	socket, config string
	json           bool
}

func (c *controlFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.socket, "socket", "", "control socket `PATH` (default: [control] socket of the configuration)")
	fs.StringVar(&c.config, "config", "", "configuration `FILE` whose [control] socket to use (default "+defaultConfigPath+" if it exists)")
	fs.BoolVar(&c.json, "json", false, "print JSON lines as the daemon sends them")
}

// path resolves the socket: the flag, else the configuration's.
func (c *controlFlags) path() (string, error) {
	if c.socket != "" {
		return c.socket, nil
	}
	cfg, _, err := loadRunConfig(c.config, c.config != "")
	if err != nil {
		return "", err
	}
	if cfg.Control.Socket == "" {
		return "", errors.New(`[control] socket is "" in the configuration: the daemon has no control socket`)
	}
	return cfg.Control.Socket, nil
}

// ask sends one request and calls line for each line of the answer.
func (c *controlFlags) ask(req ctlRequest, line func([]byte) error) error {
	path, err := c.path()
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return fmt.Errorf("cannot reach the daemon at %s: %w (is rstguard running, and are you root?)", path, err)
	}
	defer conn.Close()
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return err
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		if err := line(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

const flowsUsage = `usage: rstguard flows [--json] [--socket PATH] [FILTER]
       rstguard flows get ADDR:PORT ADDR:PORT
       rstguard flows flush FILTER | all

Lists the flows the running daemon tracks, like conntrack -L: endpoints
(initiator first), state, age, idle time, queue, and for each direction what
it has sent and the window its segments (and resets) must fall in. "get"
shows one connection; "flush" removes flows (the next packet of a removed
flow is picked up again). FILTER terms:

` + flowfilter.Syntax + `
`

// flowsFlags returns the flag set of rstguard flows and the flags it fills.
func flowsFlags(stderr io.Writer) (*flag.FlagSet, *controlFlags) {
	fs := newFlagSet("flows", stderr, flowsUsage)
	cf := new(controlFlags)
	cf.register(fs)
	return fs, cf
}

func cmdFlows(args []string) int {
	fs, cf := flowsFlags(os.Stderr)
	if code, done := parseFlags(fs, args, os.Stdout); done {
		return code
	}
	rest := fs.Args()
	op := "flows"
	if len(rest) > 0 && (rest[0] == "flush" || rest[0] == "get") {
		op, rest = rest[0], rest[1:]
		// Flags may follow the subcommand.
		if code, done := parseFlags(fs, rest, os.Stdout); done {
			return code
		}
		rest = fs.Args()
	}
	filter := strings.Join(rest, " ")
	isGet := op == "get"
	switch op {
	case "get":
		if len(rest) != 2 {
			fmt.Fprintln(os.Stderr, "rstguard flows get: give the two endpoints, ADDR:PORT ADDR:PORT (either order)")
			return 2
		}
		op = "flows"
	case "flush":
		if filter == "" {
			fmt.Fprintln(os.Stderr, `rstguard flows flush: give a FILTER, or "all" to remove every flow`)
			return 2
		}
	}
	if filter != "" && filter != "all" {
		if _, err := flowfilter.Parse(filter, true); err != nil {
			fmt.Fprintf(os.Stderr, "rstguard flows: %v\n", err)
			return 2
		}
	}
	if op == "flush" {
		err := cf.ask(ctlRequest{Op: "flush", Filter: filter}, func(b []byte) error {
			if cf.json {
				fmt.Printf("%s\n", b)
				return nil
			}
			var r struct{ Flushed int }
			json.Unmarshal(b, &r)
			fmt.Printf("%d flows flushed\n", r.Flushed)
			return nil
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "rstguard flows flush: %v\n", err)
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	if !cf.json {
		fmt.Fprintln(tw, "QUEUE\tSRC\tDST\tSTATE\tAGE\tIDLE\tFLAGS\tSRC SENT (END/ACK/WIN/SCALE/TTL)\tSRC MUST HIT\tDST SENT (END/ACK/WIN/SCALE/TTL)\tDST MUST HIT")
	}
	found := 0
	err := cf.ask(ctlRequest{Op: "flows", Filter: filter}, func(b []byte) error {
		var f ctlFlow
		var end struct {
			End   bool `json:"end"`
			Flows int  `json:"flows"`
		}
		if json.Unmarshal(b, &end) == nil && end.End {
			found = end.Flows
			return nil
		}
		if cf.json {
			fmt.Printf("%s\n", b)
			return nil
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return err
		}
		flags := []string{}
		if f.PickedUp {
			flags = append(flags, "picked-up")
		}
		if f.OneWay {
			flags = append(flags, "one-way")
		}
		dir := func(d ctlDir) string {
			if !d.Seen {
				return "-"
			}
			return fmt.Sprintf("%d/%d/%d/%d/%d", d.End, d.Ack, d.Win, d.WScale, d.TTL)
		}
		win := func(d ctlDir) string { return fmt.Sprintf("[%d,%d)", d.Window.Lo, d.Window.Hi) }
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Queue, f.Src, f.Dst, f.State,
			dur(f.Age), dur(f.Idle), strings.Join(flags, ","), dir(f.Original), win(f.Original), dir(f.Reply), win(f.Reply))
		return nil
	})
	if !cf.json {
		tw.Flush()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "rstguard flows: %v\n", err)
		return 1
	}
	if !cf.json {
		fmt.Fprintf(os.Stderr, "%d flows\n", found)
	}
	if isGet && found == 0 {
		return 1 // like conntrack -G: no such flow
	}
	return 0
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

const statusUsage = `usage: rstguard status [--json] [--socket PATH]

Shows the running daemon: version, uptime, configuration file and its
SHA-256, the settings in force, each queue (bound, flows and limit,
packets), the queues the live firewall rules send to and any of them no
worker binds, problems of the rules, and drops by reason since start.
`

// statusFlags returns the flag set of rstguard status and the flags it fills.
func statusFlags(stderr io.Writer) (*flag.FlagSet, *controlFlags) {
	fs := newFlagSet("status", stderr, statusUsage)
	cf := new(controlFlags)
	cf.register(fs)
	return fs, cf
}

func cmdStatus(args []string) int {
	fs, cf := statusFlags(os.Stderr)
	if code, done := parseFlags(fs, args, os.Stdout); done {
		return code
	}
	err := cf.ask(ctlRequest{Op: "status"}, func(b []byte) error {
		if cf.json {
			fmt.Printf("%s\n", b)
			return nil
		}
		var st ctlStatus
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		return printStatus(os.Stdout, &st)
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "rstguard status: %v\n", err)
		return 1
	}
	return 0
}

func printStatus(w io.Writer, st *ctlStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	fmt.Fprintf(tw, "uptime\t%s\n", dur(st.Uptime))
	fmt.Fprintf(tw, "config\t%s", st.ConfigFile)
	if st.ConfigSHA256 != "" {
		fmt.Fprintf(tw, " (sha256 %s)", st.ConfigSHA256)
	}
	fmt.Fprintf(tw, "\nsettings\t%s\n", st.Settings)
	if len(st.RestartNeeded) > 0 {
		fmt.Fprintf(tw, "restart required\t%s changed in the file; the running values stay until a restart\n", strings.Join(st.RestartNeeded, ", "))
	}
	fmt.Fprintf(tw, "ruleset queues\t%v", st.RulesetQueues)
	if len(st.Unbound) > 0 {
		fmt.Fprintf(tw, " (NOT BOUND by any worker: %v; their packets pass unjudged)", st.Unbound)
	}
	fmt.Fprintln(tw)
	if len(st.Problems) > 0 {
		fmt.Fprintf(tw, "ruleset problems\t%s\n", strings.Join(st.Problems, ", "))
	}
	fmt.Fprintln(tw, "\nQUEUE\tBOUND\tFLOWS\tLIMIT\tFILL\tPACKETS\tFLUSHED")
	for _, q := range st.Queues {
		fill := 0.0
		if q.Limit > 0 {
			fill = 100 * float64(q.Flows) / float64(q.Limit)
		}
		fmt.Fprintf(tw, "%d\t%t\t%d\t%d\t%.1f%%\t%d\t%d\n", q.Queue, q.Bound, q.Flows, q.Limit, fill, q.Packets, q.Flushed)
	}
	fmt.Fprintln(tw, "\nDROPS SINCE START\tPACKETS")
	for _, r := range slices.Sorted(maps.Keys(st.Drops)) {
		fmt.Fprintf(tw, "%s\t%d\n", r, st.Drops[r])
	}
	return tw.Flush()
}
