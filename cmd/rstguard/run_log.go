package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
)

// logSwitch is the daemon's slog backend: text or JSON to stderr (journald
// takes it from there), with a level and a format that a reload switches
// atomically while every goroutine keeps its *slog.Logger.
type logSwitch struct {
	w     io.Writer
	level slog.LevelVar
	base  atomic.Pointer[slog.Handler]
}

func newLogSwitch(w io.Writer, format string, level slog.Level) *logSwitch {
	s := &logSwitch{w: w}
	s.set(format, level)
	return s
}

// set switches format ("json", anything else is text) and level.
func (s *logSwitch) set(format string, level slog.Level) {
	s.level.Set(level)
	opts := &slog.HandlerOptions{Level: &s.level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(s.w, opts)
	} else {
		h = slog.NewTextHandler(s.w, opts)
	}
	s.base.Store(&h)
}

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
