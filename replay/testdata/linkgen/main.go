// Command linkgen writes the link-type test captures in replay/testdata
// (link-*.pcap) from two of the captures gen made from real Linux TCP:
//
//   - forged.pcapng (IPv4, Ethernet): the connection with forged resets;
//   - v6vlan.pcap (IPv6, Ethernet with an 802.1Q tag, headers only), into
//     which linkgen inserts a forged RST 2^31 beyond the client's RCV.NXT,
//     from the server's address and port, in the middle of the transfer.
//
// Each output holds the IP packets of one of them under another link
// header (tcpdump.org/linktypes.html):
//
//	link-null.pcap     DLT_NULL (0), IPv4: family 2 (AF_INET), IPv6 frames 30 (macOS), little endian
//	link-loop.pcap     DLT_LOOP (108), IPv6: family 24 (OpenBSD AF_INET6), network byte order
//	link-ipv4.pcap     LINKTYPE_IPV4 (228), IPv4 only
//	link-ipv6.pcap     LINKTYPE_IPV6 (229), IPv6 only
//	link-ppp.pcap      LINKTYPE_PPP (9), IPv6: ff 03 00 57 (RFC 1662 address/control, RFC 1661 protocol)
//	link-ppphdlc.pcap  LINKTYPE_PPP_HDLC (50), IPv4 (00 21) and IPv6 (00 57) after ff 03
//
// Frames without IP (ARP) are left out, as are frames of the other family
// for the single-family link types; link padding is trimmed and the original
// length kept, so headers-only frames stay headers only. It needs no root
// and is deterministic. From the repository root:
//
//	go run ./replay/testdata/linkgen            # reads and writes replay/testdata
//	go run ./replay/testdata/linkgen -dir DIR
//
// then `go test ./replay -run Golden -update` for the goldens of new
// captures (check that the existing goldens did not change).
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ipFrame is an IP packet of a source capture: its captured bytes and its
// length on the wire.
type ipFrame struct {
	ts   time.Time
	ip   []byte
	wire int
}

func (f ipFrame) version() byte { return f.ip[0] >> 4 }

func main() {
	dir := flag.String("dir", "replay/testdata", "directory with forged.pcapng and v6vlan.pcap, and for the output")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintf(os.Stderr, "linkgen: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	v4, err := readIP(filepath.Join(dir, "forged.pcapng"))
	if err != nil {
		return err
	}
	v6, err := readIP(filepath.Join(dir, "v6vlan.pcap"))
	if err != nil {
		return err
	}
	if v6, err = forgeRST6(v6); err != nil {
		return err
	}
	afNull := func(f ipFrame) []byte {
		af := uint32(2) // AF_INET
		if f.version() == 6 {
			af = 30 // AF_INET6 on macOS, where DLT_NULL captures of lo0 come from
		}
		return binary.LittleEndian.AppendUint32(nil, af)
	}
	afLoop := func(f ipFrame) []byte { return binary.BigEndian.AppendUint32(nil, 24) } // OpenBSD AF_INET6
	none := func(ipFrame) []byte { return nil }
	ppp := func(f ipFrame) []byte {
		if f.version() == 6 {
			return []byte{0xff, 0x03, 0x00, 0x57}
		}
		return []byte{0xff, 0x03, 0x00, 0x21}
	}
	for _, out := range []struct {
		file   string
		link   layers.LinkType
		frames []ipFrame
		family byte // 0: both
		header func(ipFrame) []byte
	}{
		{"link-null.pcap", layers.LinkTypeNull, v4, 0, afNull},
		{"link-loop.pcap", layers.LinkTypeLoop, v6, 0, afLoop},
		{"link-ipv4.pcap", layers.LinkTypeIPv4, v4, 4, none},
		{"link-ipv6.pcap", layers.LinkTypeIPv6, v6, 6, none},
		{"link-ppp.pcap", layers.LinkTypePPP, v6, 0, ppp},
		{"link-ppphdlc.pcap", layers.LinkTypePPP_HDLC, v4, 0, ppp},
	} {
		var buf bytes.Buffer
		w := pcapgo.NewWriterNanos(&buf)
		if err := w.WriteFileHeader(262144, out.link); err != nil {
			return err
		}
		n := 0
		for _, f := range out.frames {
			if out.family != 0 && f.version() != out.family {
				continue
			}
			h := out.header(f)
			data := append(h, f.ip...)
			ci := gopacket.CaptureInfo{Timestamp: f.ts, CaptureLength: len(data), Length: len(h) + f.wire}
			if err := w.WritePacket(ci, data); err != nil {
				return err
			}
			n++
		}
		if err := os.WriteFile(filepath.Join(dir, out.file), buf.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s: %d frames, %d bytes\n", out.file, n, buf.Len())
	}
	return nil
}

// readIP returns the IP packets of an Ethernet capture (pcap or pcapng),
// with 802.1Q tags and link padding removed.
func readIP(path string) ([]ipFrame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var src interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var lt layers.LinkType
	if binary.LittleEndian.Uint32(b) == 0x0A0D0D0A {
		r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, err
		}
		src, lt = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		src, lt = r, r.LinkType()
	}
	if lt != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("%s: link type %s, want Ethernet", path, lt)
	}
	var out []ipFrame
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		hdr := 14
		if len(data) < hdr {
			continue
		}
		et := binary.BigEndian.Uint16(data[12:14])
		for et == 0x8100 && len(data) >= hdr+4 {
			et = binary.BigEndian.Uint16(data[hdr+2 : hdr+4])
			hdr += 4
		}
		if et != 0x0800 && et != 0x86DD {
			continue
		}
		ip := append([]byte(nil), data[hdr:]...)
		wire := ci.Length - hdr
		var n int // the IP packet's own length
		if et == 0x0800 && len(ip) >= 4 {
			n = int(binary.BigEndian.Uint16(ip[2:4]))
		} else if len(ip) >= 6 {
			n = 40 + int(binary.BigEndian.Uint16(ip[4:6]))
		}
		if n > 0 && n < wire {
			wire = n // Ethernet padding
		}
		if len(ip) > wire {
			ip = ip[:wire]
		}
		out = append(out, ipFrame{ts: ci.Timestamp, ip: ip, wire: wire})
	}
}

// forgeRST6 inserts into an IPv6 connection a RST from the server (the
// SYN-ACK's sender) to the client, 2^31 beyond the client's RCV.NXT (the
// server's SND.NXT: far outside any window, RFC 9293 3.10.7.4), halfway
// between the server's fifth data segment and the frame after it.
func forgeRST6(fs []ipFrame) ([]ipFrame, error) {
	var (
		server, client   net.IP
		sport, cport     uint16
		sndNxt           uint32
		haveSYNACK       bool
		serverData, at   = 0, -1
		tcpOf            = func(f ipFrame) []byte { return f.ip[40:] }
		isTCP            = func(f ipFrame) bool { return f.version() == 6 && len(f.ip) >= 60 && f.ip[6] == 6 }
		payloadLen       = func(f ipFrame) uint32 { return uint32(binary.BigEndian.Uint16(f.ip[4:6])) - uint32(tcpOf(f)[12]>>4)*4 }
		flagSYN, flagACK = byte(0x02), byte(0x10)
	)
	for i, f := range fs {
		if !isTCP(f) {
			continue
		}
		t := tcpOf(f)
		flags := t[13]
		if !haveSYNACK && flags&(flagSYN|flagACK) == flagSYN|flagACK {
			haveSYNACK = true
			server, client = net.IP(f.ip[8:24]), net.IP(f.ip[24:40])
			sport, cport = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
			sndNxt = binary.BigEndian.Uint32(t[4:8]) + 1
			continue
		}
		if !haveSYNACK || !net.IP(f.ip[8:24]).Equal(server) {
			continue
		}
		if end := binary.BigEndian.Uint32(t[4:8]) + payloadLen(f); int32(end-sndNxt) > 0 {
			sndNxt = end
		}
		if payloadLen(f) > 0 {
			if serverData++; serverData == 5 {
				at = i
				break
			}
		}
	}
	if at < 0 || at+1 >= len(fs) {
		return nil, fmt.Errorf("v6vlan.pcap does not look as expected (SYN-ACK %v, %d server data segments)", haveSYNACK, serverData)
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: server, DstIP: client}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(cport), Seq: sndNxt + 1<<31, RST: true}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		return nil, err
	}
	b := append([]byte(nil), buf.Bytes()...)
	ts := fs[at].ts.Add(fs[at+1].ts.Sub(fs[at].ts) / 2)
	out := append(append(append([]ipFrame(nil), fs[:at+1]...), ipFrame{ts: ts, ip: b, wire: len(b)}), fs[at+1:]...)
	return out, nil
}
