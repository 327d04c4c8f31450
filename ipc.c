/*
 * ipc.c - the one framing every msa process speaks.
 *
 * SOCK_SEQPACKET keeps record boundaries, so a frame is read whole in one
 * recvmsg and its descriptor cannot drift to another frame.  Nothing here
 * interprets payloads; the dispatch tables of each role do, after checking
 * lengths.
 */
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msa.h"

struct ipc_frame {
	struct ipc_frame *next;
	int fd;
	size_t len;
	unsigned char data[]; /* header + payload */
};

#define IPC_RBUF_SIZE (sizeof(struct ipc_hdr) + IPC_MAX_PAYLOAD)

void
ipc_socketpair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		fatal("socketpair");
}

void
ipc_init(struct ipc_chan *ch, int fd)
{
	memset(ch, 0, sizeof(*ch));
	ch->fd = fd;
	ch->rfd = -1;
	ch->rbuf = xmalloc(IPC_RBUF_SIZE);
}

static void
ipc_drop_received_fd(struct ipc_chan *ch)
{
	if (ch->rfd != -1) {
		(void)close(ch->rfd);
		ch->rfd = -1;
	}
}

/* Frames can carry passwords: never leave one in freed memory. */
static void
ipc_frame_free(struct ipc_frame *f)
{
	explicit_bzero(f->data, f->len);
	free(f);
}

void
ipc_close(struct ipc_chan *ch)
{
	struct ipc_frame *f, *next;

	for (f = ch->whead; f != NULL; f = next) {
		next = f->next;
		if (f->fd != -1)
			(void)close(f->fd);
		ipc_frame_free(f);
	}
	ipc_drop_received_fd(ch);
	explicit_bzero(ch->rbuf, IPC_RBUF_SIZE);
	free(ch->rbuf);
	if (ch->fd != -1)
		(void)close(ch->fd);
	memset(ch, 0, sizeof(*ch));
	ch->fd = ch->rfd = -1;
}

void
ipc_compose(struct ipc_chan *ch, uint32_t type, uint32_t peerid, int fd,
    const void *data, size_t len)
{
	struct ipc_frame *f;
	struct ipc_hdr hdr;

	if (len > IPC_MAX_PAYLOAD)
		fatalx("ipc_compose: type %u payload %zu too large", type, len);
	f = xmalloc(sizeof(*f) + sizeof(hdr) + len);
	memset(&hdr, 0, sizeof(hdr));
	hdr.type = type;
	hdr.len = (uint32_t)len;
	hdr.peerid = peerid;
	hdr.flags = fd >= 0 ? IPC_F_FD : 0;
	memcpy(f->data, &hdr, sizeof(hdr));
	if (len > 0)
		memcpy(f->data + sizeof(hdr), data, len);
	f->len = sizeof(hdr) + len;
	f->fd = fd >= 0 ? fd : -1;
	f->next = NULL;
	if (ch->wtail != NULL)
		ch->wtail->next = f;
	else
		ch->whead = f;
	ch->wtail = f;
	ch->wcount++;
}

static ssize_t
ipc_send_frame(int sock, const struct ipc_frame *f)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} cmsgbuf;
	struct iovec iov = { .iov_base = (void *)f->data, .iov_len = f->len };
	struct msghdr mh;
	struct cmsghdr *cmsg;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (f->fd != -1) {
		memset(&cmsgbuf, 0, sizeof(cmsgbuf));
		mh.msg_control = cmsgbuf.buf;
		mh.msg_controllen = sizeof(cmsgbuf.buf);
		cmsg = CMSG_FIRSTHDR(&mh);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &f->fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

int
ipc_flush(struct ipc_chan *ch)
{
	struct ipc_frame *f;

	while ((f = ch->whead) != NULL) {
		if (ipc_send_frame(ch->fd, f) == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == ENOBUFS)
				return 0;
			return -1;
		}
		ch->whead = f->next;
		if (ch->whead == NULL)
			ch->wtail = NULL;
		ch->wcount--;
		if (f->fd != -1)
			(void)close(f->fd);
		ipc_frame_free(f);
	}
	return 0;
}

int
ipc_flush_all(struct ipc_chan *ch)
{
	struct pollfd pfd = { .fd = ch->fd, .events = POLLOUT };

	for (;;) {
		if (ipc_flush(ch) == -1)
			return -1;
		if (ch->whead == NULL)
			return 0;
		if (poll(&pfd, 1, -1) == -1 && errno != EINTR)
			return -1;
		if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
			return -1;
	}
}

bool
ipc_write_pending(const struct ipc_chan *ch)
{
	return ch->whead != NULL;
}

/* Keep the first descriptor of a record; close any extra a peer sent. */
static int
ipc_take_fds(struct msghdr *mh)
{
	struct cmsghdr *cmsg;
	int fd = -1, extra;
	size_t i, n;

	for (cmsg = CMSG_FIRSTHDR(mh); cmsg != NULL;
	    cmsg = CMSG_NXTHDR(mh, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&extra, CMSG_DATA(cmsg) + i * sizeof(int),
			    sizeof(int));
			if (fd == -1)
				fd = extra;
			else
				(void)close(extra);
		}
	}
	return fd;
}

int
ipc_recv(struct ipc_chan *ch, struct ipc_msg *msg)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} cmsgbuf;
	struct iovec iov = { .iov_base = ch->rbuf, .iov_len = IPC_RBUF_SIZE };
	struct msghdr mh;
	struct ipc_hdr hdr;
	ssize_t n;

	/* A descriptor the caller did not take with the last frame. */
	ipc_drop_received_fd(ch);
	ch->rlen = 0;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cmsgbuf.buf;
	mh.msg_controllen = sizeof(cmsgbuf.buf);
	do {
		n = recvmsg(ch->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
	if (n == 0)
		return -1;
	ch->rfd = ipc_take_fds(&mh);
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n < sizeof(hdr))
		return -2;
	memcpy(&hdr, ch->rbuf, sizeof(hdr));
	if (hdr.len != (size_t)n - sizeof(hdr) ||
	    ((hdr.flags & IPC_F_FD) != 0) != (ch->rfd != -1))
		return -2;
	ch->rlen = (size_t)n;
	msg->hdr = hdr;
	msg->data = ch->rbuf + sizeof(hdr);
	/* The caller owns the descriptor from here on. */
	msg->fd = ch->rfd;
	ch->rfd = -1;
	return 1;
}

int
ipc_wait(struct ipc_chan *ch, struct ipc_msg *msg, int timeout_ms)
{
	struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };
	int r;

	for (;;) {
		if ((r = ipc_recv(ch, msg)) != 0)
			return r;
		r = poll(&pfd, 1, timeout_ms);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (r == 0)
			return 0;
	}
}
