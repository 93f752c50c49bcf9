package events

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Writer drains rings into a file and/or another writer (standard output).
type Writer struct {
	rings  []*Ring
	path   string    // "" for none
	extra  io.Writer // nil for none
	log    *slog.Logger
	reopen chan struct{}

	mu       sync.Mutex // guards f (Run and Close)
	f        *os.File
	buf      []byte
	lastWarn time.Time // of the last write error logged (one per 10 s)
	done     chan struct{}

	written, errors, reopens atomic.Uint64
}

// Poll is how often the writer drains the rings when they are not full.
const Poll = 20 * time.Millisecond

// NewWriter opens path (if not "") for appending and returns a writer for
// the rings. extra, if not nil, receives every line too.
func NewWriter(rings []*Ring, path string, extra io.Writer, log *slog.Logger) (*Writer, error) {
	w := &Writer{rings: rings, path: path, extra: extra, log: log, reopen: make(chan struct{}, 1), done: make(chan struct{})}
	if path != "" {
		f, err := openLog(path)
		if err != nil {
			return nil, err
		}
		w.f = f
	}
	return w, nil
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("events: cannot open %s: %w (create its directory, or set [events] path to a writable file)", path, err)
	}
	return f, nil
}

// Reopen asks the writer to close and reopen its file (after logrotate
// moved it). Safe from any goroutine.
func (w *Writer) Reopen() {
	select {
	case w.reopen <- struct{}{}:
	default:
	}
}

// Written and Errors count lines written and failed writes.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Errors counts writes that failed (the lines are lost, and counted here).
func (w *Writer) Errors() uint64 { return w.errors.Load() }

// Reopens counts the file's reopenings.
func (w *Writer) Reopens() uint64 { return w.reopens.Load() }

// Lost sums the rings' lost events.
func (w *Writer) Lost() uint64 {
	var n uint64
	for _, r := range w.rings {
		n += r.Lost()
	}
	return n
}

// Run drains the rings every Poll until ctx ends, then drains them once more
// and closes the file.
func (w *Writer) Run(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.drain()
			w.mu.Lock()
			if w.f != nil {
				w.f.Close()
				w.f = nil
			}
			w.mu.Unlock()
			return
		case <-w.reopen:
			w.drain()
			w.doReopen()
		case <-t.C:
			w.drain()
		}
	}
}

// Wait returns once Run has returned.
func (w *Writer) Wait() { <-w.done }

func (w *Writer) doReopen() {
	if w.path == "" {
		return
	}
	f, err := openLog(w.path)
	if err != nil {
		w.log.Warn("could not reopen the event log; still writing to the old file", "path", w.path, "err", err)
		return
	}
	w.mu.Lock()
	old := w.f
	w.f = f
	w.mu.Unlock()
	if old != nil {
		old.Close()
	}
	w.reopens.Add(1)
	w.log.Info("event log reopened", "path", filepath.Clean(w.path))
}

// drain writes every record waiting in the rings, in batches of about 64 KB.
func (w *Writer) drain() {
	var r Record
	for {
		n := 0
		w.buf = w.buf[:0]
		for _, ring := range w.rings {
			for len(w.buf) < 64<<10 && ring.Pop(&r) {
				w.buf = r.AppendJSON(w.buf)
				w.buf = append(w.buf, '\n')
				n++
			}
		}
		if n == 0 {
			return
		}
		w.write(w.buf, uint64(n))
	}
}

func (w *Writer) write(b []byte, n uint64) {
	ok := true
	w.mu.Lock()
	if w.f != nil {
		if _, err := w.f.Write(b); err != nil {
			ok = false
			if now := time.Now(); now.Sub(w.lastWarn) >= 10*time.Second {
				w.lastWarn = now
				w.log.Warn("could not write the event log; the lines are lost and counted in rstguard_event_write_errors_total",
					"path", w.path, "err", err)
			}
		}
	}
	w.mu.Unlock()
	if w.extra != nil {
		if _, err := w.extra.Write(b); err != nil {
			ok = false
		}
	}
	if ok {
		w.written.Add(n)
	} else {
		w.errors.Add(n)
	}
}
