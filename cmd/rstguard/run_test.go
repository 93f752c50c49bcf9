package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLogSwitch: a reload switches level and format under loggers that
// were derived (With) before the switch.
func TestLogSwitch(t *testing.T) {
	var buf bytes.Buffer
	ls := newLogSwitch(&buf, false, "text", slog.LevelInfo)
	log := ls.logger().With("queue", 3)
	log.Debug("hidden")
	log.Info("first", "k", "v")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, "msg=first queue=3 k=v") {
		t.Fatalf("text output = %q", out)
	}
	buf.Reset()
	ls.set("json", slog.LevelDebug)
	log.Debug("second")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not JSON after the switch: %q: %v", buf.String(), err)
	}
	if m["msg"] != "second" || m["queue"] != float64(3) || m["level"] != "DEBUG" {
		t.Errorf("JSON line = %v", m)
	}
	if !log.Enabled(t.Context(), slog.LevelDebug) {
		t.Error("debug not enabled after switching the level")
	}
}

func TestConfigErrorsFlattened(t *testing.T) {
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	got := configErrors(errors.Join(a, errors.Join(b, c)))
	if len(got) != 3 || got[0] != a || got[1] != b || got[2] != c {
		t.Errorf("configErrors = %v, want [a b c]", got)
	}
	if got := configErrors(a); len(got) != 1 || got[0] != a {
		t.Errorf("configErrors(single) = %v", got)
	}
}

// TestRunArgs: usage errors and an explicitly named missing file fail
// before anything is bound.
func TestRunArgs(t *testing.T) {
	if got := cmdRun([]string{"extra"}); got != 2 {
		t.Errorf("run extra = %d, want 2", got)
	}
	if got := cmdRun([]string{"--bogus"}); got != 2 {
		t.Errorf("run --bogus = %d, want 2", got)
	}
	missing := filepath.Join(t.TempDir(), "nope.toml")
	if got := cmdRun([]string{"--config", missing}); got != 1 {
		t.Errorf("run --config missing = %d, want 1", got)
	}
	if _, _, err := loadRunConfig(missing, true); err == nil {
		t.Error("loadRunConfig: no error for an explicitly named missing file")
	}
}

// TestJournalHandler: each record is one line prefixed with its syslog
// priority (sd-daemon(3)), without the time, attributes and groups kept.
func TestJournalHandler(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  string
	}{
		{slog.LevelDebug, "<7>level=DEBUG msg=m"},
		{slog.LevelDebug + 2, "<7>level=DEBUG+2 msg=m"},
		{slog.LevelInfo, "<6>level=INFO msg=m"},
		{slog.LevelInfo + 2, "<6>level=INFO+2 msg=m"},
		{slog.LevelWarn, "<4>level=WARN msg=m"},
		{slog.LevelWarn + 2, "<4>level=WARN+2 msg=m"},
		{slog.LevelError, "<3>level=ERROR msg=m"},
		{slog.LevelError + 4, "<3>level=ERROR+4 msg=m"},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			ls := newLogSwitch(&buf, false, "journal", slog.LevelDebug)
			ls.logger().Log(t.Context(), tt.level, "m")
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("got %q, want %q", got, tt.want+"\n")
			}
		})
	}

	var buf bytes.Buffer
	ls := newLogSwitch(&buf, false, "journal", slog.LevelInfo)
	log := ls.logger().With("queue", 3).WithGroup("g")
	log.Debug("hidden")
	log.Warn("two\nlines", "err", errors.New("a\nb"))
	log.Info("after")
	want := "<4>level=WARN msg=\"two\\nlines\" queue=3 g.err=\"a\\nb\"\n<6>level=INFO msg=after queue=3\n"
	if got := buf.String(); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// TestJournalStream: JOURNAL_STREAM counts only when it names the device
// and inode of the file itself; "auto" then writes journal lines, else text.
func TestJournalStream(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	devIno := func(f *os.File) (uint64, uint64) {
		var st syscall.Stat_t
		if err := syscall.Stat(f.Name(), &st); err != nil {
			t.Fatal(err)
		}
		return uint64(st.Dev), uint64(st.Ino)
	}
	dev, ino := devIno(f)
	odev, oino := devIno(other)
	tests := []struct {
		name, env string
		want      bool
	}{
		{"matches", fmt.Sprintf("%d:%d", dev, ino), true},
		{"unset", "", false},
		{"another file", fmt.Sprintf("%d:%d", odev, oino), false},
		{"other inode", fmt.Sprintf("%d:%d", dev, ino+1), false},
		{"other device", fmt.Sprintf("%d:%d", dev+1, ino), false},
		{"no colon", fmt.Sprintf("%d", ino), false},
		{"not numbers", "dev:ino", false},
		{"hex", fmt.Sprintf("%#x:%d", dev, ino), false},
		{"trailing", fmt.Sprintf("%d:%d:1", dev, ino), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := journalStream(f, tt.env)
			if j != tt.want {
				t.Fatalf("journalStream(%q) = %v, want %v", tt.env, j, tt.want)
			}
			if err := f.Truncate(0); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Seek(0, 0); err != nil {
				t.Fatal(err)
			}
			ls := newLogSwitch(f, j, "auto", slog.LevelInfo)
			ls.logger().Warn("w")
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			got := string(b)
			if tt.want {
				if got != "<4>level=WARN msg=w\n" || ls.resolvedFormat() != "journal" {
					t.Errorf("auto on the journal's stream wrote %q (format %s), want a <4> line", got, ls.resolvedFormat())
				}
			} else if !strings.HasPrefix(got, "time=") || !strings.Contains(got, "level=WARN msg=w") || ls.resolvedFormat() != "text" {
				t.Errorf("auto off the journal's stream wrote %q (format %s), want a text line", got, ls.resolvedFormat())
			}
		})
	}
}

// TestLogFormats: "text", "json" and "journal" are what they say whatever
// the stream; "auto" follows it.
func TestLogFormats(t *testing.T) {
	tests := []struct {
		format  string
		journal bool
		want    string
	}{
		{"text", true, "text"},
		{"text", false, "text"},
		{"json", true, "json"},
		{"journal", false, "journal"},
		{"auto", true, "journal"},
		{"auto", false, "text"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		ls := newLogSwitch(&buf, tt.journal, tt.format, slog.LevelInfo)
		ls.logger().Error("e")
		out := buf.String()
		var ok bool
		switch tt.want {
		case "text":
			ok = strings.HasPrefix(out, "time=") && strings.Contains(out, "level=ERROR msg=e")
		case "json":
			ok = strings.HasPrefix(out, `{"time":`)
		case "journal":
			ok = out == "<3>level=ERROR msg=e\n"
		}
		if !ok || ls.resolvedFormat() != tt.want {
			t.Errorf("format %q journal=%v: wrote %q as %s, want %s", tt.format, tt.journal, out, ls.resolvedFormat(), tt.want)
		}
	}
}

// TestPrintConfigErrorsPrefix: start-up configuration errors carry the
// err priority on every line when stderr is the journal.
func TestPrintConfigErrorsPrefix(t *testing.T) {
	var buf bytes.Buffer
	printConfigErrors(&buf, "<3>", errors.Join(errors.New("a"), errors.New("b\nc")))
	if got, want := buf.String(), "<3>rstguard run: a\n<3>rstguard run: b\n<3>c\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestJournalHandlerConcurrent: records logged at once from many
// goroutines each keep their own priority prefix.
func TestJournalHandlerConcurrent(t *testing.T) {
	var buf lockedBuffer
	log := newLogSwitch(&buf, false, "journal", slog.LevelDebug).logger()
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				l := levels[(g+i)%len(levels)]
				log.With("g", g).Log(t.Context(), l, "m", "i", i)
			}
		}()
	}
	for range 8 {
		<-done
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, l := range lines {
		var want string
		for _, lv := range levels {
			if strings.Contains(l, "level="+lv.String()+" ") {
				want = journalPrefix(lv)
			}
		}
		if want == "" || !strings.HasPrefix(l, want+"level=") {
			t.Fatalf("line %q does not carry its level's prefix", l)
		}
	}
}
