// Package nfq is rstguard's only kernel I/O: it binds NFQUEUE queues with
// go-nfqueue, runs one worker (one goroutine, one policy.Engine shard) per
// queue, and gives every packet its verdict.
//
// The kernel's --queue-balance hashes both directions of a flow to the same
// queue, so each worker owns its flows without locks (SPEC section 2).
//
// # Shutdown, and what the kernel does with queued packets
//
// From net/netfilter/nfnetlink_queue.c (read for this design):
//   - Unbinding a queue (NFQNL_CFG_CMD_UNBIND) and closing the netlink socket
//     (NETLINK_URELEASE -> nfqnl_rcv_nl_event) both end in
//     __instance_destroy -> instance_destroy_rcu -> nfqnl_flush(inst, NULL, 0),
//     which reinjects every packet still waiting for a verdict with NF_DROP.
//     Packets in our socket's receive buffer that we have not read yet are
//     such packets: unbinding without draining would drop them.
//   - Once the instance is gone, nfqnl_enqueue_packet returns -ESRCH and a
//     rule with --queue-bypass (NF_VERDICT_FLAG_QUEUE_BYPASS) lets new
//     packets through unguarded; without bypass they are dropped.
//   - __nfqnl_enqueue_packet: when queue_total >= queue_maxlen the packet is
//     accepted (NFQA_CFG_F_FAIL_OPEN) or dropped and counted in
//     queue_dropped. NFQA_CFG_QUEUE_MAXLEN is taken as given, 0 included.
//   - A verdict (nfqnl_recv_verdict) dequeues its entry synchronously, so
//     queue_total in /proc counts exactly the packets still owed a verdict.
//
// go-nfqueue v2.1.0 on context cancel sets a past read deadline, leaves its
// receive loop at the next iteration and sends UNBIND: whatever sits unread
// in the socket is flushed with NF_DROP. So Run stops differently: it sets
// the queue's maximum length to 0 (new packets now take the fail-open path,
// accepted like bypass would, or dropped if the operator turned fail_open
// off), keeps reading and giving verdicts until /proc says queue_total is 0
// (bounded by DrainTimeout), and only then lets the library unbind.
// TestDrainOnStop shows it: a stop in the middle of a 4000-packet burst
// loses none, where unbinding at once (the library's own stop) lost about
// 255, the backlog in the socket.
//
// # The per-packet path
//
// Receiving still goes through go-nfqueue's RegisterWithErrorFunc callback
// (one recvmsg per packet, plus a MSG_PEEK to learn whether more wait).
// Verdicts do not: the worker builds NFQNL_MSG_VERDICT and
// NFQNL_MSG_VERDICT_BATCH messages by hand in a buffer it owns (verdict.go)
// and writes them on the socket's raw descriptor, obtained via SyscallConn,
// with one sendto. Two reasons: go-nfqueue allocates per verdict and has no
// batch verdict carrying a mark, and the judged mark (GUARD-DESIGN.md) puts
// a mark on every accepted packet. nfqnl_recv_verdict_batch applies the
// batch's verdict and mark to every packet up to its id, so a batch only
// spans consecutive accepts whose resulting marks are equal; any other
// verdict first sends the pending batch, in the same datagram (the kernel's
// netlink_rcv_skb walks every message of it). Opening, binding and the
// queue's configuration stay with go-nfqueue and mdlayher/netlink.
//
// # Marks
//
// NFQA_MARK in a verdict replaces the skb mark whole (nfqnl_recv_verdict),
// so the worker reads the packet's mark from its NFQA_MARK attribute (absent
// means 0) and writes back Config.Judged.Apply of it: (old &^ mask) | value.
// MarkAccept and MarkDrop keep their meaning (the whole mark), and the
// judged bits are applied on top.
package nfq
