package replay

import "github.com/rstguard/rstguard/packet"

// flagsString renders TCP flags as the replay output does: the letters
// S F R P A U E C in that order, then N for the AE bit and X for any
// reserved bit; no flags is "".
//
// TODO: use packet.Flags.String once the packet package has it (same
// format); this copy only keeps the build green until then.
func flagsString(f packet.Flags) string {
	const letters = "SFRPAUEC"
	order := [...]packet.Flags{packet.SYN, packet.FIN, packet.RST, packet.PSH, packet.ACK, packet.URG, packet.ECE, packet.CWR}
	var buf [10]byte
	n := 0
	for i, m := range order {
		if f&m != 0 {
			buf[n] = letters[i]
			n++
		}
	}
	if f&packet.AE != 0 {
		buf[n] = 'N'
		n++
	}
	if f&packet.Reserved != 0 {
		buf[n] = 'X'
		n++
	}
	return string(buf[:n])
}
