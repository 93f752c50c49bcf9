//go:build linux

// Command gen regenerates the replay test captures in replay/testdata from
// real Linux TCP between two network namespaces (rgrp-c, the client, and
// rgrp-s, the server, joined by a veth pair), captured with tcpdump. It needs
// root, iproute2 and tcpdump. From the repository root:
//
//	sudo go run ./replay/testdata/gen            # writes replay/testdata/*.pcap*
//	sudo go run ./replay/testdata/gen -out DIR
//
// The captures are committed; the tests never run this. After regenerating,
// rewrite the golden output with `go test ./replay -run Golden -update` and
// check the diff.
//
// Addresses are documentation ranges only: 192.0.2.1 (client) and
// 192.0.2.2 (server), 2001:db8::1 and 2001:db8::2.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

const (
	nsClient = "rgrp-c"
	nsServer = "rgrp-s"
	ifClient = "rgrp-c0"
	ifServer = "rgrp-s0"
	vlanID   = 100

	client4 = "192.0.2.1"
	server4 = "192.0.2.2"
	client6 = "2001:db8::1"
	server6 = "2001:db8::2"

	port       = "8080"
	closedPort = "9"
	chunk      = 1000 // bytes per client write
)

// scenario is one capture.
type scenario struct {
	file   string
	server string   // server mode, "" for none
	client string   // client mode
	addr   string   // server address the client dials
	ecn    bool     // net.ipv4.tcp_ecn=1 in the client namespace
	dump   []string // tcpdump interface and options
	post   func(tmp, out string) error
}

func scenarios() []scenario {
	return []scenario{{
		// Handshake, 10 KB each way in 1000-byte writes, FIN close.
		// Ethernet, full frames.
		file: "normal.pcap", server: "echo", client: "echo", addr: server4 + ":" + port,
		dump: []string{"-i", ifClient},
	}, {
		// SYN to a closed port, RST/ACK back. Linux cooked v2 (-i any).
		file: "refused.pcap", client: "refused", addr: server4 + ":" + closedPort,
		dump: []string{"-i", "any", "-y", "LINUX_SLL2"},
	}, {
		// The server aborts with SO_LINGER 0 after echoing 5000 bytes.
		// Headers only (-s 96), converted to raw IP (LINKTYPE_RAW).
		file: "abort.pcap", server: "abort", client: "abort", addr: server4 + ":" + port,
		dump: []string{"-i", ifClient, "-s", "96"},
		post: toRawIP,
	}, {
		// IPv6, headers only (-s 128), every frame given an 802.1Q tag
		// (VLAN 100) afterwards: the kernels we generate on may lack the
		// 8021q module, and the tag is all the link layer adds.
		file: "v6vlan.pcap", server: "echo", client: "echo", addr: "[" + server6 + "]:" + port,
		dump: []string{"-i", ifClient, "-s", "128"},
		post: addVLAN,
	}, {
		// ECN-setup SYN (RFC 3168 6.1.1): the client has tcp_ecn=1, the
		// server the Linux default 2 (answers ECN). Linux cooked v1.
		file: "ecn.pcap", server: "echo", client: "short", addr: server4 + ":" + port, ecn: true,
		dump: []string{"-i", "any", "-y", "LINUX_SLL"},
	}, {
		// A transfer with a pause, into which forgeRSTs writes forged
		// resets; written as pcapng.
		file: "forged.pcapng", server: "echo", client: "pause", addr: server4 + ":" + port,
		dump: []string{"-i", ifClient},
		post: forgeRSTs,
	}}
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "peer" {
		os.Exit(peer(os.Args[2], os.Args[3], os.Args[4]))
	}
	out := flag.String("out", "replay/testdata", "directory for the captures")
	only := flag.String("only", "", "regenerate only this capture (file name)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatalf("gen needs root (network namespaces and tcpdump): sudo go run ./replay/testdata/gen")
	}
	for _, tool := range []string{"ip", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			fatalf("gen needs %s: apt-get install -y iproute2 tcpdump", tool)
		}
	}
	for _, sc := range scenarios() {
		if *only != "" && *only != sc.file {
			continue
		}
		if err := generate(sc, *out); err != nil {
			teardown()
			fatalf("%s: %v", sc.file, err)
		}
		fi, _ := os.Stat(filepath.Join(*out, sc.file))
		fmt.Printf("%s: %d bytes\n", sc.file, fi.Size())
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gen: "+format+"\n", args...)
	os.Exit(1)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func setup(sc scenario) error {
	teardown()
	cmds := [][]string{
		{"ip", "netns", "add", nsClient},
		{"ip", "netns", "add", nsServer},
		{"ip", "link", "add", ifClient, "netns", nsClient, "type", "veth", "peer", "name", ifServer, "netns", nsServer},
	}
	for _, x := range []struct{ ns, dev, a4, a6 string }{{nsClient, ifClient, client4, client6}, {nsServer, ifServer, server4, server6}} {
		cmds = append(cmds,
			[]string{"ip", "-n", x.ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", x.ns, "link", "set", x.dev, "up"},
			[]string{"ip", "-n", x.ns, "addr", "add", x.a4 + "/24", "dev", x.dev},
			[]string{"ip", "-n", x.ns, "addr", "add", x.a6 + "/64", "dev", x.dev, "nodad"})
	}
	if sc.ecn {
		cmds = append(cmds, []string{"ip", "netns", "exec", nsClient, "sysctl", "-qw", "net.ipv4.tcp_ecn=1"})
	}
	for _, c := range cmds {
		if err := run(c...); err != nil {
			return err
		}
	}
	time.Sleep(200 * time.Millisecond) // let the links settle before capturing
	return nil
}

func teardown() {
	for _, ns := range []string{nsClient, nsServer} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// generate captures one scenario into out/sc.file.
func generate(sc scenario, out string) error {
	if err := setup(sc); err != nil {
		return err
	}
	defer teardown()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp := filepath.Join(os.TempDir(), "rgrp-"+sc.file+".pcap")
	defer os.Remove(tmp)

	args := append([]string{"netns", "exec", nsClient, "tcpdump", "-Z", "root", "-n", "-U", "--immediate-mode", "-w", tmp}, sc.dump...)
	dump := exec.Command("ip", args...)
	stderr, _ := dump.StderrPipe()
	if err := dump.Start(); err != nil {
		return err
	}
	defer func() { _ = dump.Process.Kill(); _ = dump.Wait() }()
	if err := waitFor(stderr, "listening on", 5*time.Second); err != nil {
		return fmt.Errorf("tcpdump: %w", err)
	}

	var srv *exec.Cmd
	if sc.server != "" {
		srv = exec.Command("ip", "netns", "exec", nsServer, self, "peer", "server", sc.server, sc.addr)
		srv.Stderr = os.Stderr
		so, _ := srv.StdoutPipe()
		if err := srv.Start(); err != nil {
			return err
		}
		defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
		if err := waitFor(so, "ready", 5*time.Second); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	cli := exec.Command("ip", "netns", "exec", nsClient, self, "peer", "client", sc.client, sc.addr)
	cli.Stdout, cli.Stderr = os.Stderr, os.Stderr
	done := make(chan error, 1)
	if err := cli.Start(); err != nil {
		return err
	}
	go func() { done <- cli.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
	case <-time.After(20 * time.Second):
		_ = cli.Process.Kill()
		return errors.New("client: timed out after 20s")
	}
	if srv != nil {
		sd := make(chan error, 1)
		go func() { sd <- srv.Wait() }()
		select {
		case err := <-sd:
			if err != nil {
				return fmt.Errorf("server: %w", err)
			}
		case <-time.After(5 * time.Second):
			return errors.New("server: did not finish within 5s")
		}
	}
	time.Sleep(300 * time.Millisecond) // the last ACK
	_ = dump.Process.Signal(syscall.SIGINT)
	_ = dump.Wait()

	dst := filepath.Join(out, sc.file)
	if sc.post != nil {
		return sc.post(tmp, dst)
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// waitFor reads lines from r until one contains s.
func waitFor(r io.Reader, s string, d time.Duration) error {
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				found <- true
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			return fmt.Errorf("exited before printing %q", s)
		}
		return nil
	case <-time.After(d):
		return fmt.Errorf("no %q within %s", s, d)
	}
}

// peer runs one endpoint inside a namespace.
func peer(role, mode, addr string) int {
	var err error
	if role == "server" {
		err = server(mode, addr)
	} else {
		err = client(mode, addr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peer %s %s: %v\n", role, mode, err)
		return 1
	}
	return 0
}

func server(mode, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	ln.Close()
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	switch mode {
	case "echo":
		// Echo until the client's FIN, then close: FIN back.
		if _, err := io.Copy(tc, tc); err != nil {
			return err
		}
		return tc.Close()
	case "abort":
		// RFC 9293 3.6 / SO_LINGER 0: close with a reset (Linux
		// tcp_disconnect sends RST|ACK at SND.NXT).
		buf := make([]byte, 5*chunk)
		if _, err := io.ReadFull(tc, buf); err != nil {
			return err
		}
		if _, err := tc.Write(buf); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		if err := tc.SetLinger(0); err != nil {
			return err
		}
		return tc.Close()
	}
	return fmt.Errorf("unknown server mode %q", mode)
}

func client(mode, addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if mode == "refused" {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		return fmt.Errorf("wanted connection refused, got %v", err)
	}
	if err != nil {
		return err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	data := make([]byte, chunk)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	switch mode {
	case "abort":
		for range 5 {
			if _, err := tc.Write(data); err != nil {
				return err
			}
		}
		if _, err := io.ReadFull(tc, make([]byte, 5*chunk)); err != nil {
			return err
		}
		_, err := tc.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			return fmt.Errorf("wanted connection reset, got %v", err)
		}
		return nil
	case "echo", "pause", "short":
		n := 10
		if mode == "short" {
			n = 2
		}
		got := make(chan int64, 1)
		go func() { k, _ := io.Copy(io.Discard, tc); got <- k }()
		for i := range n {
			if _, err := tc.Write(data); err != nil {
				return err
			}
			d := 20 * time.Millisecond
			if mode == "pause" && i == n/2-1 {
				d = 400 * time.Millisecond // room for the forged resets
			}
			time.Sleep(d)
		}
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		if k := <-got; k != int64(n*chunk) {
			return fmt.Errorf("echoed %d bytes, sent %d", k, n*chunk)
		}
		return tc.Close()
	}
	return fmt.Errorf("unknown client mode %q", mode)
}

// frame is one captured frame.
type frame struct {
	ci   gopacket.CaptureInfo
	data []byte
	note string // a pcapng comment for forged frames
}

func readPcap(path string) ([]frame, layers.LinkType, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, 0, err
	}
	var fs []frame
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return fs, r.LinkType(), nil
		}
		if err != nil {
			return nil, 0, err
		}
		fs = append(fs, frame{ci: ci, data: data})
	}
}

// toRawIP rewrites an Ethernet capture as LINKTYPE_RAW (101): the IP
// packets without link header; frames without IP are left out.
func toRawIP(src, dst string) error {
	fs, lt, err := readPcap(src)
	if err != nil {
		return err
	}
	if lt != layers.LinkTypeEthernet {
		return fmt.Errorf("toRawIP: link type %s, want Ethernet", lt)
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return err
	}
	for _, f := range fs {
		if len(f.data) < 14 {
			continue
		}
		if et := uint16(f.data[12])<<8 | uint16(f.data[13]); et != 0x0800 && et != 0x86DD {
			continue
		}
		ci := f.ci
		ci.CaptureLength -= 14
		ci.Length -= 14
		if err := w.WritePacket(ci, f.data[14:]); err != nil {
			return err
		}
	}
	return os.WriteFile(dst, buf.Bytes(), 0o644)
}

// addVLAN inserts an IEEE 802.1Q tag (TPID 0x8100, VLAN 100, priority 0)
// after the MAC addresses of every Ethernet frame.
func addVLAN(src, dst string) error {
	fs, lt, err := readPcap(src)
	if err != nil {
		return err
	}
	if lt != layers.LinkTypeEthernet {
		return fmt.Errorf("addVLAN: link type %s, want Ethernet", lt)
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for _, f := range fs {
		if len(f.data) < 14 {
			continue
		}
		b := make([]byte, 0, len(f.data)+4)
		b = append(b, f.data[:12]...)
		b = append(b, 0x81, 0x00, byte(vlanID>>8), byte(vlanID))
		b = append(b, f.data[12:]...)
		ci := f.ci
		ci.CaptureLength += 4
		ci.Length += 4
		if err := w.WritePacket(ci, b); err != nil {
			return err
		}
	}
	return os.WriteFile(dst, buf.Bytes(), 0o644)
}

// tcpInfo is what forgeRSTs needs to know of a captured frame.
type tcpInfo struct {
	eth *layers.Ethernet
	ip  *layers.IPv4
	tcp *layers.TCP
}

func decodeTCP(data []byte) (tcpInfo, bool) {
	pk := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	eth, _ := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	return tcpInfo{eth, ip, tcp}, eth != nil && ip != nil && tcp != nil
}

// forgeRSTs writes the capture as pcapng with three forged resets from
// the server's address and port to the client, inserted where an off-path
// attacker's would have arrived (each carries a pcapng comment):
//
//  1. between the client's SYN and the server's SYN-ACK: a RST|ACK whose
//     ACK does not acknowledge the SYN (RFC 9293 3.10.7.3; a blind
//     "connection refused");
//  2. in the client's pause: a RST 2^31 beyond the client's RCV.NXT, far
//     outside its window (RFC 9293 3.10.7.4);
//  3. in the same pause: a RST|ACK 1000 bytes beyond the client's RCV.NXT:
//     inside the window, not at RCV.NXT (RFC 5961 3.2: a host answers it
//     with a challenge ACK; rst_mode "window" passes it, "exact" drops it).
func forgeRSTs(src, dst string) error {
	fs, lt, err := readPcap(src)
	if err != nil {
		return err
	}
	if lt != layers.LinkTypeEthernet {
		return fmt.Errorf("forgeRSTs: link type %s, want Ethernet", lt)
	}
	srvIP := net.ParseIP(server4).To4()
	var (
		synIdx, synAckIdx = -1, -1
		clientISN         uint32
		sndNxt, srvAck    uint32 // the server's SND.NXT and last ACK so far
		sndNxtAt          = make([]uint32, len(fs))
		srvAckAt          = make([]uint32, len(fs))
		gapIdx, gapEnd    = -1, -1
		prevTCP           = -1
		gap               time.Duration
		template          tcpInfo // a server-to-client frame
	)
	for i, f := range fs {
		t, ok := decodeTCP(f.data)
		if !ok {
			continue
		}
		fromServer := t.ip.SrcIP.Equal(srvIP)
		switch {
		case t.tcp.SYN && !t.tcp.ACK && synIdx < 0:
			synIdx, clientISN = i, t.tcp.Seq
		case t.tcp.SYN && t.tcp.ACK && synAckIdx < 0:
			synAckIdx = i
		}
		if t.tcp.FIN {
			break
		}
		if fromServer {
			end := t.tcp.Seq + uint32(len(t.tcp.Payload))
			if t.tcp.SYN {
				end++
			}
			if synAckIdx == i || int32(end-sndNxt) > 0 {
				sndNxt = end
			}
			srvAck = t.tcp.Ack
			template = t
		}
		sndNxtAt[i], srvAckAt[i] = sndNxt, srvAck
		// The longest silence between two TCP frames of the data
		// phase (other frames, such as IPv6 neighbour discovery, may
		// fall into it).
		if synAckIdx >= 0 && prevTCP > synAckIdx+1 {
			if d := f.ci.Timestamp.Sub(fs[prevTCP].ci.Timestamp); d > gap {
				gap, gapIdx, gapEnd = d, prevTCP, i
			}
		}
		prevTCP = i
	}
	if synIdx < 0 || synAckIdx < 0 || gapIdx < 0 || gap < 200*time.Millisecond || template.tcp == nil {
		return fmt.Errorf("forgeRSTs: capture does not look as expected (SYN %d, SYN-ACK %d, pause after %d of %s)", synIdx, synAckIdx, gapIdx, gap)
	}
	// The server's SND.NXT at the pause: the server had echoed
	// everything, so it is also the client's RCV.NXT.
	at := func(i, j int, frac float64) time.Time {
		a, b := fs[i].ci.Timestamp, fs[j].ci.Timestamp
		return a.Add(time.Duration(float64(b.Sub(a)) * frac))
	}
	forged := []struct {
		synAnswer bool
		when      time.Time
		seq       uint32
		ack       uint32
		flags     string
		note      string
	}{
		{true, at(synIdx, synAckIdx, 0.5), 0, clientISN + 1 + 1000, "RA", "forged: RST|ACK answering the SYN with an ACK that does not acknowledge it (rst_syn_sent_bad_ack)"},
		{false, at(gapIdx, gapEnd, 0.3), sndNxtAt[gapIdx] + 1<<31, 0, "R", "forged: RST 2^31 beyond the client's RCV.NXT (rst_out_of_window)"},
		{false, at(gapIdx, gapEnd, 0.6), sndNxtAt[gapIdx] + 1000, srvAckAt[gapIdx], "RA", "forged: RST|ACK in the window, 1000 beyond RCV.NXT (window: rst_valid; exact: rst_not_exact)"},
	}
	var outFrames []frame
	k := 0
	for _, f := range append(fs, frame{ci: gopacket.CaptureInfo{Timestamp: time.Unix(1<<40, 0)}}) {
		// Each forged frame goes before the first frame captured after
		// it (the sentinel above ends the loop).
		for k < len(forged) && forged[k].when.Before(f.ci.Timestamp) {
			fg := forged[k]
			k++
			eth := &layers.Ethernet{SrcMAC: template.eth.SrcMAC, DstMAC: template.eth.DstMAC, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Id: 0x5a5a,
				SrcIP: template.ip.SrcIP, DstIP: template.ip.DstIP}
			tcp := &layers.TCP{SrcPort: template.tcp.SrcPort, DstPort: template.tcp.DstPort,
				Seq: fg.seq, Ack: fg.ack, RST: true, ACK: fg.flags == "RA"}
			if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
				return err
			}
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
				return err
			}
			b := append([]byte(nil), buf.Bytes()...)
			outFrames = append(outFrames, frame{
				ci:   gopacket.CaptureInfo{Timestamp: fg.when, CaptureLength: len(b), Length: len(b)},
				data: b, note: fg.note,
			})
		}
		if f.data != nil {
			outFrames = append(outFrames, f)
		}
	}
	var out bytes.Buffer
	intf := pcapgo.DefaultNgInterface
	intf.LinkType = layers.LinkTypeEthernet
	intf.Name = ifClient
	intf.SnapLength = 262144
	w, err := pcapgo.NewNgWriterInterface(&out, intf, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		OS: "Linux", Application: "rstguard replay/testdata/gen",
		Comment: "real Linux TCP between namespaces (tcpdump), with forged resets inserted",
	}})
	if err != nil {
		return err
	}
	for _, f := range outFrames {
		var opts pcapgo.NgPacketOptions
		if f.note != "" {
			opts.Comments = []string{f.note}
		}
		if err := w.WritePacketWithOptions(f.ci, f.data, opts); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return os.WriteFile(dst, out.Bytes(), 0o644)
}
