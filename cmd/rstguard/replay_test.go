package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{[]string{"-h"}, 0, "usage: rstguard replay"},
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
