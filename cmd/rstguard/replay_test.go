package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/rstguard/rstguard/config"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
	"github.com/rstguard/rstguard/replay"
)

const replayTestdata = "../../replay/testdata"

func runReplay(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = replayMain(args, bytes.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

// replayLines parses JSON lines and checks the keys of SPEC section 8.
func replayLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ms []map[string]any
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", i+1, err, line)
		}
		keys := []string{"frame", "time", "verdict", "reason", "state"}
		if _, tcp := m["flags"]; tcp {
			keys = append(keys, "src", "dst", "seq", "ack", "len")
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d: no %q: %s", i+1, k, line)
			}
		}
		if m["frame"] != float64(i+1) {
			t.Errorf("line %d: frame %v", i+1, m["frame"])
		}
		ms = append(ms, m)
	}
	return ms
}

func countReason(ms []map[string]any, verdict, reason string) int {
	n := 0
	for _, m := range ms {
		if m["verdict"] == verdict && m["reason"] == reason {
			n++
		}
	}
	return n
}

func TestReplayCommandJSONL(t *testing.T) {
	capture := filepath.Join(replayTestdata, "forged.pcapng")
	for _, args := range [][]string{
		{"--format", "jsonl", capture},
		{capture, "--format=jsonl"}, // flags after the file
		{"-format", "jsonl", capture},
	} {
		code, out, errOut := runReplay(t, nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		ms := replayLines(t, out)
		if len(ms) < 30 {
			t.Fatalf("%v: %d lines", args, len(ms))
		}
		if countReason(ms, "drop", "rst_out_of_window") != 1 || countReason(ms, "drop", "rst_syn_sent_bad_ack") != 1 {
			t.Errorf("%v: the forged resets were not dropped:\n%s", args, out)
		}
		for _, want := range []string{"frames: ", "flows created: 1", "rst_out_of_window", "tracked"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: summary on stderr lacks %q:\n%s", args, want, errOut)
			}
		}
	}
}

func TestReplayCommandTextAndStdin(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(replayTestdata, "refused.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runReplay(t, b, "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 { // header + 6 frames
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	if !strings.Contains(lines[4], "rst_valid") || !strings.Contains(lines[4], "syn_sent") || !strings.Contains(lines[4], "RA") {
		t.Errorf("the refusal line: %q", lines[4])
	}
}

func TestReplayCommandConfig(t *testing.T) {
	dir := t.TempDir()
	exact := filepath.Join(dir, "exact.toml")
	if err := os.WriteFile(exact, []byte("[policy]\nrst_mode = \"exact\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	capture := filepath.Join(replayTestdata, "forged.pcapng")
	code, out, errOut := runReplay(t, nil, "--config", exact, "--format", "jsonl", capture)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// RFC 5961 3.2: the forged reset inside the window is not at RCV.NXT.
	if n := countReason(replayLines(t, out), "drop", "rst_not_exact"); n != 1 {
		t.Errorf("rst_not_exact drops: %d, want 1", n)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[policy]\nrst_mode = \"sometimes\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.toml")} {
		code, out, errOut := runReplay(t, nil, "--config", path, capture)
		if code != 1 || out != "" || !strings.Contains(errOut, filepath.Base(path)) {
			t.Errorf("--config %s: exit %d, stdout %q, stderr %q; want 1 and a message naming the file", path, code, out, errOut)
		}
	}
}

func TestReplayCommandErrors(t *testing.T) {
	dir := t.TempDir()
	normal, err := os.ReadFile(filepath.Join(replayTestdata, "normal.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.pcap")
	garbage := filepath.Join(dir, "garbage.pcap")
	_ = os.WriteFile(cut, normal[:len(normal)/2], 0o644)
	_ = os.WriteFile(garbage, []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), 0o644)
	// A pcap file header (little endian, v2.4, snaplen 65535) of link
	// type 105, IEEE 802.11.
	wifi := filepath.Join(dir, "wifi.pcap")
	_ = os.WriteFile(wifi, []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 105, 0, 0, 0}, 0o644)
	capture := filepath.Join(replayTestdata, "refused.pcap")
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "exactly one capture"},
		{[]string{capture, capture}, 2, "exactly one capture"},
		{[]string{"--format", "xml", capture}, 2, "unknown --format"},
		{[]string{"--bogus", capture}, 2, "bogus"},
		{[]string{filepath.Join(dir, "nope.pcap")}, 1, "cannot read the capture"},
		{[]string{garbage}, 1, "pcap and pcapng"},
		{[]string{wifi}, 1, "unsupported link type 105"},
		{[]string{"--format", "jsonl", cut}, 1, "frames before it were replayed"},
	} {
		code, out, errOut := runReplay(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.stderr)
		}
		if tc.code == 1 && strings.Contains(tc.stderr, "replayed") {
			replayLines(t, out) // what was replayed is still valid output
		}
	}
}

// jsonObjects parses JSON lines without the frame-order check of
// replayLines (filtered output skips frames).
func jsonObjects(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ms []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %v: %q", err, line)
		}
		ms = append(ms, m)
	}
	return ms
}

// TestReplayCommandSelection: --drops-only and --flow choose the frames
// printed (never the engine's input: the verdicts stay those of the whole
// capture), --summary prints flows, --fail-on-drop sets exit status 3.
func TestReplayCommandSelection(t *testing.T) {
	forged := filepath.Join(replayTestdata, "forged.pcapng")
	normal := filepath.Join(replayTestdata, "normal.pcap")
	all := func(ms []map[string]any, key string, v any) bool {
		for _, m := range ms {
			if m[key] != v {
				return false
			}
		}
		return true
	}
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		lines int                            // JSON objects on stdout
		check func(ms []map[string]any) bool // nil: none
		errs  []string                       // on stderr
	}{
		{"drops only", []string{"--drops-only", forged}, 0, 2, func(ms []map[string]any) bool {
			return all(ms, "verdict", "drop") && ms[0]["reason"] == "rst_syn_sent_bad_ack" && ms[1]["reason"] == "rst_out_of_window" &&
				ms[0]["frame"] == float64(4) && ms[1]["frame"] == float64(22) // the capture's own frame numbers
		}, []string{"selected: 38 frames (all flows, printing drops only), dropped: 2"}},
		{"flow host and port", []string{"--flow", "host 192.0.2.2 port 8080", forged}, 0, 33, func(ms []map[string]any) bool {
			_, tcp := ms[0]["flags"]
			return tcp && ms[1]["reason"] == "rst_syn_sent_bad_ack" // both directions
		}, []string{`--flow "host 192.0.2.2 port 8080"`, "dropped: 2"}},
		{"flow endpoint", []string{"--flow=192.0.2.2:8080", forged}, 0, 33, nil, nil},
		{"flow no match", []string{"--flow", "port 80", forged}, 0, 0, nil, []string{"selected: 0 frames"}},
		{"flows ORed", []string{"--flow", "port 80", "--flow", "net 192.0.2.0/24", forged}, 0, 33, nil,
			[]string{`--flow "port 80" or --flow "net 192.0.2.0/24"`}},
		{"flow and drops only", []string{"--flow", "192.0.2.1", "--drops-only", forged}, 0, 2, func(ms []map[string]any) bool {
			return all(ms, "verdict", "drop")
		}, nil},
		{"summary", []string{"--summary", forged}, 0, 1, func(ms []map[string]any) bool {
			m := ms[0]
			d, _ := m["drops"].(map[string]any)
			return m["flow"] == float64(1) && m["src"] == "192.0.2.1:49106" && m["dst"] == "192.0.2.2:8080" &&
				m["packets"] == float64(33) && m["accepted"] == float64(31) && m["dropped"] == float64(2) &&
				d["rst_out_of_window"] == float64(1) && d["rst_syn_sent_bad_ack"] == float64(1) && len(d) == 2 &&
				m["final_state"] == "time_wait" && m["first_frame"] == float64(3) && m["last_frame"] == float64(38)
		}, nil},
		{"summary drops only, clean capture", []string{"--summary", "--drops-only", normal}, 0, 0, nil, nil},
		{"summary, flow no match", []string{"--summary", "--flow", "host 203.0.113.1", forged}, 0, 0, nil, nil},
		{"fail on drop", []string{"--fail-on-drop", forged}, 3, 38, nil, []string{"2 selected packets dropped (--fail-on-drop)"}},
		{"fail on drop, summary", []string{"--fail-on-drop", "--summary", forged}, 3, 1, nil, nil},
		{"fail on drop, clean", []string{"--fail-on-drop", normal}, 0, 32, nil, nil},
		{"fail on drop, other flows", []string{"--fail-on-drop", "--flow", "port 443", forged}, 0, 0, nil, nil},
		{"bad filter", []string{"--flow", "port https", forged}, 2, 0, nil, []string{"port \"https\": want a TCP port number"}},
		{"filter with or", []string{"--flow", "port 80 or port 443", forged}, 2, 0, nil, []string{"repeat --flow"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--format", "jsonl"}, tc.args...)
			code, out, errOut := runReplay(t, nil, args...)
			if code != tc.code {
				t.Fatalf("%v: exit %d, want %d: %s", args, code, tc.code, errOut)
			}
			ms := jsonObjects(t, out)
			if len(ms) != tc.lines {
				t.Fatalf("%v: %d lines, want %d:\n%s", args, len(ms), tc.lines, out)
			}
			if tc.check != nil && !tc.check(ms) {
				t.Errorf("%v: unexpected output:\n%s", args, out)
			}
			for _, s := range tc.errs {
				if !strings.Contains(errOut, s) {
					t.Errorf("%v: stderr lacks %q:\n%s", args, s, errOut)
				}
			}
		})
	}
	// The text forms: the flow table, and the frames of --drops-only.
	code, out, errOut := runReplay(t, nil, "--summary", forged)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 ||
		!strings.Contains(lines[0], "final state") || !strings.Contains(lines[1], "rst_syn_sent_bad_ack 1, rst_out_of_window 1") {
		t.Errorf("text summary: exit %d:\n%s%s", code, out, errOut)
	}
	code, out, _ = runReplay(t, nil, "--drops-only", forged)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.Contains(lines[2], "rst_out_of_window") {
		t.Errorf("text drops: exit %d:\n%s", code, out)
	}
	// An unreadable capture is status 1 even with drops before the cut.
	b, err := os.ReadFile(forged)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runReplay(t, b[:len(b)*2/3], "--fail-on-drop", "-"); code != 1 {
		t.Errorf("cut capture with --fail-on-drop: exit %d, want 1: %s", code, errOut)
	}
}

// TestReplayCommandConfigLine: standard error names the configuration the
// verdicts came from, with the SHA-256 of the file's bytes.
func TestReplayCommandConfigLine(t *testing.T) {
	capture := filepath.Join(replayTestdata, "refused.pcap")
	_, _, errOut := runReplay(t, nil, capture)
	if first := strings.SplitN(errOut, "\n", 2)[0]; first != "config: defaults (no --config given)" {
		t.Errorf("first stderr line %q", first)
	}
	path := filepath.Join(t.TempDir(), "exact.toml")
	data := []byte("[policy]\nrst_mode = \"exact\"\n")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, errOut = runReplay(t, nil, "--config", path, capture)
	want := fmt.Sprintf("config: %s (sha256 %x)", path, sha256.Sum256(data))
	if first := strings.SplitN(errOut, "\n", 2)[0]; first != want {
		t.Errorf("first stderr line %q, want %q", first, want)
	}
}

// TestReplayCommandLinkTypes: the command reads the capture of every link
// type under replay/testdata and drops its forged out-of-window reset.
func TestReplayCommandLinkTypes(t *testing.T) {
	names, _ := filepath.Glob(filepath.Join(replayTestdata, "link-*.pcap"))
	if len(names) < 6 {
		t.Fatalf("%d link-type captures, want 6 or more", len(names))
	}
	for _, name := range names {
		code, out, errOut := runReplay(t, nil, "--format", "jsonl", "--drops-only", "--fail-on-drop", name)
		if code != exitDropped {
			t.Errorf("%s: exit %d, want %d: %s", name, code, exitDropped, errOut)
		}
		if n := countReason(jsonObjects(t, out), "drop", "rst_out_of_window"); n != 1 {
			t.Errorf("%s: %d rst_out_of_window drops, want 1:\n%s", name, n, out)
		}
		if !strings.Contains(errOut, "not IP 0)") {
			t.Errorf("%s: frames without IP (an unread link header):\n%s", name, errOut)
		}
	}
}

// TestReplayFlagsInREADME: every flag of rstguard replay (as -h lists them)
// is documented in the README's replay section, and the link types of its
// table are the ones the help names.
func TestReplayFlagsInREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "## Offline replay")
	end := strings.Index(readme[start:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README has no Offline replay section")
	}
	section := readme[start : start+end]
	_, help, _ := runReplay(t, nil, "-h")
	n := 0
	for _, line := range strings.Split(help, "\n") {
		if !strings.HasPrefix(line, "  -") {
			continue
		}
		name := strings.Fields(line)[0][1:]
		if name == "version" || name == "h," {
			continue // every command's (flags.go), in the man page
		}
		n++
		if !regexp.MustCompile(`--` + name + `\b`).MatchString(section) {
			t.Errorf("flag --%s is not in the README's replay section", name)
		}
	}
	if n < 6 {
		t.Errorf("found %d flags in the help:\n%s", n, help)
	}
	for _, lt := range []struct{ readme, help string }{
		{"DLT_NULL", "DLT_NULL"}, {"DLT_LOOP", "DLT_LOOP"}, {"| PPP |", "PPP"}, {"HDLC", "HDLC"},
		{"SLL2", "SLL2"}, {"228 IPv4", "LINKTYPE_IPV4"}, {"229 IPv6", "LINKTYPE_IPV6"},
	} {
		if !strings.Contains(section, lt.readme) || !strings.Contains(help, lt.help) {
			t.Errorf("link type %s: missing from the README's replay section or the help", lt.help)
		}
	}
}

// injectedAbortCapture is a raw-IP pcap of a connection (ISNs just below
// 2^32) whose server is reset at the client's exact RCV.NXT by an observer
// on the path, and whose server sends more data 20 ms later: frames 1-3
// the handshake, 4 server data, 5 the injected reset, 6 the server's next
// data.
func injectedAbortCapture(t *testing.T) []byte {
	t.Helper()
	cli, srv := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("192.0.2.2:443")
	c, s := uint32(0xffff_f000), uint32(0xffff_ff00) // variables: the sums wrap
	ws := craft.Options(craft.MSS(1460), craft.WScale(7))
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	frames := []struct {
		d   time.Duration
		seg craft.TCP
	}{
		{0, craft.TCP{Src: cli, Dst: srv, Seq: c, Flags: packet.SYN, Window: 64240, Options: ws}},
		{time.Millisecond, craft.TCP{Src: srv, Dst: cli, Seq: s, Ack: c + 1, Flags: packet.SYN | packet.ACK, Window: 65160, Options: ws}},
		{time.Millisecond, craft.TCP{Src: cli, Dst: srv, Seq: c + 1, Ack: s + 1, Flags: packet.ACK, Window: 502}},
		{time.Millisecond, craft.TCP{Src: srv, Dst: cli, Seq: s + 1, Ack: c + 1, Flags: packet.PSH | packet.ACK, Window: 502, Payload: make([]byte, 1000)}},
		{time.Millisecond, craft.TCP{Src: srv, Dst: cli, Seq: s + 1001, Ack: c + 1, Flags: packet.RST | packet.ACK}},
		{20 * time.Millisecond, craft.TCP{Src: srv, Dst: cli, Seq: s + 1001, Ack: c + 1, Flags: packet.PSH | packet.ACK, Window: 502, Payload: make([]byte, 1000)}},
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		at = at.Add(f.d)
		b := f.seg.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestReplayCommandInjection: rstguard replay applies [injection] from
// --config with capture time as the clock (SPEC 12; Weaver, Sommer, Paxson,
// NDSS 2009: the purported sender talks after its reset). In hold mode the
// injected reset's line, at its own frame, is a drop with rst_injected and
// held_ns; in log mode (the default) it is accepted and the evidence is
// reported on the data that follows; off reports nothing. The new keys
// come after the keys of SPEC section 8.
func TestReplayCommandInjection(t *testing.T) {
	if replay.DefaultMaxHeld != config.DefaultMaxHeld {
		t.Errorf("replay.DefaultMaxHeld %d, config.DefaultMaxHeld %d", replay.DefaultMaxHeld, config.DefaultMaxHeld)
	}
	dir := t.TempDir()
	capture := filepath.Join(dir, "injected.pcap")
	if err := os.WriteFile(capture, injectedAbortCapture(t), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode       string // "" : no --config
		rst        string // verdict/reason of frame 5
		held       bool
		rstSignals string // the signals key of frames 5 and 6, "" if absent
		dataSignal string
		summary    []string
	}{
		{"hold", "drop/rst_injected", true, "", `["talked_after_reset"]`, []string{"rst_injected  1", "resets held: 1 (dropped as rst_injected: 1, released: 0)"}},
		{"log", "accept/rst_valid", false, "", `["talked_after_reset"]`, []string{"rst_valid  1"}},
		{"", "accept/rst_valid", false, "", `["talked_after_reset"]`, []string{"rst_valid  1"}},
		{"off", "accept/rst_valid", false, "", "", []string{"rst_valid  1"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			args := []string{"--format", "jsonl", capture}
			if tc.mode != "" {
				cfg := filepath.Join(dir, tc.mode+".toml")
				if err := os.WriteFile(cfg, []byte("[injection]\nmode = \""+tc.mode+"\"\nmax_held = 4\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"--config", cfg}, args...)
			}
			code, out, errOut := runReplay(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			ms := replayLines(t, out)
			if len(ms) != 6 {
				t.Fatalf("%d lines:\n%s", len(ms), out)
			}
			lines := strings.Split(out, "\n")
			rst, data := ms[4], ms[5]
			if got := fmt.Sprint(rst["verdict"], "/", rst["reason"]); got != tc.rst {
				t.Errorf("injected reset: %s, want %s\n%s", got, tc.rst, lines[4])
			}
			if h, ok := rst["held_ns"]; ok != tc.held || (ok && h != float64(20e6)) {
				t.Errorf("injected reset: held_ns %v, want it only in hold mode, 20000000: %s", h, lines[4])
			}
			if _, ok := rst["signals"]; ok {
				t.Errorf("injected reset: signals without evidence: %s", lines[4])
			}
			if data["verdict"] != "accept" || data["reason"] != "tracked" {
				t.Errorf("the server's data: %s", lines[5])
			}
			if tc.dataSignal == "" {
				if _, ok := data["signals"]; ok {
					t.Errorf("signals with [injection] mode off: %s", lines[5])
				}
			} else if !strings.HasSuffix(lines[5], `"signals":`+tc.dataSignal+`,"expected":`+fmt.Sprint(data["expected"])+`,"seen":`+fmt.Sprint(data["seen"])+`}`) {
				t.Errorf("the server's data: want signals %s with expected and seen, last: %s", tc.dataSignal, lines[5])
			}
			// Added keys come last: the SPEC 8 keys keep their order.
			if i := strings.Index(lines[4], `"len":0`); i < 0 || (tc.held && !strings.HasSuffix(lines[4], `"len":0,"held_ns":20000000}`)) {
				t.Errorf("key order: %s", lines[4])
			}
			for _, l := range ms[:4] {
				for _, k := range []string{"held_ns", "signals", "expected", "seen"} {
					if _, ok := l[k]; ok {
						t.Errorf("frame %v: %q on a frame that neither was held nor gave evidence", l["frame"], k)
					}
				}
			}
			for _, s := range tc.summary {
				if !strings.Contains(errOut, s) {
					t.Errorf("summary lacks %q:\n%s", s, errOut)
				}
			}
			// --fail-on-drop counts the rst_injected drop.
			if code, _, _ := runReplay(t, nil, append(args, "--fail-on-drop")...); (code == exitDropped) != tc.held {
				t.Errorf("--fail-on-drop: exit %d", code)
			}
			// The text format carries the same.
			_, text, _ := runReplay(t, nil, append(args[:len(args)-3:len(args)-3], capture)...)
			if tc.held && !strings.Contains(text, "rst_injected") || tc.held && !strings.Contains(text, "held=20ms") ||
				tc.dataSignal != "" && !strings.Contains(text, "signals=talked_after_reset expected=") {
				t.Errorf("text output:\n%s", text)
			}
		})
	}
}
