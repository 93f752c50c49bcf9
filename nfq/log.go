package nfq

import (
	"context"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/rstguard/rstguard/packet"
	"github.com/rstguard/rstguard/policy"
)

const unixAFInet = unix.AF_INET // the nfgenmsg family of verdicts (unused by the kernel)

// logAllowed reports whether a per-packet line at level may be written at
// now: the level is enabled and the rate limit has room (a line the limit
// holds back is counted).
func (w *Worker) logAllowed(level slog.Level, now int64) bool {
	if !w.log.Enabled(context.Background(), level) {
		return false
	}
	if !w.lim.allow(now) {
		w.stats.LogSuppressed.Add(1)
		return false
	}
	return true
}

func (w *Worker) logLimited(level slog.Level, msg string, args ...any) {
	if w.logAllowed(level, w.now()) {
		w.log.Log(context.Background(), level, msg, args...)
	}
}

// logLevel is the level of a decision's line: drops of malformed packets and
// of out-of-window segments that are not resets are routine (debug);
// dropped resets and RFC 3360 violators are warnings.
func logLevel(r policy.Reason) slog.Level {
	switch r {
	case policy.ReasonMalformed, policy.ReasonOutOfWindow:
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// logDecision writes the line for a dropped packet or a reset answering a
// reserved-flag SYN, from the packet as decoded for the decision.
func (w *Worker) logDecision(p *packet.Parsed, d *policy.Decision, now int64) {
	level := logLevel(d.Reason)
	if !w.logAllowed(level, now) {
		return
	}
	attrs := []slog.Attr{
		slog.String("reason", d.Reason.String()),
		slog.String("state", d.State.String()),
	}
	if p.Kind == packet.KindTCP {
		attrs = append(attrs,
			slog.String("src", p.SrcAddrPort().String()),
			slog.String("dst", p.DstAddrPort().String()),
			slog.Uint64("seq", uint64(p.Seq)), slog.Uint64("ack", uint64(p.Ack)),
			slog.Uint64("ttl", uint64(p.TTL)))
	}
	if d.Checked {
		attrs = append(attrs, slog.Uint64("window_lo", uint64(d.WinLo)), slog.Uint64("window_hi", uint64(d.WinHi)))
	}
	msg := "dropped packet"
	switch {
	case d.Reason == policy.ReasonRSTAnswersReservedSYN:
		// RFC 3360 2: a reset answering a SYN with ECN or reserved bits
		// is the mark of a middlebox or host that rejects them.
		msg = "reset answers a SYN that carried ECN or reserved bits (RFC 3360 violator upstream)"
		attrs = append(attrs, slog.String("peer", p.SrcAddrPort().Addr().String()),
			slog.String("syn_flags", policy.SYNFlagNames(d.SYNFlags)))
	case p.Kind == packet.KindTCP && p.Flags&packet.RST != 0:
		msg = "dropped reset"
	}
	if d.Verdict == policy.Drop && w.markDrop.Load() != 0 {
		msg += " (accepted with the mark_drop mark instead)"
	}
	w.log.LogAttrs(context.Background(), level, msg, attrs...)
}
