package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/rstguard/rstguard/config"
)

// logSwitch is the daemon's slog backend: text, JSON or journal lines to
// stderr (journald takes it from there under systemd), with a level and a
// format that a reload switches atomically while every goroutine keeps its
// *slog.Logger.
type logSwitch struct {
	w io.Writer
	// journal: w is the journal's stream, so format "auto" means
	// "journal" (journalStream).
	journal bool
	level   slog.LevelVar
	base    atomic.Pointer[slog.Handler]
	format  atomic.Pointer[string] // the format in effect, "auto" resolved
}

func newLogSwitch(w io.Writer, journal bool, format string, level slog.Level) *logSwitch {
	s := &logSwitch{w: w, journal: journal}
	s.set(format, level)
	return s
}

// resolve maps [log] format to the format written: "auto" is "journal" on
// the journal's stream and "text" elsewhere; anything unknown is "text".
func resolve(format string, journal bool) string {
	switch format {
	case config.LogFormatJSON, config.LogFormatJournal, config.LogFormatText:
		return format
	case config.LogFormatAuto:
		if journal {
			return config.LogFormatJournal
		}
	}
	return config.LogFormatText
}

// set switches format and level.
func (s *logSwitch) set(format string, level slog.Level) {
	s.level.Set(level)
	opts := &slog.HandlerOptions{Level: &s.level}
	f := resolve(format, s.journal)
	var h slog.Handler
	switch f {
	case config.LogFormatJSON:
		h = slog.NewJSONHandler(s.w, opts)
	case config.LogFormatJournal:
		h = newJournalHandler(s.w, opts)
	default:
		h = slog.NewTextHandler(s.w, opts)
	}
	s.base.Store(&h)
	s.format.Store(&f)
}

// resolvedFormat is the format being written ("auto" resolved).
func (s *logSwitch) resolvedFormat() string { return *s.format.Load() }

func (s *logSwitch) logger() *slog.Logger { return slog.New(&switchHandler{s: s}) }

// switchHandler forwards to the current base handler, re-applying the
// attributes and groups it was derived with.
type switchHandler struct {
	s   *logSwitch
	ops []func(slog.Handler) slog.Handler
}

func (h *switchHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.s.level.Level()
}

func (h *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	b := *h.s.base.Load()
	for _, op := range h.ops {
		b = op(b)
	}
	return b.Handle(ctx, r)
}

func (h *switchHandler) derive(op func(slog.Handler) slog.Handler) *switchHandler {
	ops := make([]func(slog.Handler) slog.Handler, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &switchHandler{s: h.s, ops: append(ops, op)}
}

func (h *switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.derive(func(b slog.Handler) slog.Handler { return b.WithAttrs(as) })
}

func (h *switchHandler) WithGroup(name string) slog.Handler {
	return h.derive(func(b slog.Handler) slog.Handler { return b.WithGroup(name) })
}

// Syslog priorities (RFC 5424 section 6.2.1, table 2), as sd-daemon(3)
// wants them in a "<N>" line prefix.
const (
	prioErr     = 3
	prioWarning = 4
	prioInfo    = 6
	prioDebug   = 7
)

// syslogPriority maps a slog level to a syslog priority: below info is
// debug, info up to warn is info, warn up to error is warning, error and
// above is err.
func syslogPriority(l slog.Level) int {
	switch {
	case l < slog.LevelInfo:
		return prioDebug
	case l < slog.LevelWarn:
		return prioInfo
	case l < slog.LevelError:
		return prioWarning
	default:
		return prioErr
	}
}

// journalPrefix is the "<N>" prefix of sd-daemon(3) for level l.
func journalPrefix(l slog.Level) string {
	return "<" + strconv.Itoa(syslogPriority(l)) + ">"
}

// journalHandler writes slog text lines without the time, each prefixed
// with its syslog priority ("<4>level=WARN msg=..."). journald reads a
// service's stderr with SyslogLevelPrefix=yes, its default
// (systemd.exec(5)): it strips the prefix and stores the line at that
// priority, so `journalctl -p warning` shows the warnings. Without a prefix
// every line is stored at the unit's SyslogLevel=, info.
//
// The text handler formats a record into one buffer and writes it with one
// Write call, and quotes newlines inside values, so a record is exactly one
// line; the mutex carries the record's prefix to that Write.
type journalHandler struct {
	pw *prefixWriter
	h  slog.Handler
}

// prefixWriter writes each Write as one write of prefix+p.
type prefixWriter struct {
	mu     sync.Mutex // held from Handle to the Write it causes
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], p.prefix...), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

func newJournalHandler(w io.Writer, opts *slog.HandlerOptions) *journalHandler {
	o := *opts
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{} // the journal has the entry's time
		}
		return a
	}
	pw := &prefixWriter{w: w}
	return &journalHandler{pw: pw, h: slog.NewTextHandler(pw, &o)}
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.h.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = journalPrefix(r.Level)
	return h.h.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{pw: h.pw, h: h.h.WithAttrs(as)}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{pw: h.pw, h: h.h.WithGroup(name)}
}

// journalStream reports whether f is the journal's stream: systemd sets
// JOURNAL_STREAM to "DEVICE:INODE" (decimal) of the socket it connects a
// service's stdout and stderr to (systemd.exec(5), $JOURNAL_STREAM). The
// variable is inherited by children whose stderr is something else (a
// pipe, a file), so it counts only when it names f itself.
func journalStream(f *os.File, env string) bool {
	devS, inoS, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
