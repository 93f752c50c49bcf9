package replay

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/rstguard/rstguard/conntrack"
	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/packet/craft"
	"github.com/rstguard/rstguard/policy"
)

// ISNs just below 2^32, so that every window the tests check crosses the
// wrap (STYLE rule 4).
const (
	talkCISN = 0xffff_f000
	talkSISN = 0xffff_ff00
)

// talk scripts a crafted TCP conversation between a client and a server as
// a raw-IP pcap, with a capture clock the script advances: the packets are
// built byte for byte by packet/craft, so each test shows exactly what the
// engine saw and when. c and s are what the client and the server have
// sent (their SND.NXT); every segment acknowledges all the other side sent.
type talk struct {
	cli, srv netip.AddrPort
	t        time.Time
	c, s     uint32
	frames   []timedPacket
}

type timedPacket struct {
	at time.Time
	b  []byte
}

func newTalk() *talk {
	return &talk{
		cli: netip.MustParseAddrPort("192.0.2.1:40000"),
		srv: netip.MustParseAddrPort("192.0.2.2:443"),
		t:   time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC),
	}
}

// after advances the capture clock by d.
func (k *talk) after(d time.Duration) *talk {
	k.t = k.t.Add(d)
	return k
}

// send adds seg, from the client or the server (addresses filled in), at
// the current capture time and returns its frame index.
func (k *talk) send(fromClient bool, seg craft.TCP) int {
	seg.Src, seg.Dst = k.srv, k.cli
	if fromClient {
		seg.Src, seg.Dst = k.cli, k.srv
	}
	if seg.Window == 0 && seg.Flags&packet.RST == 0 {
		seg.Window = 502
	}
	k.frames = append(k.frames, timedPacket{k.t, seg.Bytes()})
	return len(k.frames)
}

// synOpts are the SYN options of a Linux host: MSS, SACK permitted,
// timestamps, window scale 7.
func synOpts(tsval, tsecr uint32) []byte {
	return craft.Options(craft.MSS(1460), craft.SACKPerm(), craft.Timestamp(tsval, tsecr), craft.NOP(), craft.WScale(7))
}

// syn sends the client's SYN.
func (k *talk) syn() int {
	k.c = talkCISN + 1
	return k.send(true, craft.TCP{Seq: talkCISN, Flags: packet.SYN, Window: 64240, Options: synOpts(1000, 0)})
}

// synAck sends the server's SYN-ACK answering the SYN.
func (k *talk) synAck() int {
	k.s = talkSISN + 1
	return k.send(false, craft.TCP{Seq: talkSISN, Ack: k.c, Flags: packet.SYN | packet.ACK, Window: 65160, Options: synOpts(5000, 1000)})
}

// handshake sends SYN, SYN-ACK and the third ACK, 1 ms apart.
func (k *talk) handshake() {
	k.syn()
	k.after(time.Millisecond).synAck()
	k.after(time.Millisecond).ack(true)
}

// ack sends a bare ACK of everything the other side sent.
func (k *talk) ack(fromClient bool) int {
	seq, ack := k.s, k.c
	if fromClient {
		seq, ack = k.c, k.s
	}
	return k.send(fromClient, craft.TCP{Seq: seq, Ack: ack, Flags: packet.ACK})
}

// data sends n bytes of new data (PSH|ACK).
func (k *talk) data(fromClient bool, n int) int {
	seq, ack := &k.s, k.c
	if fromClient {
		seq, ack = &k.c, k.s
	}
	i := k.send(fromClient, craft.TCP{Seq: *seq, Ack: ack, Flags: packet.PSH | packet.ACK, Payload: make([]byte, n)})
	*seq += uint32(n)
	return i
}

// rst sends a reset (RST|ACK) at seq, acknowledging everything the other
// side sent; ttl 0 means 64 (the hosts' own TTL).
func (k *talk) rst(fromClient bool, seq uint32, ttl uint8) int {
	ack := k.c
	if fromClient {
		ack = k.s
	}
	return k.send(fromClient, craft.TCP{Seq: seq, Ack: ack, Flags: packet.RST | packet.ACK, TTL: ttl})
}

// traffic exchanges data for d: every 100 ms the client sends 1000 bytes
// and the server answers with 1400, acknowledging it.
func (k *talk) traffic(d time.Duration) {
	for end := k.t.Add(d); k.t.Before(end); {
		k.after(50*time.Millisecond).data(true, 1000)
		k.after(50*time.Millisecond).data(false, 1400)
	}
	k.after(time.Millisecond).ack(true)
}

// pcap returns the conversation as a raw-IP pcap with nanosecond
// timestamps.
func (k *talk) pcap(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	for _, f := range k.frames {
		ci := gopacket.CaptureInfo{Timestamp: f.at, CaptureLength: len(f.b), Length: len(f.b)}
		if err := w.WritePacket(ci, f.b); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// replayTalk replays k with policy pc and table tc and returns the frames
// as emitted (checked to be in capture order, one per frame) and the
// summary.
func replayTalk(t *testing.T, k *talk, pc policy.Config, tc conntrack.Config) ([]Frame, Summary) {
	t.Helper()
	var fs []Frame
	sum, err := Run(bytes.NewReader(k.pcap(t)), policy.NewEngine(pc, tc), func(f Frame) { fs = append(fs, f) })
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != len(k.frames) || sum.Frames != len(fs) {
		t.Fatalf("emitted %d frames, summary %d, capture %d", len(fs), sum.Frames, len(k.frames))
	}
	for i, f := range fs {
		if f.Index != i+1 {
			t.Fatalf("line %d is frame %d: output not in capture order", i+1, f.Index)
		}
		if f.Verdict == policy.Hold {
			t.Errorf("frame %d emitted with verdict hold", f.Index)
		}
		var m map[string]any
		if err := json.Unmarshal(f.AppendJSON(nil), &m); err != nil {
			t.Fatalf("frame %d: %v: %s", f.Index, err, f.AppendJSON(nil))
		}
	}
	return fs, sum
}

func injectionConfig(mode policy.InjectionMode) policy.Config {
	pc := policy.DefaultConfig()
	pc.Injection.Mode = mode
	return pc
}

// frameWant is what a test expects of one frame of a crafted capture.
type frameWant struct {
	frame   int
	what    string
	verdict policy.Verdict
	reason  policy.Reason
	state   conntrack.State
	held    time.Duration // -1: not held
	signals policy.Signals
}

func checkFrames(t *testing.T, fs []Frame, wants []frameWant) {
	t.Helper()
	for _, w := range wants {
		f := fs[w.frame-1]
		want(t, w.what, f, w.verdict, w.reason, w.state)
		if held := w.held >= 0; f.Held != held || (held && f.HeldNS != int64(w.held)) {
			t.Errorf("%s (frame %d): held %v for %v, want held %v for %v", w.what, f.Index, f.Held, time.Duration(f.HeldNS), held, w.held)
		}
		if f.Signals != w.signals {
			t.Errorf("%s (frame %d): signals %s, want %s", w.what, f.Index, f.Signals.AppendJSON(nil), w.signals.AppendJSON(nil))
		}
	}
}

const notHeld = -1

func sig(s policy.Signal) policy.Signals { return 1 << s }

// injectionCase is a crafted capture with its expectations in each mode.
type injectionCase struct {
	name   string
	clause string
	build  func(k *talk) map[string]int
	// hold and log give the expected frames by the labels build returns;
	// every other frame is accepted at once.
	hold, log func(ix map[string]int) []frameWant
}

var injectionCases = []injectionCase{
	{
		name:   "abort injected at RCV.NXT, its purported sender goes on",
		clause: "Weaver/Sommer/Paxson NDSS 2009 (data after reset); RFC 9293 3.10.7.4",
		build: func(k *talk) map[string]int {
			k.handshake()
			k.after(time.Millisecond).data(true, 300)
			k.after(time.Millisecond).data(false, 1000)
			// An observer on the path resets the client at its exact
			// RCV.NXT, in the server's name, from 3 hops farther.
			rst := k.after(5*time.Millisecond).rst(false, k.s, 61)
			// The server knows nothing of it: 20 ms later it sends more.
			more := k.after(20*time.Millisecond).data(false, 1000)
			ack := k.after(time.Millisecond).ack(true)
			return map[string]int{"rst": rst, "more": more, "ack": ack}
		},
		hold: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["rst"], "injected abort", policy.Drop, policy.ReasonRSTInjected, conntrack.StateEstablished, 20 * time.Millisecond, sig(policy.SignalTTLMismatch)},
				{ix["more"], "the server's next data", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, sig(policy.SignalTalkedAfterReset)},
				{ix["ack"], "the client's ACK", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, 0},
			}
		},
		log: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["rst"], "injected abort", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, notHeld, sig(policy.SignalTTLMismatch)},
				// The flow was closed and is revived by the reset's
				// own sender: the evidence, after the fact.
				{ix["more"], "the server's next data", policy.Accept, policy.ReasonTracked, conntrack.StateClosed, notHeld, sig(policy.SignalTalkedAfterReset)},
				{ix["ack"], "the client's ACK", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, 0},
			}
		},
	},
	{
		name:   "two injected resets at different numbers, one hold",
		clause: "Weaver/Sommer/Paxson NDSS 2009 (reset_seq_changed: injectors send several)",
		build: func(k *talk) map[string]int {
			k.handshake()
			k.after(time.Millisecond).data(false, 2000)
			first := k.after(time.Millisecond).rst(false, k.s, 0)
			second := k.after(time.Millisecond).rst(false, k.s+1460, 0)
			more := k.after(5*time.Millisecond).data(false, 100)
			return map[string]int{"first": first, "second": second, "more": more}
		},
		hold: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["first"], "first injected reset", policy.Drop, policy.ReasonRSTInjected, conntrack.StateEstablished, 6 * time.Millisecond, 0},
				{ix["second"], "second injected reset, held with it", policy.Drop, policy.ReasonRSTInjected, conntrack.StateEstablished, 5 * time.Millisecond, sig(policy.SignalResetSeqChanged)},
				{ix["more"], "the server's next data", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, sig(policy.SignalTalkedAfterReset)},
			}
		},
		log: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["first"], "first injected reset", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, notHeld, 0},
				// SPEC 4 row closed: only the accepted reset's number
				// (or a sender's exact one) passes once closed.
				{ix["second"], "second injected reset", policy.Drop, policy.ReasonRSTOutOfWindow, conntrack.StateClosed, notHeld, 0},
				{ix["more"], "the server's next data", policy.Accept, policy.ReasonTracked, conntrack.StateClosed, notHeld, sig(policy.SignalTalkedAfterReset)},
			}
		},
	},
	{
		name:   "genuine abort: nothing more from its sender",
		clause: "RFC 9293 3.10.7.4 (reset at RCV.NXT); RFC 5961 3.2",
		build: func(k *talk) map[string]int {
			k.handshake()
			k.after(time.Millisecond).data(true, 300)
			rst := k.after(time.Millisecond).rst(false, k.s, 0)
			// The client's data crossed the reset on the wire; it is
			// not the reset's sender's, so it contradicts nothing.
			crossed := k.after(5*time.Millisecond).data(true, 200)
			// The server, 25 ms away, answers that data on its closed
			// socket with a reset at SEG.ACK (RFC 9293 3.10.7.1): the
			// same number, 55 ms after the first, after its hold ended.
			answer := k.after(50*time.Millisecond).send(false, craft.TCP{Seq: k.s, Flags: packet.RST})
			return map[string]int{"rst": rst, "crossed": crossed, "answer": answer}
		},
		hold: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["rst"], "genuine abort, released", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, 50 * time.Millisecond, 0},
				{ix["crossed"], "client data while the reset is held", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, 0},
				// Released before this frame was decided: closed.
				{ix["answer"], "the server's answer to the data", policy.Accept, policy.ReasonRSTValid, conntrack.StateClosed, notHeld, 0},
			}
		},
		log: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["rst"], "genuine abort", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, notHeld, 0},
				// SPEC 4: data continuing a sequence space after a
				// reset revives the flow (the receiver's too: it cannot
				// be told from one that ignored the reset); evidence
				// only when the reset's sender does it.
				{ix["crossed"], "client data after the reset", policy.Accept, policy.ReasonTracked, conntrack.StateClosed, notHeld, 0},
				{ix["answer"], "the server's answer to the data", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, notHeld, 0},
			}
		},
	},
	{
		name:   "both sides abort at once",
		clause: "RFC 9293 3.10.7.4 (each reset at the other's RCV.NXT)",
		build: func(k *talk) map[string]int {
			k.handshake()
			k.after(time.Millisecond).data(true, 300)
			srv := k.after(time.Millisecond).rst(false, k.s, 0)
			cli := k.after(time.Millisecond).rst(true, k.c, 0)
			return map[string]int{"srv": srv, "cli": cli}
		},
		hold: func(ix map[string]int) []frameWant {
			return []frameWant{
				// The other side's reset is judged at once and closes
				// the flow; the held one is let through when its hold
				// ends (policy.holdRST).
				{ix["srv"], "the server's reset, held", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, 50 * time.Millisecond, 0},
				{ix["cli"], "the client's reset, judged at once", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, notHeld, 0},
			}
		},
		log: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["srv"], "the server's reset", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, notHeld, 0},
				// SPEC 4 row closed: the sender's own SND.NXT.
				{ix["cli"], "the client's reset", policy.Accept, policy.ReasonRSTValid, conntrack.StateClosed, notHeld, 0},
			}
		},
	},
	{
		name:   "genuine refusal in SYN-SENT, released at the end of the capture",
		clause: "RFC 9293 3.10.7.3 (RST/ACK acknowledging the SYN)",
		build: func(k *talk) map[string]int {
			k.syn()
			rst := k.after(time.Millisecond).send(false, craft.TCP{Ack: k.c, Flags: packet.RST | packet.ACK})
			return map[string]int{"rst": rst}
		},
		hold: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["rst"], "refusal", policy.Accept, policy.ReasonRSTValid, conntrack.StateSynSent, 50 * time.Millisecond, 0},
			}
		},
		log: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["rst"], "refusal", policy.Accept, policy.ReasonRSTValid, conntrack.StateSynSent, notHeld, 0},
			}
		},
	},
	{
		name:   "injected refusal, then the genuine SYN-ACK",
		clause: "RFC 9293 3.10.7.3; Weaver/Sommer/Paxson NDSS 2009 (the genuine answer races the injected one)",
		build: func(k *talk) map[string]int {
			k.syn()
			rst := k.after(300*time.Microsecond).send(false, craft.TCP{Ack: k.c, Flags: packet.RST | packet.ACK, TTL: 50})
			synack := k.after(10 * time.Millisecond).synAck()
			ack := k.after(time.Millisecond).ack(true)
			d1 := k.after(time.Millisecond).data(true, 500)
			d2 := k.after(time.Millisecond).data(false, 3000)
			return map[string]int{"rst": rst, "synack": synack, "ack": ack, "d1": d1, "d2": d2}
		},
		hold: func(ix map[string]int) []frameWant {
			return []frameWant{
				// No baseline TTL yet from the server: no TTL signal.
				{ix["rst"], "injected refusal", policy.Drop, policy.ReasonRSTInjected, conntrack.StateSynSent, 10 * time.Millisecond, 0},
				{ix["synack"], "genuine SYN-ACK", policy.Accept, policy.ReasonTracked, conntrack.StateSynSent, notHeld, sig(policy.SignalSynAckAfterRefusal)},
				{ix["ack"], "third ACK", policy.Accept, policy.ReasonTracked, conntrack.StateSynRecv, notHeld, 0},
				{ix["d1"], "client data", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, 0},
				{ix["d2"], "server data", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, 0},
			}
		},
		log: func(ix map[string]int) []frameWant {
			return []frameWant{
				{ix["rst"], "injected refusal", policy.Accept, policy.ReasonRSTValid, conntrack.StateSynSent, notHeld, 0},
				{ix["synack"], "genuine SYN-ACK revives the flow", policy.Accept, policy.ReasonTracked, conntrack.StateClosed, notHeld, sig(policy.SignalSynAckAfterRefusal)},
				{ix["ack"], "third ACK", policy.Accept, policy.ReasonTracked, conntrack.StateSynRecv, notHeld, 0},
				{ix["d1"], "client data", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, 0},
				{ix["d2"], "server data", policy.Accept, policy.ReasonTracked, conntrack.StateEstablished, notHeld, 0},
			}
		},
	},
}

// TestReplayInjection replays crafted captures of resets injected on the
// path and of genuine ones in [injection] mode "hold" and "log" (SPEC 12).
// In hold mode each held reset's line stays at its own frame and carries
// its final verdict: dropped as rst_injected when its purported sender
// contradicted it, else accepted when max_hold (50 ms) has passed; the
// frames after it see the flow as the daemon's would. In log mode nothing
// is dropped and the same evidence is reported.
func TestReplayInjection(t *testing.T) {
	for _, tc := range injectionCases {
		for _, mode := range []policy.InjectionMode{policy.InjectionHold, policy.InjectionLog} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				t.Logf("clause: %s", tc.clause)
				k := newTalk()
				ix := tc.build(k)
				fs, sum := replayTalk(t, k, injectionConfig(mode), conntrack.DefaultConfig())
				wants := tc.log(ix)
				if mode == policy.InjectionHold {
					wants = tc.hold(ix)
				}
				checkFrames(t, fs, wants)
				var drops, injected uint64
				labelled := map[int]bool{}
				for _, w := range wants {
					labelled[w.frame] = true
					if w.verdict == policy.Drop {
						drops++
					}
					if w.reason == policy.ReasonRSTInjected {
						injected++
					}
				}
				for _, f := range fs {
					if !labelled[f.Index] && (f.Verdict != policy.Accept || f.Held) {
						t.Errorf("frame %d (%s): %s/%s held %v, want accepted at once", f.Index, f.Flags.String(), f.Verdict, f.Reason, f.Held)
					}
				}
				if sum.Dropped() != drops || sum.Reasons[policy.ReasonRSTInjected] != injected || uint64(sum.HeldDropped) != injected {
					t.Errorf("summary: %d dropped, %d rst_injected, %d held dropped; want %d and %d", sum.Dropped(), sum.Reasons[policy.ReasonRSTInjected], sum.HeldDropped, drops, injected)
				}
				var n uint64
				for _, c := range sum.Reasons {
					n += c
				}
				if n != uint64(sum.Frames) {
					t.Errorf("the summary counts %d frames by reason, %d read", n, sum.Frames)
				}
			})
		}
	}
}

// TestReplayIgnoredRefusal is the ignored-refusal class of issue 8: a
// refusal (RST/ACK acknowledging the SYN) is accepted in SYN-SENT (RFC 9293
// 3.10.7.3) and the flow becomes closed. Here the client ignores it: the
// refusal carries a timestamp echo the client never sent, which Linux
// rejects before it looks at RST (RFC 7323 5 PAWS; tcp_rcv_synsent_state_
// process, PAWSActiveRejected), as it would when an injected refusal
// raced the genuine SYN-ACK and lost. The real SYN-ACK, handshake and data
// follow, and the flow must be tracked as the live connection it is: the
// genuine resets of both sides at their exact RCV.NXT pass (RFC 9293
// 3.10.7.4, RFC 5961 3.2), forged ones 50 MB outside the real windows are
// dropped, right away, after the connection idled longer than the closed
// timeout, and after 30 s of traffic (the sequence numbers cross 2^32).
func TestReplayIgnoredRefusal(t *testing.T) {
	tc := conntrack.DefaultConfig() // closed: 10 s
	preludes := []struct {
		name string
		run  func(k *talk)
	}{
		{"right after the handshake", func(k *talk) {
			k.after(time.Millisecond).data(true, 700)
			k.after(time.Millisecond).data(false, 5000)
		}},
		{"after idling longer than the closed timeout", func(k *talk) {
			k.traffic(time.Second)
			k.after(tc.Timeouts.Closed + 5*time.Second)
		}},
		{"after 30 s of traffic", func(k *talk) {
			k.traffic(30 * time.Second)
		}},
	}
	modes := []policy.InjectionMode{policy.InjectionLog, policy.InjectionOff, policy.InjectionHold}
	for _, pre := range preludes {
		for _, genuineFromClient := range []bool{false, true} {
			for _, mode := range modes {
				who := "server"
				if genuineFromClient {
					who = "client"
				}
				t.Run(pre.name+"/genuine reset from the "+who+"/"+mode.String(), func(t *testing.T) {
					k := newTalk()
					k.syn()
					refusal := k.after(200*time.Microsecond).send(false, craft.TCP{Ack: k.c, Flags: packet.RST | packet.ACK,
						Options: craft.Options(craft.NOP(), craft.NOP(), craft.Timestamp(77, 0xdead))})
					synack := k.after(2 * time.Millisecond).synAck()
					third := k.after(time.Millisecond).ack(true)
					pre.run(k)
					c0, s0 := k.c, k.s
					// Forged in each side's name, 50 MB from the real
					// numbers: far outside any window (RFC 9293 3.10.7.4).
					forgedS := k.after(time.Millisecond).rst(false, k.s+50<<20, 0)
					forgedC := k.after(time.Millisecond).rst(true, k.c-50<<20, 0)
					seq := k.s
					if genuineFromClient {
						seq = k.c
					}
					genuine := k.after(time.Millisecond).rst(genuineFromClient, seq, 0)
					fs, sum := replayTalk(t, k, injectionConfig(mode), tc)

					refusalWant := frameWant{refusal, "refusal the client ignored (PAWS)", policy.Accept, policy.ReasonRSTValid, conntrack.StateSynSent, notHeld, 0}
					synackWant := frameWant{synack, "the genuine SYN-ACK", policy.Accept, policy.ReasonTracked, conntrack.StateClosed, notHeld, 0}
					genuineWant := frameWant{genuine, "the " + who + "'s genuine reset at RCV.NXT", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, notHeld, 0}
					switch mode {
					case policy.InjectionLog:
						synackWant.signals = sig(policy.SignalSynAckAfterRefusal)
					case policy.InjectionHold:
						// Held; the SYN-ACK contradicts it.
						refusalWant.verdict, refusalWant.reason, refusalWant.held = policy.Drop, policy.ReasonRSTInjected, 2*time.Millisecond
						synackWant.state, synackWant.signals = conntrack.StateSynSent, sig(policy.SignalSynAckAfterRefusal)
						genuineWant.held = 50 * time.Millisecond // released at the end of the capture
					}
					checkFrames(t, fs, []frameWant{
						refusalWant, synackWant,
						{third, "third ACK", policy.Accept, policy.ReasonTracked, conntrack.StateSynRecv, notHeld, 0},
						{forgedS, "forged reset 50 MB ahead of the client's RCV.NXT", policy.Drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished, notHeld, 0},
						{forgedC, "forged reset 50 MB behind the server's RCV.NXT", policy.Drop, policy.ReasonRSTOutOfWindow, conntrack.StateEstablished, notHeld, 0},
						genuineWant,
					})
					for _, f := range fs[third : forgedS-1] {
						if f.Verdict != policy.Accept || f.Reason != policy.ReasonTracked || f.State != conntrack.StateEstablished {
							t.Errorf("frame %d (%s len %d): %s/%s before %s, want tracked in established", f.Index, f.Flags.String(), f.Len, f.Verdict, f.Reason, f.State)
						}
					}
					if sum.FlowsCreated != 1 {
						t.Errorf("%d flows created, want 1 (the flow never expired into a pickup)", sum.FlowsCreated)
					}
					if c0 >= talkCISN && s0 >= talkSISN {
						t.Fatalf("neither side's sequence numbers crossed 2^32 (client %d, server %d)", c0, s0)
					}
					if fs[forgedS-1].Window && inRange(fs[forgedS-1].Seq, fs[forgedS-1].WinLo, fs[forgedS-1].WinHi) {
						t.Errorf("forged reset inside its reported window [%d, %d)", fs[forgedS-1].WinLo, fs[forgedS-1].WinHi)
					}
				})
			}
		}
	}
}

// merge returns the frames of several conversations as one capture, in
// capture-time order.
func merge(ks ...*talk) *talk {
	out := newTalk()
	for _, k := range ks {
		out.frames = append(out.frames, k.frames...)
	}
	slices.SortStableFunc(out.frames, func(a, b timedPacket) int { return a.at.Compare(b.at) })
	return out
}

// TestReplayMaxHeld: at most [injection] max_held resets wait at once
// (Options.MaxHeld, as the daemon's queue holds at most that many); with
// that many held the engine judges the next valid reset at once
// (policy.HoldFull) and counts it.
func TestReplayMaxHeld(t *testing.T) {
	a, b := newTalk(), newTalk()
	b.cli = netip.MustParseAddrPort("192.0.2.1:40001")
	b.after(500 * time.Microsecond)
	a.handshake()
	b.handshake()
	a.after(10*time.Millisecond).rst(false, a.s, 0)
	b.after(12*time.Millisecond).rst(false, b.s, 0)
	k := merge(a, b)
	ra, rb := 7, 8 // the resets' positions once merged (checked below)
	for _, tc := range []struct {
		maxHeld int
		heldB   bool
	}{
		{1, false},
		{2, true},
	} {
		t.Run(strconv.Itoa(tc.maxHeld), func(t *testing.T) {
			eng := policy.NewEngine(injectionConfig(policy.InjectionHold), conntrack.DefaultConfig())
			var fs []Frame
			sum, err := RunOptions(bytes.NewReader(k.pcap(t)), eng, Options{MaxHeld: tc.maxHeld}, func(f Frame) { fs = append(fs, f) })
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) != 8 || fs[ra-1].Flags&packet.RST == 0 || fs[rb-1].Flags&packet.RST == 0 || fs[ra-1].Src.Port() != 443 || fs[rb-1].Dst.Port() != 40001 {
				t.Fatalf("unexpected capture layout: %d frames", len(fs))
			}
			for i, f := range fs {
				if f.Index != i+1 || f.Verdict != policy.Accept {
					t.Errorf("line %d: frame %d %s/%s", i+1, f.Index, f.Verdict, f.Reason)
				}
			}
			heldB := time.Duration(-1)
			if tc.heldB {
				heldB = 50 * time.Millisecond
			}
			checkFrames(t, fs, []frameWant{
				{ra, "first reset, held", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, 50 * time.Millisecond, 0},
				{rb, "second reset", policy.Accept, policy.ReasonRSTValid, conntrack.StateEstablished, heldB, 0},
			})
			full := uint64(1)
			if tc.heldB {
				full = 0
			}
			if n := eng.Stats().HoldFull.Load(); n != full {
				t.Errorf("HoldFull %d, want %d", n, full)
			}
			if want := 1 + int(1-full); sum.Held != want || sum.HeldDropped != 0 {
				t.Errorf("summary: %d held, %d dropped; want %d, 0", sum.Held, sum.HeldDropped, want)
			}
		})
	}
}
