package events

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/seqnum"
)

func tcpPacket(t testing.TB, rst bool, seq uint32) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 57, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{198, 51, 100, 1}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: seq, Ack: 9, RST: rst, ACK: !rst, Window: 100}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWantedAndJSON(t *testing.T) {
	var p packet.Parsed
	packet.Decode(tcpPacket(t, true, 4000000000), 0, &p)
	drop := policy.Decision{Verdict: policy.Drop, Reason: policy.ReasonRSTOutOfWindow, State: conntrack.StateEstablished,
		Checked: true, WinLo: seqnum.Value(4294967000), WinHi: seqnum.Value(100)}
	if !Wanted(&p, &drop) {
		t.Fatal("a dropped reset is an event")
	}
	acc := policy.Decision{Verdict: policy.Accept, Reason: policy.ReasonRSTValid, State: conntrack.StateEstablished}
	if !Wanted(&p, &acc) {
		t.Fatal("an accepted reset is an event")
	}
	var q packet.Parsed
	packet.Decode(tcpPacket(t, false, 1), 0, &q)
	if Wanted(&q, &policy.Decision{Verdict: policy.Accept, Reason: policy.ReasonTracked}) {
		t.Fatal("an accepted segment is not an event")
	}
	if !Wanted(&q, &policy.Decision{Verdict: policy.Drop, Reason: policy.ReasonOutOfWindow}) {
		t.Fatal("a dropped segment is an event")
	}

	var r Record
	r.Fill(&p, &drop, 3, time.Date(2026, 12, 2, 10, 0, 0, 5, time.UTC).UnixNano())
	line := string(r.AppendJSON(nil))
	want := `{"time":"2026-12-02T10:00:00.000000005Z","queue":3,"verdict":"drop","reason":"rst_out_of_window","state":"established",` +
		`"src":"192.0.2.1:40000","dst":"198.51.100.1:80","flags":"R","seq":4000000000,"ack":9,"len":0,"ttl":57,"window":{"lo":4294967000,"hi":100}}`
	if line != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if a := testing.AllocsPerRun(100, func() {
		r.Fill(&p, &drop, 3, 1)
		_ = r.AppendJSON(make([]byte, 0, 512)[:0])
	}); a > 1 { // the buffer the test makes
		t.Errorf("Fill+AppendJSON: %.1f allocations", a)
	}
}

func TestRingFullCountsLost(t *testing.T) {
	r := NewRing(3) // rounds up to 4
	for i := range 6 {
		s := r.Slot()
		if i < 4 {
			if s == nil {
				t.Fatalf("slot %d: ring full too early", i)
			}
			s.Seq = uint32(i)
			r.Commit()
		} else if s != nil {
			t.Fatalf("slot %d: ring of 4 not full", i)
		}
	}
	if r.Lost() != 2 {
		t.Errorf("lost %d, want 2", r.Lost())
	}
	var e Record
	for i := range 4 {
		if !r.Pop(&e) || e.Seq != uint32(i) {
			t.Fatalf("pop %d: %+v", i, e)
		}
	}
	if r.Pop(&e) {
		t.Fatal("pop from an empty ring")
	}
	// Wraps around: indexes keep counting.
	for i := range 10 {
		r.Slot().Seq = uint32(100 + i)
		r.Commit()
		if !r.Pop(&e) || e.Seq != uint32(100+i) {
			t.Fatalf("wrap %d: %+v", i, e)
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		if s := r.Slot(); s != nil {
			s.Seq = 1
			r.Commit()
		}
		r.Pop(&e)
	}); a != 0 {
		t.Errorf("%.1f allocations per push and pop", a)
	}
}

// TestWriterFileReopenAndExtra: every record becomes one line in the file
// and in the extra writer; after a rename (logrotate) and Reopen, lines go to
// the new file; nothing is lost.
func TestWriterFileReopenAndExtra(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	r1, r2 := NewRing(1024), NewRing(1024)
	var extra bytes.Buffer
	w, err := NewWriter([]*Ring{r1, r2}, path, &syncWriter{w: &extra}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go w.Run(ctx)
	push := func(r *Ring, n int, reason policy.Reason) {
		for i := range n {
			s := r.Slot()
			if s == nil {
				t.Fatal("ring full")
			}
			*s = Record{Time: int64(i), Verdict: policy.Drop, Reason: reason}
			r.Commit()
		}
	}
	push(r1, 300, policy.ReasonRSTOutOfWindow)
	push(r2, 200, policy.ReasonOutOfWindow)
	waitFor(t, func() bool { return w.Written() == 500 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	w.Reopen()
	waitFor(t, func() bool { return w.Reopens() == 1 })
	push(r1, 7, policy.ReasonRSTUnknownFlow)
	waitFor(t, func() bool { return w.Written() == 507 })
	cancel()
	w.Wait()
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if n := strings.Count(string(old), "\n"); n != 500 {
		t.Errorf("rotated file has %d lines, want 500", n)
	}
	if n := strings.Count(string(cur), "\n"); n != 7 || !strings.Contains(string(cur), `"reason":"rst_unknown_flow"`) {
		t.Errorf("new file: %d lines: %s", n, cur)
	}
	if n := strings.Count(extra.String(), "\n"); n != 507 {
		t.Errorf("extra writer got %d lines, want 507", n)
	}
	if w.Lost() != 0 || w.Errors() != 0 {
		t.Errorf("lost %d errors %d", w.Lost(), w.Errors())
	}
}

func TestWriterBadPath(t *testing.T) {
	_, err := NewWriter(nil, "/nonexistent-dir/x/events.jsonl", nil, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent-dir/x/events.jsonl") || !strings.Contains(err.Error(), "[events] path") {
		t.Errorf("error %v: must name the file and the key", err)
	}
}

type syncWriter struct {
	w io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) { return s.w.Write(b) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
