//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func writePcap(t *testing.T, path string, stamps ...int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(128, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, s := range stamps {
		data := []byte{byte(s), 1, 2, 3}
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(100, int64(s)), CaptureLength: len(data), Length: len(data)}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMergeTo merges two captures in timestamp order and removes the parts.
func TestMergeTo(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.pcap"), filepath.Join(dir, "b.pcap")
	writePcap(t, a, 1, 4, 5, 9)
	writePcap(t, b, 2, 3, 7)
	c := &capture{parts: []string{a, b}}
	out := filepath.Join(dir, "out.pcap")
	if err := c.mergeTo(out); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for {
		d, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if int(d[0]) != ci.Timestamp.Nanosecond() {
			t.Fatalf("packet %d carries the wrong timestamp %v", d[0], ci.Timestamp)
		}
		got = append(got, int(d[0]))
	}
	want := []int{1, 2, 3, 4, 5, 7, 9}
	if len(got) != len(want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("merged %v, want %v", got, want)
		}
	}
	for _, p := range []string{a, b} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed after the merge", p)
		}
	}
}
