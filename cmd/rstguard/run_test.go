package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rstguard/rstguard/config"
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

// TestRestartPending: each restart-only key is reported when the file
// changes it, and keepRunning puts the running value back; reloadable keys
// are never reported.
func TestRestartPending(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *config.Config)
		want   string // the key reported, "" for none
	}{
		{"nothing", func(c *config.Config) {}, ""},
		{"numbers", func(c *config.Config) { c.Queue.Numbers = []uint16{0, 1, 2} }, "[queue] numbers 0-1 -> 0-2"},
		{"fail_open", func(c *config.Config) { c.Queue.FailOpen = false }, "[queue] fail_open true -> false"},
		{"gso", func(c *config.Config) { c.Queue.GSO = false }, "[queue] gso true -> false"},
		{"max_queue_len", func(c *config.Config) { c.Queue.MaxQueueLen = 4096 }, "[queue] max_queue_len 8192 -> 4096"},
		{"copy_range", func(c *config.Config) { c.Queue.CopyRange = 512 }, "[queue] copy_range 256 -> 512"},
		{"socket_receive_buffer", func(c *config.Config) { c.Queue.SocketReceiveBuffer = 1 << 20 }, "[queue] socket_receive_buffer 4194304 -> 1048576"},
		{"listen", func(c *config.Config) { c.Metrics.Listen = "" }, `[metrics] listen "127.0.0.1:9813" -> ""`},
		{"rst_mode reloads", func(c *config.Config) { c.Policy.RSTMode = "exact" }, ""},
		{"max_flows reloads", func(c *config.Config) { c.Conntrack.MaxFlows = 4096 }, ""},
		{"timeouts reload", func(c *config.Config) { c.Conntrack.Timeouts.Established = time.Hour }, ""},
		{"marks reload", func(c *config.Config) {
			m := config.MaskedMark{Value: 2, Mask: 0xff}
			c.Queue.MarkDrop, c.Queue.MarkAccept = &m, &m
		}, ""},
		{"judged_mark reloads", func(c *config.Config) { c.Guard.JudgedMark = config.MaskedMark{} }, ""},
		{"log reloads", func(c *config.Config) { c.Log.Level, c.Log.Format, c.Log.Burst = "debug", "json", 1 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running, cfg := config.Default(), config.Default()
			tt.change(cfg)
			keys, changes := restartPending(running, cfg)
			if tt.want == "" {
				if len(keys) != 0 {
					t.Fatalf("reported %v (%v) for a reloadable change", keys, changes)
				}
				return
			}
			if len(changes) != 1 || changes[0] != tt.want || !strings.HasPrefix(tt.want, keys[0]+" ") {
				t.Fatalf("restartPending = %q, %q; want %q", keys, changes, tt.want)
			}
			keepRunning(cfg, running)
			if !reflect.DeepEqual(cfg, running) {
				t.Errorf("keepRunning left %+v, want the running %+v", cfg, running)
			}
		})
	}
}

// TestRestartKeysComplete: every field of [queue] and [metrics] that the
// workers and the listener only read at start is a restart key; a new field
// must be added to restartKeys or to reloadable here.
func TestRestartKeysComplete(t *testing.T) {
	reloadable := map[string]bool{"Queue.MarkAccept": true, "Queue.MarkDrop": true}
	for _, sec := range []string{"Queue", "Metrics"} {
		st := reflect.ValueOf(config.Default()).Elem().FieldByName(sec).Type()
		for f := range st.Fields() {
			name := sec + "." + f.Name
			cfg := config.Default()
			v := reflect.ValueOf(cfg).Elem().FieldByName(sec).FieldByName(f.Name)
			switch v.Kind() {
			case reflect.Bool:
				v.SetBool(!v.Bool())
			case reflect.Int, reflect.Int64:
				v.SetInt(v.Int() + 1)
			case reflect.Uint32:
				v.SetUint(v.Uint() + 1)
			case reflect.String:
				v.SetString(v.String() + "x")
			case reflect.Slice:
				v.Set(reflect.ValueOf([]uint16{9}))
			case reflect.Pointer:
				v.Set(reflect.New(v.Type().Elem()))
			default:
				t.Fatalf("%s: kind %s not handled by this test", name, v.Kind())
			}
			keys, _ := restartPending(config.Default(), cfg)
			if reloadable[name] && len(keys) != 0 {
				t.Errorf("%s is reloadable but reported as needing a restart", name)
			}
			if !reloadable[name] && len(keys) != 1 {
				t.Errorf("%s: changing it reports %v; add it to restartKeys or to reloadable", name, keys)
			}
		}
	}
}

// TestReloadReports: a reload that changes a restart-only key logs it and
// sets the gauge at every reload until the file matches what runs again; a
// broken file keeps the configuration and clears last_reload_successful
// without moving its timestamp.
func TestReloadReports(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	path := filepath.Join(t.TempDir(), "config.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("[queue]\nnumbers = [3]\n")
	cfg, _, err := loadRunConfig(path, true)
	if err != nil {
		t.Fatal(err)
	}
	var buf lockedBuffer
	ls := newLogSwitch(&buf, false, "text", slog.LevelInfo)
	d := &runDaemon{cfgPath: path, explicit: true, cfg: cfg, logs: ls, log: ls.logger()}
	const warn = "take effect only at the next restart"
	steps := []struct {
		name, file    string
		ok, restart   bool
		logged        string // in this reload's lines
		rstMode       string // in force afterwards
		numbers       string
		maxQueueLen   uint32
		flowsLimitSum int64
	}{
		{"reloadable", "[queue]\nnumbers = [3]\n[policy]\nrst_mode = \"exact\"\n", true, false, "", "exact", "3", 8192, 1 << 20},
		{"restart key", "[queue]\nnumbers = [3, 4]\nmax_queue_len = 64\n[policy]\nrst_mode = \"exact\"\n", true, true,
			`keys="[queue] numbers, [queue] max_queue_len" changes="[queue] numbers 3 -> 3-4; [queue] max_queue_len 8192 -> 64"`, "exact", "3", 8192, 1 << 20},
		{"again", "[queue]\nnumbers = [3, 4]\nmax_queue_len = 64\n[conntrack]\nmax_flows = 4096\n", true, true,
			`keys="[queue] numbers, [queue] max_queue_len"`, "window", "3", 8192, 4096},
		{"broken", "[queue\n", false, true, "reload failed", "window", "3", 8192, 4096},
		{"back", "[queue]\nnumbers = [3]\n", true, false, "", "window", "3", 8192, 1 << 20},
	}
	var lastOK int64
	for i, st := range steps {
		write(st.file)
		buf.mu.Lock()
		buf.b.Reset()
		buf.mu.Unlock()
		before := time.Now().UnixNano()
		d.reload()
		out := buf.String()
		if got := !d.proc.LastReloadFailed.Load(); got != st.ok {
			t.Errorf("%s: last reload successful %v, want %v", st.name, got, st.ok)
		}
		ts := d.proc.LastReloadSuccess.Load()
		if st.ok && ts < before || !st.ok && ts != lastOK {
			t.Errorf("%s: success timestamp %d (before the reload %d, last success %d)", st.name, ts, before, lastOK)
		}
		lastOK = ts
		if got := d.proc.RestartRequired.Load(); got != st.restart {
			t.Errorf("%s: restart required %v, want %v", st.name, got, st.restart)
		}
		if st.ok && strings.Contains(out, warn) != st.restart {
			t.Errorf("%s: restart warning logged %v, want %v:\n%s", st.name, !st.restart, st.restart, out)
		}
		if st.logged != "" && !strings.Contains(out, st.logged) {
			t.Errorf("%s: log lacks %q:\n%s", st.name, st.logged, out)
		}
		if d.cfg.Policy.RSTMode != st.rstMode || config.QueueList(d.cfg.Queue.Numbers) != st.numbers || d.cfg.Queue.MaxQueueLen != st.maxQueueLen {
			t.Errorf("%s: in force rst_mode %s numbers %v max_queue_len %d", st.name, d.cfg.Policy.RSTMode, d.cfg.Queue.Numbers, d.cfg.Queue.MaxQueueLen)
		}
		// No workers here: the limit is 0 tables' worth; check the
		// arithmetic with one.
		if got := flowsLimit(d.cfg.TableConfig(1), 1); got != st.flowsLimitSum {
			t.Errorf("%s: flows limit %d, want %d", st.name, got, st.flowsLimitSum)
		}
		if got := d.proc.ReloadsOK.Load() + d.proc.ReloadsFailed.Load(); got != uint64(i+1) {
			t.Errorf("%s: %d reloads counted, want %d", st.name, got, i+1)
		}
	}
}

// TestFlowsLimit: max_flows split between queues, rounded up per queue.
func TestFlowsLimit(t *testing.T) {
	for _, tt := range []struct {
		maxFlows, queues int
		want             int64
	}{
		{1 << 20, 1, 1 << 20}, {1 << 20, 2, 1 << 20}, {1025, 2, 1026}, {1024, 3, 1026},
	} {
		c := config.Default()
		c.Conntrack.MaxFlows = tt.maxFlows
		if got := flowsLimit(c.TableConfig(tt.queues), tt.queues); got != tt.want {
			t.Errorf("max_flows %d over %d queues: limit %d, want %d", tt.maxFlows, tt.queues, got, tt.want)
		}
	}
}

// TestWorkerProcs: one P per queue worker unless GOMAXPROCS is set in the
// environment or the queues are as many as the CPUs.
func TestWorkerProcs(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(orig)
	runtime.GOMAXPROCS(4)
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	if n, set := workerProcs(1); n != 1 || !set || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("1 queue of 4 CPUs: workerProcs = %d, %v; GOMAXPROCS %d", n, set, runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(4)
	if n, set := workerProcs(4); n != 4 || set {
		t.Errorf("4 queues of 4 CPUs: workerProcs = %d, %v", n, set)
	}
	if n, set := workerProcs(8); n != 4 || set || runtime.GOMAXPROCS(0) != 4 {
		t.Errorf("8 queues of 4 CPUs: workerProcs = %d, %v", n, set)
	}
	t.Setenv("GOMAXPROCS", "3")
	if n, set := workerProcs(1); n != 4 || set || runtime.GOMAXPROCS(0) != 4 {
		t.Errorf("GOMAXPROCS set by the operator: workerProcs = %d, %v; GOMAXPROCS %d", n, set, runtime.GOMAXPROCS(0))
	}
}
