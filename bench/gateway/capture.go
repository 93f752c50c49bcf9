//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// capture records what reaches the gateway before the guard decides:
// packets arriving on cli0 (client to server) and on br0 (server to
// client), headers only, in two tcpdump processes. Dropped packets are in
// it, so `rstguard replay` on the merged file reproduces the decisions.
type capture struct {
	parts []string
	procs []*proc
}

func startCapture(t *topology, dir, name string) (*capture, error) {
	c := &capture{}
	for _, dev := range []string{"cli0", "br0"} {
		part := filepath.Join(dir, fmt.Sprintf("%s.%s.pcap", name, dev))
		p, err := startIn(t.gateway, "tcpdump "+dev, "tcpdump", "-i", dev, "-Q", "in", "-s", "128", "-U", "-n", "-w", part, "tcp")
		if err != nil {
			c.stop()
			c.remove()
			return nil, err
		}
		c.parts, c.procs = append(c.parts, part), append(c.procs, p)
	}
	// tcpdump prints "listening on" once its socket is open.
	deadline := time.Now().Add(3 * time.Second)
	for _, part := range c.parts {
		for time.Now().Before(deadline) {
			if fi, err := os.Stat(part); err == nil && fi.Size() > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c, nil
}

func (c *capture) stop() {
	for _, p := range c.procs {
		p.stop(3 * time.Second)
	}
}

func (c *capture) remove() {
	for _, p := range c.parts {
		os.Remove(p)
	}
}

// mergeTo writes the parts into one pcap in timestamp order and removes
// them.
func (c *capture) mergeTo(out string) error {
	defer c.remove()
	type src struct {
		r    *pcapgo.Reader
		f    *os.File
		data []byte
		ci   gopacket.CaptureInfo
		ok   bool
	}
	var srcs []*src
	defer func() {
		for _, s := range srcs {
			s.f.Close()
		}
	}()
	for _, part := range c.parts {
		f, err := os.Open(part)
		if err != nil {
			return err
		}
		r, err := pcapgo.NewReader(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", part, err)
		}
		s := &src{r: r, f: f}
		srcs = append(srcs, s)
	}
	if len(srcs) == 0 {
		return errors.New("nothing captured")
	}
	o, err := os.Create(out)
	if err != nil {
		return err
	}
	defer o.Close()
	w := pcapgo.NewWriterNanos(o)
	if err := w.WriteFileHeader(128, srcs[0].r.LinkType()); err != nil {
		return err
	}
	next := func(s *src) error {
		d, ci, err := s.r.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			s.ok = false
			return nil
		}
		s.data, s.ci, s.ok = d, ci, err == nil
		return err
	}
	for _, s := range srcs {
		if err := next(s); err != nil {
			return err
		}
	}
	for n := 0; n < 10_000_000; n++ {
		var first *src
		for _, s := range srcs {
			if s.ok && (first == nil || s.ci.Timestamp.Before(first.ci.Timestamp)) {
				first = s
			}
		}
		if first == nil {
			return nil
		}
		if err := w.WritePacket(first.ci, first.data); err != nil {
			return err
		}
		if err := next(first); err != nil {
			return err
		}
	}
	return nil
}
