package conntrack

import (
	"testing"

	"github.com/rstguard/rstguard/packet"
)

// TestPeerTTL: each side keeps the TTL of its first accepted packet (its
// baseline) and of its latest one.
func TestPeerTTL(t *testing.T) {
	var f Flow
	for _, ttl := range []uint8{57, 57, 60} {
		p := packet.Parsed{Kind: packet.KindTCP, TTL: ttl, Flags: packet.ACK, Seq: 100, Ack: 5}
		f.update(&p, Original)
	}
	if first, last := f.Peer(Original).TTL(); first != 57 || last != 60 {
		t.Errorf("ttl first %d last %d, want 57 and 60", first, last)
	}
	if first, _ := f.Peer(Reply).TTL(); first != 0 {
		t.Errorf("the other side: %d", first)
	}
}
