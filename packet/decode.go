package packet

// Decode parses b, an IPv4 or IPv6 packet starting at the IP header, into p.
// wireLen is the packet's length on the wire when the caller holds only a
// prefix of it (NFQUEUE's copy range; the kernel's NFQA_CAP_LEN), or 0 when b
// is the whole packet. Decode never allocates and never panics; every
// outcome is a Kind.
func Decode(b []byte, wireLen int, p *Parsed) {
	// TODO(packet helper): implement.
	*p = Parsed{Kind: KindMalformed}
}
