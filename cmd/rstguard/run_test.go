package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogSwitch: a reload switches level and format under loggers that
// were derived (With) before the switch.
func TestLogSwitch(t *testing.T) {
	var buf bytes.Buffer
	ls := newLogSwitch(&buf, "text", slog.LevelInfo)
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
