/*
 * nfqaccept-c: the smallest accept-all NFQUEUE consumer we know how to
 * write, as the packets-per-second ceiling for bench/gateway -mode pps
 * (issue 7 item 6).
 *
 *   cc -O2 -Wall -o nfqaccept-c nfqaccept.c -lnetfilter_queue -lmnl
 *   nfqaccept-c -q QUEUE [-r COPY_RANGE] [-l MAXLEN] [-b RCVBUF] [-o FILE]
 *
 * One netlink socket bound to one queue with: headers-only copy
 * (NFQNL_COPY_PACKET, -r bytes, default 128), NFQA_CFG_F_GSO (no
 * segmentation for user space), NFQA_CFG_F_FAIL_OPEN (a full queue lets
 * packets through instead of dropping them), NETLINK_NO_ENOBUFS and an
 * 8 MiB receive buffer (SO_RCVBUFFORCE). Each loop receives up to 64
 * messages with one recvmmsg(MSG_WAITFORONE) and answers them with one
 * NFQNL_MSG_VERDICT_BATCH accepting every id up to the highest one seen
 * (ids are per queue and increasing, and this is the queue's only reader).
 *
 * It prints "ready" on standard output once the queue is bound and, on
 * SIGINT/SIGTERM, one JSON line {"packets":N,"verdicts":V,"verdict_errors":W,"recv_errors":E}
 * (the same keys as bench/nfqaccept), then exits 0. With -o FILE it also
 * rewrites FILE with that line about once a second.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define BATCH 64
#define SLOT 4096 /* one queued packet message: headers, attributes, copy */

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static unsigned long long packets, verdicts, verdict_errors, recv_errors;

static void die(const char *what)
{
	fprintf(stderr, "nfqaccept-c: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* send_cfg sends one queue configuration message and waits for its ack. */
static void send_cfg(struct mnl_socket *nl, struct nlmsghdr *nlh, const char *what)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	uint32_t portid = mnl_socket_get_portid(nl);

	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = (uint32_t)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		die(what);
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
		if (n < 0)
			die(what);
		int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, NULL, NULL);
		if (r < 0) {
			fprintf(stderr, "nfqaccept-c: %s: %s (is another program bound to this queue? are you root in the right namespace?)\n",
				what, strerror(errno));
			exit(1);
		}
		if (r == MNL_CB_STOP)
			return;
	}
}

/* packet_id returns the id of one NFQNL_MSG_PACKET message, or 0. */
static uint32_t packet_id(const struct nlmsghdr *nlh)
{
	const struct nlattr *a;

	if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFQNL_MSG_PACKET)
		return 0;
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) == NFQA_PACKET_HDR &&
		    mnl_attr_get_payload_len(a) >= sizeof(struct nfqnl_msg_packet_hdr)) {
			const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(a);
			return ntohl(ph->packet_id);
		}
	}
	return 0;
}

static void write_counts(FILE *f)
{
	fprintf(f, "{\"packets\":%llu,\"verdicts\":%llu,\"verdict_errors\":%llu,\"recv_errors\":%llu}\n",
		packets, verdicts, verdict_errors, recv_errors);
}

static void write_file(const char *path)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	write_counts(f);
	if (fclose(f) == 0)
		rename(tmp, path);
}

static void usage(void)
{
	fprintf(stderr, "usage: nfqaccept-c -q QUEUE [-r COPY_RANGE 40..65535] [-l MAXLEN] [-b RCVBUF] [-o FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long queue = -1, range = 128, maxlen = 1024, rcvbuf = 8 << 20;
	const char *outfile = NULL;
	int opt;

	while ((opt = getopt(argc, argv, "q:r:l:b:o:")) != -1) {
		char *end;
		long *dst;
		switch (opt) {
		case 'q': dst = &queue; break;
		case 'r': dst = &range; break;
		case 'l': dst = &maxlen; break;
		case 'b': dst = &rcvbuf; break;
		case 'o': outfile = optarg; continue;
		default: usage();
		}
		*dst = strtol(optarg, &end, 10);
		if (*end != '\0' || end == optarg)
			usage();
	}
	if (queue < 0 || queue > 65535 || range < 40 || range > 65535 ||
	    maxlen < 1 || maxlen > 1048576 || rcvbuf < 4096 || optind != argc)
		usage();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal; /* no SA_RESTART: recvmmsg returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
	if (!nl)
		die("netlink socket");
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		die("netlink bind");
	int fd = mnl_socket_get_fd(nl);
	int one = 1, rb = (int)rcvbuf;
	if (setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one) < 0)
		die("NETLINK_NO_ENOBUFS");
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb) < 0)
		die("SO_RCVBUFFORCE (needs CAP_NET_ADMIN)");

	char cbuf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = nfq_nlmsg_put(cbuf, NFQNL_MSG_CONFIG, (uint32_t)queue);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	send_cfg(nl, nlh, "bind queue");

	nlh = nfq_nlmsg_put(cbuf, NFQNL_MSG_CONFIG, (uint32_t)queue);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)range);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, (uint32_t)maxlen);
	uint32_t flags = htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN);
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, flags);
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, flags);
	send_cfg(nl, nlh, "configure queue (copy range, max length, GSO, fail-open)");

	/* Wake at least once a second so -o stays fresh and a signal that
	 * lands between two receives is seen. */
	struct timeval tv = { .tv_sec = 1 };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
		die("SO_RCVTIMEO");

	static char bufs[BATCH][SLOT];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = SLOT;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	char vbuf[256];

	printf("ready\n");
	fflush(stdout);
	time_t next = time(NULL) + 1;
	while (!stop) {
		int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
				recv_errors++;
		}
		uint32_t maxid = 0;
		for (int i = 0; i < n; i++) {
			int len = (int)msgs[i].msg_len;
			for (struct nlmsghdr *m = (struct nlmsghdr *)bufs[i]; mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
				uint32_t id = packet_id(m);
				if (id) {
					packets++;
					if (id > maxid)
						maxid = id;
				}
			}
		}
		if (maxid) {
			nlh = nfq_nlmsg_put(vbuf, NFQNL_MSG_VERDICT_BATCH, (uint32_t)queue);
			nfq_nlmsg_verdict_put(nlh, (int)maxid, NF_ACCEPT);
			if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
				verdict_errors++;
			else
				verdicts++;
		}
		if (outfile && time(NULL) >= next) {
			write_file(outfile);
			next = time(NULL) + 1;
		}
	}
	if (outfile)
		write_file(outfile);
	write_counts(stdout);
	fflush(stdout);
	mnl_socket_close(nl);
	return 0;
}
