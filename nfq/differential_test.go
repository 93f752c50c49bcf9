package nfq

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	nfqueue "github.com/florianl/go-nfqueue/v2"

	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/policy"
	"github.com/rstguard/rstguard/replay"
)

// TestDaemonPathMatchesReplay is STYLE rule 16's differential check: every
// frame of the real captures in replay/testdata, in both reset modes, gets
// the same verdict from the daemon's per-packet path (Worker.handle, with
// the kernel's headers-only copy of 128 bytes and the original length) as
// from `rstguard replay` (whole frames, capture timestamps). The captures
// last a few seconds, far below any timeout, so the two clocks cannot make
// a difference.
func TestDaemonPathMatchesReplay(t *testing.T) {
	files, _ := filepath.Glob("../replay/testdata/*.pcap*")
	if len(files) == 0 {
		t.Fatal("no captures in ../replay/testdata")
	}
	for _, mode := range []policy.RSTMode{policy.RSTModeWindow, policy.RSTModeExact} {
		for _, file := range files {
			pc := policy.Config{RSTMode: mode}
			var want []replay.Frame
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = replay.Run(f, policy.NewEngine(pc, conntrack.DefaultConfig()), func(fr replay.Frame) { want = append(want, fr) })
			f.Close()
			if err != nil {
				t.Fatalf("%s: replay: %v", file, err)
			}

			w := New(Config{Queue: 1}, policy.NewEngine(pc, conntrack.DefaultConfig()), Options{ProcPath: "testdata/none"})
			f, _ = os.Open(file)
			rd, err := replay.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			drops := 0
			for i := 0; ; i++ {
				pk, err := rd.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				if pk.IP == nil {
					continue // non-IP frames never reach a queue
				}
				ip, wire := pk.IP, pk.WireLen
				if len(ip) > 128 {
					if wire == 0 {
						wire = len(ip)
					}
					ip = ip[:128]
				}
				v, _, _ := w.handle(ip, wire, 0, 0, w.now())
				wantV := nfqueue.NfAccept
				if want[i].Verdict == policy.Drop {
					wantV = nfqueue.NfDrop
					drops++
				}
				if v != wantV {
					t.Errorf("%s (%s mode) frame %d: daemon verdict %d, replay %s (%s)", file, mode, want[i].Index, v, want[i].Verdict, want[i].Reason)
				}
				if d := w.last; d.Reason != want[i].Reason || d.State != want[i].State {
					t.Errorf("%s (%s mode) frame %d: daemon reason %s state %s, replay reason %s state %s",
						file, mode, want[i].Index, d.Reason, d.State, want[i].Reason, want[i].State)
				}
			}
			f.Close()
			if filepath.Base(file) == "forged.pcapng" && drops == 0 {
				t.Errorf("%s: no drops: the comparison did not exercise a drop", file)
			}
		}
	}
}
