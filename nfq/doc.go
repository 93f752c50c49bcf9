// Package nfq is rstguard's only kernel I/O: it binds NFQUEUE queues over
// mdlayher/netlink sockets, runs one worker (one goroutine, one
// policy.Engine shard) per queue, and gives every packet its verdict. It
// imports the engine packages (policy, conntrack, packet) and nothing of the
// daemon (config, metrics, cmd).
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
// in the socket is flushed with NF_DROP. So the worker stops differently: it
// sets the queue's maximum length to 0 (new packets now take the fail-open
// path, accepted like bypass would, or dropped if the operator turned
// fail_open off), keeps reading and giving verdicts until /proc says
// queue_total is 0 (bounded by DrainTimeout), and only then unbinds and
// closes the socket. TestDrainOnStop shows it: a stop in the middle of a
// 4000-packet burst loses none, where unbinding at once (the library's own
// stop) lost about 255, the backlog in the socket.
//
// # The per-packet path, and why it is not go-nfqueue's
//
// go-nfqueue reads one message per recvmsg, peeks before every read to size
// a new buffer (mdlayher/netlink), parses attributes into freshly allocated
// slices and calls back once per packet: about 1.3 KB and two system calls
// per packet, and its RegisterWithErrorFunc binds the queue and starts that
// loop in one call. Under a SYN flood that capped rstguard at about 0.4 of
// a minimal C consumer, and the rest of the flood took the kernel's
// fail-open path unjudged. So the worker owns the per-packet path:
//
//   - recv.go: one recvmmsg reads up to maxBurst (64) datagrams into
//     preallocated slots (MSG_DONTWAIT; when the socket is empty the
//     goroutine parks in the runtime poller through the socket's RawConn,
//     which also carries the read deadlines used to stop and drain).
//   - msg.go: each message is parsed in place (packet id, hw protocol,
//     hook, mark, payload, cap length, NFQA_SKB_INFO flags), every length
//     checked; nothing is copied or allocated.
//   - burst.go: each packet is decided in id order and its verdict
//     recorded; a run of accepts with one resulting mark becomes one
//     NFQNL_MSG_VERDICT_BATCH, a drop or another mark an individual
//     NFQNL_MSG_VERDICT, and every verdict of the burst leaves in one
//     sendto (netlink_rcv_skb walks every message of a datagram).
//   - verdict.go, bind.go: the verdict and configuration messages are built
//     by hand into buffers the worker owns. The bind is one message
//     (NFQA_CFG_CMD BIND, PARAMS, QUEUE_MAXLEN, FLAGS/MASK, which
//     nfqnl_recv_config applies in that order), and its acknowledgement is
//     read by the same receive path, so packets that arrive before it get
//     their verdicts instead of failing the bind as they fail go-nfqueue's
//     Execute.
//
// mdlayher/netlink still owns the socket (creation, the runtime poller,
// deadlines, options, the receive buffer). go-nfqueue remains the reference
// the package is measured against (BenchmarkLibraryVerdict; bench/nfqaccept
// is the tuned go-nfqueue accept-all of the gateway benchmark).
//
// A message without a payload, or cut short by MSG_TRUNC, and a packet whose
// decision panicked, are accepted without the judged mark (Stats.Unjudged):
// the guard rule counts them as unjudged and drops them if they are resets.
//
// # Marks
//
// NFQA_MARK in a verdict replaces the skb mark whole (nfqnl_recv_verdict),
// so the worker reads the packet's mark from its NFQA_MARK attribute (absent
// means 0) and writes back Config.Judged.Apply of it: (old &^ mask) | value.
// MarkAccept and MarkDrop keep their meaning (the whole mark), and the
// judged bits are applied on top.
package nfq
