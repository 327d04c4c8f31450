/*
 * listener.c - accepts clients and forks one session process per client.
 *
 * The listener holds the listening sockets and the TLS context, enforces
 * the connection limits, and is the switchboard between sessions and the
 * auth and queue processes.  It trusts nothing a session says about
 * itself: it stamps every frame with the session's id and overwrites the
 * client address with the one it accepted, and a session that sends a
 * frame it may not send is killed.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "msa.h"

struct session {
	uint32_t id;
	pid_t pid;
	struct ipc_chan chan;
	char client[CLIENT_ADDR_LEN];
	/* Sessions wait for one reply at a time: what it is waiting for. */
	uint32_t awaiting_auth; /* IMSG_AUTH_REQ, IMSG_RATE_REQ or 0 */
	uint32_t awaiting_queue; /* IMSG_QUEUE_CREATE, _COMMIT or 0 */
	char committing[QUEUE_ID_LEN + 1]; /* the id of that commit */
};

static struct config *config;
static struct ipc_chan parent_chan, auth_chan, queue_chan;
static SSL_CTX *ssl_ctx;
static int pending_cert_fd = -1;
static struct session *sessions;
static size_t nsessions;
static uint32_t next_session_id = 1;
static int signal_fd = -1;

/* ------------------------------------------------------------------ */
/* TLS context                                                         */

static SSL_CTX *
listener_load_ctx(int cert_fd, int key_fd)
{
	char err[512];
	SSL_CTX *ctx;

	ctx = tls_server_ctx(config, cert_fd, key_fd, err, sizeof(err));
	if (ctx == NULL)
		log_warnx("event=tls-load-failed reason=\"%s\"", err);
	/* Before any session forks from it: see tls_warm(). */
	tls_warm(ctx);
	/* Merge what the warm-up freed, so sessions allocate compactly. */
	(void)malloc_trim(0);
	return ctx;
}

static void
listener_initial_ctx(void)
{
	int cert_fd, key_fd;

	if ((cert_fd = open(config->tls_certificate, O_RDONLY | O_CLOEXEC)) ==
	    -1)
		fatal("open %s", config->tls_certificate);
	if ((key_fd = open(config->tls_key, O_RDONLY | O_CLOEXEC)) == -1)
		fatal("open %s", config->tls_key);
	if ((ssl_ctx = listener_load_ctx(cert_fd, key_fd)) == NULL)
		fatalx("cannot load certificate %s and key %s",
		    config->tls_certificate, config->tls_key);
	(void)close(cert_fd);
	(void)close(key_fd);
}

/* New sessions get the new pair; running ones keep their copy. */
static void
listener_reload_ctx(int key_fd)
{
	SSL_CTX *fresh;

	if (pending_cert_fd == -1) {
		log_warnx("event=tls-reload-failed reason=\"key without cert\"");
		(void)close(key_fd);
		return;
	}
	fresh = listener_load_ctx(pending_cert_fd, key_fd);
	(void)close(pending_cert_fd);
	(void)close(key_fd);
	pending_cert_fd = -1;
	if (fresh == NULL)
		return;
	SSL_CTX_free(ssl_ctx);
	ssl_ctx = fresh;
	log_info("event=reload what=certificate");
}

/* ------------------------------------------------------------------ */
/* Sessions table                                                      */

static struct session *
session_by_id(uint32_t id)
{
	for (size_t i = 0; i < nsessions; i++)
		if (sessions[i].id == id)
			return &sessions[i];
	return NULL;
}

static unsigned
sessions_from(const char *client)
{
	unsigned n = 0;

	for (size_t i = 0; i < nsessions; i++)
		if (strcmp(sessions[i].client, client) == 0)
			n++;
	return n;
}

static void listener_session_input(struct session *);

static void
session_remove(size_t i)
{
	struct session *s = &sessions[i];

	/* Frames it sent just before it exited still count (an abort). */
	listener_session_input(s);
	ipc_compose(&queue_chan, IMSG_SESSION_GONE, s->id, -1, NULL, 0);
	ipc_close(&s->chan);
	sessions[i] = sessions[--nsessions];
}

static void
session_kill(struct session *s, const char *why)
{
	log_warnx("event=session-killed session=%u pid=%ld reason=\"%s\"",
	    s->id, (long)s->pid, why);
	(void)kill(s->pid, SIGKILL);
}

/* ------------------------------------------------------------------ */
/* Accepting                                                           */

static void
listener_refuse(int fd, const struct listen_cfg *l, const char *client,
    const char *why)
{
	char line[512];

	log_info("event=refused client=%s reason=\"%s\"", client, why);
	/* On implicit TLS a clear-text reply would be garbage to the client. */
	if (l->tls == LISTEN_STARTTLS &&
	    bsnprintf(line, sizeof(line), "421 4.7.0 %s %s, try again later\r\n",
		config->hostname, why) == 0)
		(void)send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)close(fd);
}

static void __attribute__((noreturn))
listener_become_session(int client_fd, const struct listen_cfg *l,
    const char *client, int chan_fd)
{
	struct session_info si;

	/* Keep only the client socket, our channel and stderr. */
	for (size_t i = 0; i < config->nlisten; i++)
		(void)close(config->listen[i].fd);
	for (size_t i = 0; i < nsessions; i++)
		(void)close(sessions[i].chan.fd);
	(void)close(parent_chan.fd);
	(void)close(auth_chan.fd);
	(void)close(queue_chan.fd);
	sig_close();
	if (pending_cert_fd != -1)
		(void)close(pending_cert_fd);
	(void)signal(SIGTERM, SIG_DFL);
	(void)signal(SIGCHLD, SIG_DFL);
	log_setproc("session");
	memset(&si, 0, sizeof(si));
	si.client_fd = client_fd;
	si.tls_mode = l->tls;
	strlcpy_msa(si.client, client, sizeof(si.client));
	si.ssl_ctx = ssl_ctx;
	session_main(config, chan_fd, &si);
}

static void
listener_accept(struct listen_cfg *l)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char client[CLIENT_ADDR_LEN];
	struct session *s;
	int fd, sv[2];
	pid_t pid;

	fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen, SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			log_warn("event=error accept address=%s", l->address);
		return;
	}
	sockaddr_ntop((struct sockaddr *)&ss, client, sizeof(client));
	if (sig_pending(SIGTERM))
		return listener_refuse(fd, l, client, "Service shutting down");
	if (nsessions >= config->max_sessions)
		return listener_refuse(fd, l, client, "Too many connections");
	if (sessions_from(client) >= config->max_sessions_per_ip)
		return listener_refuse(fd, l, client,
		    "Too many connections from your address");
	ipc_socketpair(sv);
	if ((pid = fork()) == -1) {
		log_warn("event=error fork");
		(void)close(sv[0]);
		(void)close(sv[1]);
		return listener_refuse(fd, l, client, "Temporary failure");
	}
	if (pid == 0) {
		(void)close(sv[0]);
		listener_become_session(fd, l, client, sv[1]);
	}
	(void)close(sv[1]);
	(void)close(fd);
	sessions = xreallocarray(sessions, nsessions + 1, sizeof(*sessions));
	s = &sessions[nsessions++];
	memset(s, 0, sizeof(*s));
	s->id = next_session_id++;
	if (next_session_id == 0)
		next_session_id = 1;
	s->pid = pid;
	strlcpy_msa(s->client, client, sizeof(s->client));
	ipc_init(&s->chan, sv[0]);
	log_debug("event=session-start session=%u pid=%ld client=%s", s->id,
	    (long)pid, client);
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */

/*
 * A session may send exactly these; the listener fixes what the session
 * could lie about and picks the destination.
 */
static struct ipc_chan *
listener_route_from_session(struct session *s, struct ipc_msg *m)
{
	switch (m->hdr.type) {
	case IMSG_AUTH_REQ: {
		struct ipc_auth_req *req = (void *)m->data;

		if (m->hdr.len != sizeof(*req))
			return NULL;
		strlcpy_msa(req->client, s->client, sizeof(req->client));
		return &auth_chan;
	}
	case IMSG_RATE_REQ:
		return m->hdr.len == sizeof(struct ipc_rate_req) ? &auth_chan
								 : NULL;
	case IMSG_QUEUE_CREATE:
		return m->hdr.len == 0 ? &queue_chan : NULL;
	case IMSG_QUEUE_ABORT:
		return m->hdr.len == sizeof(struct ipc_queue_id) ? &queue_chan
								 : NULL;
	case IMSG_QUEUE_COMMIT: {
		struct ipc_envelope *env = (void *)m->data;

		if (m->hdr.len < sizeof(*env) || !IPC_STR_OK(env->id))
			return NULL;
		strlcpy_msa(env->client, s->client, sizeof(env->client));
		strlcpy_msa(s->committing, env->id, sizeof(s->committing));
		return &queue_chan;
	}
	default:
		return NULL;
	}
}

static void
listener_session_input(struct session *s)
{
	struct ipc_chan *dst;
	struct ipc_msg m;
	int r;

	while ((r = ipc_recv(&s->chan, &m)) == 1) {
		if (m.fd != -1) {
			(void)close(m.fd);
			session_kill(s, "sent a descriptor");
			return;
		}
		if ((dst = listener_route_from_session(s, &m)) == NULL) {
			session_kill(s, "sent a forbidden or malformed frame");
			return;
		}
		if (dst == &auth_chan)
			s->awaiting_auth = m.hdr.type;
		else if (m.hdr.type != IMSG_QUEUE_ABORT)
			s->awaiting_queue = m.hdr.type;
		ipc_compose(dst, m.hdr.type, s->id, -1, m.data, m.hdr.len);
	}
	if (r == -2)
		session_kill(s, "malformed frame");
	/* r == -1: the session closed its end; SIGCHLD removes it. */
}

/*
 * A session waiting on a process that died would wait for its timeout:
 * answer it now with a temporary failure, as the process would have.
 */
static void
listener_fail_pending(struct session *s, uint32_t request)
{
	struct ipc_auth_res ares;
	struct ipc_rate_res rres;
	struct ipc_queue_created cres;
	struct ipc_queue_committed mres;

	switch (request) {
	case IMSG_AUTH_REQ:
		memset(&ares, 0, sizeof(ares));
		ares.status = AUTH_TEMPFAIL;
		ipc_compose(&s->chan, IMSG_AUTH_RES, s->id, -1, &ares,
		    sizeof(ares));
		break;
	case IMSG_RATE_REQ:
		memset(&rres, 0, sizeof(rres)); /* refused: 450, try later */
		ipc_compose(&s->chan, IMSG_RATE_RES, s->id, -1, &rres,
		    sizeof(rres));
		break;
	case IMSG_QUEUE_CREATE:
		memset(&cres, 0, sizeof(cres));
		cres.status = EIO;
		ipc_compose(&s->chan, IMSG_QUEUE_CREATE_RES, s->id, -1, &cres,
		    sizeof(cres));
		break;
	case IMSG_QUEUE_COMMIT:
		memset(&mres, 0, sizeof(mres));
		mres.status = EIO;
		strlcpy_msa(mres.id, s->committing, sizeof(mres.id));
		ipc_compose(&s->chan, IMSG_QUEUE_COMMIT_RES, s->id, -1, &mres,
		    sizeof(mres));
		break;
	default:
		break;
	}
}

/*
 * The parent restarts a lost auth or queue process and sends its new
 * channel; frames for it wait in the write queue until then.  Requests
 * already sent, or waiting to be, died with the process.
 */
static void
listener_peer_down(struct ipc_chan *ch, const char *name)
{
	log_warnx("event=peer-lost peer=%s", name);
	/* Frames not yet sent are answered below too: drop them. */
	ipc_close(ch);
	ipc_init(ch, -1);
	for (size_t i = 0; i < nsessions; i++) {
		struct session *s = &sessions[i];
		uint32_t *pending = ch == &auth_chan ? &s->awaiting_auth
						     : &s->awaiting_queue;

		listener_fail_pending(s, *pending);
		*pending = 0;
	}
}

/* Replies from auth or queue go back to the session they name. */
static void
listener_peer_input(struct ipc_chan *ch, const char *name)
{
	struct session *s;
	struct ipc_msg m;
	int r;

	while ((r = ipc_recv(ch, &m)) == 1) {
		if ((s = session_by_id(m.hdr.peerid)) == NULL) {
			if (m.fd != -1)
				(void)close(m.fd);
			continue; /* the session ended meanwhile */
		}
		if (ch == &auth_chan)
			s->awaiting_auth = 0;
		else
			s->awaiting_queue = 0;
		ipc_compose(&s->chan, m.hdr.type, m.hdr.peerid, m.fd, m.data,
		    m.hdr.len);
	}
	if (r == -2)
		fatalx("malformed frame from %s", name);
	if (r == -1)
		listener_peer_down(ch, name);
}

static void
listener_replace_chan(struct ipc_chan *ch, int fd, const char *name)
{
	if (fd == -1)
		fatalx("parent sent a %s channel without a descriptor", name);
	if (ch->fd != -1) {
		/* The parent's word came before the old channel's end of
		 * file (same poll round): take its last replies, then fail
		 * what it still owed, as for any lost peer. */
		listener_peer_input(ch, name);
		if (ch->fd != -1)
			listener_peer_down(ch, name);
	}
	ch->fd = fd;
	log_info("event=peer-restarted peer=%s", name);
}

static void
listener_parent_input(void)
{
	struct ipc_msg m;
	int r;

	while ((r = ipc_recv(&parent_chan, &m)) == 1) {
		switch (m.hdr.type) {
		case IMSG_RELOAD_CERT:
			if (pending_cert_fd != -1)
				(void)close(pending_cert_fd);
			pending_cert_fd = m.fd;
			break;
		case IMSG_RELOAD_KEY:
			listener_reload_ctx(m.fd);
			break;
		case IMSG_PEER_AUTH:
			listener_replace_chan(&auth_chan, m.fd, "auth");
			break;
		case IMSG_PEER_QUEUE:
			listener_replace_chan(&queue_chan, m.fd, "queue");
			break;
		default:
			fatalx("unexpected frame %u from parent", m.hdr.type);
		}
	}
	if (r == -2)
		fatalx("malformed frame from parent");
	if (r == -1)
		exit(0); /* the parent is gone: so are we */
}

static void
listener_reap(void)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (size_t i = 0; i < nsessions; i++) {
			if (sessions[i].pid != pid)
				continue;
			if (WIFSIGNALED(status))
				log_warnx("event=session-died session=%u "
					  "signal=%d",
				    sessions[i].id, WTERMSIG(status));
			session_remove(i);
			break;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Loop                                                                */

static void
listener_signals(void)
{
	static const int sigs[] = { SIGTERM, SIGCHLD };

	signal_fd = sig_catch(sigs, sizeof(sigs) / sizeof(sigs[0]));
	(void)signal(SIGINT, SIG_IGN);
	(void)signal(SIGPIPE, SIG_IGN);
}

/* Stop accepting, ask sessions to finish, and give them a few seconds. */
static void __attribute__((noreturn))
listener_shutdown(void)
{
	time_t deadline = monotime() + 5;

	for (size_t i = 0; i < config->nlisten; i++)
		(void)close(config->listen[i].fd);
	for (size_t i = 0; i < nsessions; i++)
		(void)kill(sessions[i].pid, SIGTERM);
	while (nsessions > 0 && monotime() < deadline) {
		listener_reap();
		(void)ipc_flush(&queue_chan);
		if (nsessions > 0)
			(void)usleep(20 * 1000);
	}
	for (size_t i = 0; i < nsessions; i++)
		(void)kill(sessions[i].pid, SIGKILL);
	exit(0);
}

static void
flush_peer(struct ipc_chan *ch, const char *name)
{
	if (ch->fd != -1 && ipc_flush(ch) == -1)
		listener_peer_down(ch, name);
}

void
listener_main(struct config *cfg, int parent_fd, int auth_fd, int queue_fd)
{
	char path[MAX_PATHLEN];
	struct pollfd *pfd = NULL;
	size_t npfd, base;

	config = cfg;
	listener_signals();
	ipc_init(&parent_chan, parent_fd);
	ipc_init(&auth_chan, auth_fd);
	ipc_init(&queue_chan, queue_fd);
	/*
	 * Every heap page a forked session writes becomes its private copy.
	 * Blocks of 16 KiB and more (OpenSSL's record buffers, the IPC
	 * receive buffer) get their own mappings instead of landing among
	 * the listener's pages: untouched pages then cost nothing and a
	 * released buffer goes back to the kernel at once.  A fixed
	 * threshold also stops glibc from raising it dynamically.
	 */
	if (mallopt(M_MMAP_THRESHOLD, 16 * 1024) != 1)
		log_warnx("event=error call=mallopt");
	listener_initial_ctx();
	if (bsnprintf(path, sizeof(path), "%s/%s", cfg->spool, SPOOL_EMPTY) ==
	    -1)
		fatalx("spool path too long");
	proc_confine(cfg, ROLE_LISTENER, path);
	/*
	 * Building the seccomp filter freed much into the fast bins: merge
	 * it now, before any session is forked, not at the first large
	 * allocation after a fork (the listener's own copy of every page
	 * that touches would leave the first session holding the old ones).
	 */
	(void)malloc_trim(0);

	for (;;) {
		if (sig_pending(SIGTERM))
			listener_shutdown();
		flush_peer(&auth_chan, "auth");
		flush_peer(&queue_chan, "queue");
		(void)ipc_flush(&parent_chan);
		for (size_t i = 0; i < nsessions; i++)
			(void)ipc_flush(&sessions[i].chan);

		base = cfg->nlisten + 4;
		npfd = base + nsessions;
		pfd = xreallocarray(pfd, npfd, sizeof(*pfd));
		for (size_t i = 0; i < cfg->nlisten; i++) {
			pfd[i].fd = cfg->listen[i].fd;
			pfd[i].events = POLLIN;
		}
		pfd[cfg->nlisten].fd = parent_chan.fd;
		pfd[cfg->nlisten + 1].fd = auth_chan.fd;
		pfd[cfg->nlisten + 2].fd = queue_chan.fd;
		pfd[cfg->nlisten + 3].fd = signal_fd;
		for (size_t i = cfg->nlisten; i < base; i++)
			pfd[i].events = POLLIN;
		if (ipc_write_pending(&auth_chan))
			pfd[cfg->nlisten + 1].events |= POLLOUT;
		if (ipc_write_pending(&queue_chan))
			pfd[cfg->nlisten + 2].events |= POLLOUT;
		for (size_t i = 0; i < nsessions; i++) {
			pfd[base + i].fd = sessions[i].chan.fd;
			pfd[base + i].events = POLLIN;
			if (ipc_write_pending(&sessions[i].chan))
				pfd[base + i].events |= POLLOUT;
		}
		if (poll(pfd, npfd, -1) == -1) {
			if (errno == EINTR)
				continue;
			fatal("poll");
		}
		sig_drain();
		for (size_t i = 0; i < nsessions && base + i < npfd; i++)
			if (pfd[base + i].revents & (POLLIN | POLLHUP))
				listener_session_input(&sessions[i]);
		if (pfd[cfg->nlisten].revents & (POLLIN | POLLHUP))
			listener_parent_input();
		if (auth_chan.fd != -1 &&
		    (pfd[cfg->nlisten + 1].revents & (POLLIN | POLLHUP)))
			listener_peer_input(&auth_chan, "auth");
		if (queue_chan.fd != -1 &&
		    (pfd[cfg->nlisten + 2].revents & (POLLIN | POLLHUP)))
			listener_peer_input(&queue_chan, "queue");
		if (sig_take(SIGCHLD))
			listener_reap();
		for (size_t i = 0; i < cfg->nlisten; i++)
			if (pfd[i].revents & POLLIN)
				listener_accept(&cfg->listen[i]);
	}
}
