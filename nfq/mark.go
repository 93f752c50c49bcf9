package nfq

// Mark is a value/mask pair for the packet mark (GUARD-DESIGN.md): the
// kernel's NFQA_MARK in a verdict replaces the whole skb mark
// (nfqnl_recv_verdict: entry->skb->mark = ntohl(nla_get_be32(...))), so the
// worker reads each packet's mark from its NFQA_MARK attribute (0 when
// absent) and writes back Apply(old). A zero Mask leaves the mark alone.
type Mark struct{ Value, Mask uint32 }

// Apply returns old with the Mask bits replaced by Value.
func (m Mark) Apply(old uint32) uint32 { return old&^m.Mask | m.Value }

// pack stores m in one word for atomic use by Reconfigure and the worker.
func (m Mark) pack() uint64 { return uint64(m.Value)<<32 | uint64(m.Mask) }

func unpackMark(v uint64) Mark { return Mark{Value: uint32(v >> 32), Mask: uint32(v)} }
