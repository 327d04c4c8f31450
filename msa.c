/*
 * msa.c - command line and the root parent.
 *
 * The parent is the only process that keeps root.  It loads the
 * configuration, binds the sockets, prepares the spool, forks the
 * listener, auth, queue and relay processes and then only supervises
 * them: it restarts a crashed child, forwards reloads on SIGHUP and stops
 * everything on SIGTERM.  It never reads a byte from the network.
 *
 * Each child runs in a process group of its own, which everything it
 * forks inherits (sync workers, verifiers, relay workers, sessions), and
 * the parent is a child subreaper: what a dead child leaves behind is
 * reparented here, killed with its group and reaped (see reap_one()).
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "msa.h"

enum child_slot { CHILD_LISTENER, CHILD_AUTH, CHILD_QUEUE, CHILD_RELAY,
	CHILD_MAX };

struct child {
	pid_t pid;
	pid_t pgid; /* its process group (= first pid) until found empty; 0 */
	struct ipc_chan chan; /* parent <-> child */
	time_t starts[5]; /* recent start times, for the crash-loop guard */
};

static struct config *config;
static struct child children[CHILD_MAX];
static int control_fd = -1;
static int signal_fd = -1;

static const char *const child_names[CHILD_MAX] = { "listener", "auth",
	"queue", "relay" };

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr,
	    "usage: msa [-c FILE] [-n]\n"
	    "       msa [-c FILE] passwd [NAME]\n"
	    "       msa [-c FILE] queue list | show ID | flush [ID] | delete ID\n"
	    "       msa -V\n");
	exit(1);
}

/* ------------------------------------------------------------------ */
/* Signals                                                             */

static void
install_signals(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };

	signal_fd = sig_catch(sigs, sizeof(sigs) / sizeof(sigs[0]));
	(void)signal(SIGPIPE, SIG_IGN);
}

static bool
stopping(void)
{
	return sig_pending(SIGTERM) || sig_pending(SIGINT);
}

/* ------------------------------------------------------------------ */
/* Sockets                                                             */

static int
bind_listener(struct listen_cfg *l)
{
	int fd, on = 1;

	fd = socket(l->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		log_warn("event=error socket address=%s", l->address);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1)
		log_warn("setsockopt SO_REUSEADDR");
	/*
	 * Accepted sockets inherit it: replies are whole lines flushed at
	 * once, and Nagle would hold the EHLO reply behind the TLS ticket
	 * until the client's delayed ACK (40 ms on every new connection).
	 */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1)
		log_warn("setsockopt TCP_NODELAY");
	/* "[::]:587" and "0.0.0.0:587" are separate entries of the config. */
	if (l->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)
		log_warn("setsockopt IPV6_V6ONLY");
	if (bind(fd, (struct sockaddr *)&l->ss, l->sslen) == -1 ||
	    listen(fd, 128) == -1) {
		log_warn("event=error cannot listen address=%s", l->address);
		(void)close(fd);
		return -1;
	}
	l->fd = fd;
	return 0;
}

static int
bind_control(const struct config *cfg)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (bsnprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", cfg->spool,
	    SPOOL_CONTROL) == -1) {
		log_warnx("event=error control socket path too long");
		return -1;
	}
	if (unlink(sun.sun_path) == -1 && errno != ENOENT) {
		log_warn("event=error unlink %s", sun.sun_path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("event=error control socket");
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chown(sun.sun_path, 0, config->gid) == -1 ||
	    chmod(sun.sun_path, 0660) == -1 || listen(fd, 8) == -1) {
		log_warn("event=error control socket %s", sun.sun_path);
		(void)close(fd);
		return -1;
	}
	return fd;
}

/* ------------------------------------------------------------------ */
/* Children                                                            */

/*
 * Channels between children.  The parent keeps none of the peer ends: it
 * creates each pair right before the forks that need it.
 */
struct peer_fds {
	int listener_auth[2];
	int listener_queue[2];
	int queue_relay[2];
};

static void
close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] != -1) {
			(void)close(p[i]);
			p[i] = -1;
		}
}

static void
close_parent_chans_except(enum child_slot keep)
{
	for (int i = 0; i < CHILD_MAX; i++)
		if (i != (int)keep && children[i].chan.fd != -1)
			(void)close(children[i].chan.fd);
}

static void
close_listen_fds(void)
{
	for (size_t i = 0; i < config->nlisten; i++)
		(void)close(config->listen[i].fd);
}

/* In a new child: keep only the peer ends this role uses. */
static void
keep_peer_ends(struct peer_fds *p, int keep1, int keep2)
{
	int *all[] = { &p->listener_auth[0], &p->listener_auth[1],
		&p->listener_queue[0], &p->listener_queue[1],
		&p->queue_relay[0], &p->queue_relay[1] };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (*all[i] != -1 && *all[i] != keep1 && *all[i] != keep2)
			(void)close(*all[i]);
}

static void
child_run(enum child_slot slot, int parent_fd, struct peer_fds *p)
{
	log_setproc(child_names[slot]);
	(void)signal(SIGTERM, SIG_DFL);
	(void)signal(SIGINT, SIG_DFL);
	(void)signal(SIGHUP, SIG_IGN);
	(void)signal(SIGCHLD, SIG_DFL);
	(void)signal(SIGPIPE, SIG_IGN);
	/*
	 * Not the terminal's foreground group any more: a log line to a
	 * terminal set to "stty tostop" must not stop the process.
	 */
	(void)signal(SIGTTOU, SIG_IGN);
	sig_close();
	if (slot != CHILD_QUEUE)
		(void)close(control_fd);
	if (slot != CHILD_LISTENER)
		close_listen_fds();
	switch (slot) {
	case CHILD_LISTENER:
		keep_peer_ends(p, p->listener_auth[0], p->listener_queue[0]);
		listener_main(config, parent_fd, p->listener_auth[0],
		    p->listener_queue[0]);
	case CHILD_AUTH:
		keep_peer_ends(p, p->listener_auth[1], -1);
		auth_main(config, parent_fd, p->listener_auth[1]);
	case CHILD_QUEUE:
		keep_peer_ends(p, p->listener_queue[1], p->queue_relay[0]);
		queue_main(config, parent_fd, p->listener_queue[1],
		    p->queue_relay[0], control_fd);
	case CHILD_RELAY:
		keep_peer_ends(p, p->queue_relay[1], -1);
		relay_main(config, parent_fd, p->queue_relay[1]);
	case CHILD_MAX:
		break;
	}
	fatalx("child_run: bad slot");
}

static void
child_start(enum child_slot slot, struct peer_fds *p)
{
	int sv[2];
	pid_t pid;

	ipc_socketpair(sv);
	switch (pid = fork()) {
	case -1:
		fatal("fork %s", child_names[slot]);
	case 0:
		/*
		 * Its own process group, before it forks or confines
		 * itself (no sandbox allows setpgid).  The parent sets it
		 * too, so that it exists whichever of the two runs first.
		 */
		if (setpgid(0, 0) == -1)
			fatal("setpgid %s", child_names[slot]);
		/* The socketpairs are close-on-exec; close unrelated ends. */
		(void)close(sv[0]);
		close_parent_chans_except(CHILD_MAX);
		child_run(slot, sv[1], p);
	default:
		break;
	}
	/* ESRCH: it already died; reap_one() and group_gone() cope. */
	if (setpgid(pid, pid) == -1 && errno != ESRCH)
		log_warn("event=error setpgid child=%s", child_names[slot]);
	(void)close(sv[1]);
	if (children[slot].chan.rbuf != NULL) /* the previous instance's */
		ipc_close(&children[slot].chan);
	ipc_init(&children[slot].chan, sv[0]);
	children[slot].pid = pid;
	children[slot].pgid = pid;
	memmove(children[slot].starts, children[slot].starts + 1,
	    sizeof(children[slot].starts) - sizeof(time_t));
	children[slot].starts[4] = monotime();
	log_debug("event=started child=%s pid=%ld", child_names[slot],
	    (long)pid);
}

static void
peer_fds_init(struct peer_fds *p)
{
	p->listener_auth[0] = p->listener_auth[1] = -1;
	p->listener_queue[0] = p->listener_queue[1] = -1;
	p->queue_relay[0] = p->queue_relay[1] = -1;
}

static void
peer_fds_close(struct peer_fds *p)
{
	close_pair(p->listener_auth);
	close_pair(p->listener_queue);
	close_pair(p->queue_relay);
}

static void
start_all(void)
{
	struct peer_fds p;

	peer_fds_init(&p);
	ipc_socketpair(p.listener_auth);
	ipc_socketpair(p.listener_queue);
	ipc_socketpair(p.queue_relay);
	/* Queue and relay first: they need no peer to be up. */
	child_start(CHILD_RELAY, &p);
	child_start(CHILD_QUEUE, &p);
	child_start(CHILD_AUTH, &p);
	child_start(CHILD_LISTENER, &p);
	peer_fds_close(&p);
}

static void
kill_child(enum child_slot slot, int sig)
{
	if (children[slot].pid > 0)
		(void)kill(children[slot].pid, sig);
}

static void
log_child_death(enum child_slot slot, int status)
{
	char how[64];

	if (WIFSIGNALED(status))
		(void)bsnprintf(how, sizeof(how), "signal=%d", WTERMSIG(status));
	else
		(void)bsnprintf(how, sizeof(how), "exit=%d", WEXITSTATUS(status));
	log_warnx("event=child-died child=%s %s", child_names[slot], how);
}

/* The slot whose running instance is pid, or CHILD_MAX. */
static enum child_slot
child_slot_of(pid_t pid)
{
	for (int s = 0; s < CHILD_MAX; s++)
		if (children[s].pid == pid)
			return (enum child_slot)s;
	return CHILD_MAX;
}

/*
 * Why process groups: PR_SET_PDEATHSIG (proc.c) kills a queue's sync
 * workers when the queue process dies, but the signal takes effect only
 * when a worker leaves the system call it is in.  A worker in the middle
 * of writing tmp/ID.env could finish it after the parent had already
 * started a new queue process, which empties tmp/ once at start-up: the
 * file stayed behind, with nobody to rename or remove it.  So the parent
 * SIGKILLs the whole group of a dead child and starts its successor only
 * once no member of the old group exists any more (group_gone()): a member
 * that still exists, even a zombie, is not past its last system call.
 *
 * Reap one exited process, selected like waitid(idtype, id), without
 * blocking: 1 with *pidp and *status set, 0 if none has exited, -1 if
 * there is nothing to wait for.  When it is one of our children, the rest
 * of its group is SIGKILLed first, while the unreaped zombie still holds
 * the group id (so that the id cannot have been reused meanwhile).  Every
 * other process is an orphaned member of such a group, reparented to us
 * (subreaper): it has been killed with its group already.
 */
static int
reap_one(idtype_t idtype, pid_t id, pid_t *pidp, int *status)
{
	enum child_slot slot;
	siginfo_t si;
	pid_t pid;

	memset(&si, 0, sizeof(si));
	if (waitid(idtype, (id_t)id, &si, WEXITED | WNOHANG | WNOWAIT) == -1)
		return errno == EINTR ? 0 : -1;
	if ((pid = si.si_pid) == 0)
		return 0;
	if ((slot = child_slot_of(pid)) != CHILD_MAX &&
	    children[slot].pgid > 0)
		(void)kill(-children[slot].pgid, SIGKILL);
	while (waitpid(pid, status, 0) == -1)
		if (errno != EINTR)
			return -1;
	*pidp = pid;
	return 1;
}

/*
 * Stop and reap the partner of a lost child before the restart.  If it
 * died on its own meanwhile (killed too, or it exited when it saw the
 * lost one go), log that like any child's death: reaping it silently
 * would hide a crash.  Our own SIGTERM (or the SIGKILL after 5 s) is not
 * logged.  Its group is killed as it is reaped (reap_one()).
 */
static void
stop_partner(enum child_slot slot)
{
	pid_t pid = children[slot].pid, r;
	int status = 0, i, got;

	if (pid <= 0)
		return;
	if (reap_one(P_PID, pid, &r, &status) == 1) {
		children[slot].pid = -1;
		log_child_death(slot, status);
		return;
	}
	(void)kill(pid, SIGTERM);
	for (i = 0; i < 50; i++) {
		if ((got = reap_one(P_PID, pid, &r, &status)) != 0)
			break;
		(void)usleep(100 * 1000);
	}
	if (i == 50) {
		/* Still alive, so its pid still names its group. */
		(void)kill(-children[slot].pgid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		got = 0;
	}
	children[slot].pid = -1;
	if (got == 1 && WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM)
		log_child_death(slot, status);
}

static void
restart_auth(void)
{
	struct peer_fds p;

	peer_fds_init(&p);
	ipc_socketpair(p.listener_auth);
	child_start(CHILD_AUTH, &p);
	ipc_compose(&children[CHILD_LISTENER].chan, IMSG_PEER_AUTH, 0,
	    p.listener_auth[0], NULL, 0);
	p.listener_auth[0] = -1; /* ipc_compose closes it once sent */
	peer_fds_close(&p);
}

/* Queue and relay share a channel; they restart together. */
static void
restart_queue_relay(void)
{
	struct peer_fds p;

	peer_fds_init(&p);
	ipc_socketpair(p.listener_queue);
	ipc_socketpair(p.queue_relay);
	child_start(CHILD_RELAY, &p);
	child_start(CHILD_QUEUE, &p);
	ipc_compose(&children[CHILD_LISTENER].chan, IMSG_PEER_QUEUE, 0,
	    p.listener_queue[0], NULL, 0);
	p.listener_queue[0] = -1;
	peer_fds_close(&p);
}

/* A child that died five times within a minute is crash-looping. */
static bool
crash_looping(enum child_slot slot)
{
	return children[slot].starts[0] != 0 &&
	    monotime() - children[slot].starts[0] < 60;
}

/* Which restart brings a slot back: queue and relay go together. */
static enum child_slot
restart_group(enum child_slot slot)
{
	return slot == CHILD_RELAY ? CHILD_QUEUE : slot;
}

/* Does restarting group bring slot back?  The listener's restarts all. */
static bool
in_group(enum child_slot group, enum child_slot slot)
{
	return group == CHILD_LISTENER || restart_group(slot) == group;
}

/*
 * Is every process group of a restart group empty (see reap_one())?
 * An empty group is forgotten, so its id is never probed again.
 */
static bool
group_gone(enum child_slot group)
{
	bool gone = true;

	for (int s = 0; s < CHILD_MAX; s++) {
		if (!in_group(group, (enum child_slot)s) || children[s].pgid <= 0)
			continue;
		if (kill(-children[s].pgid, 0) == -1 && errno == ESRCH)
			children[s].pgid = 0;
		else
			gone = false;
	}
	return gone;
}

/* Start a group again; its old processes are stopped and reaped. */
static void
restart_now(enum child_slot group)
{
	switch (group) {
	case CHILD_AUTH:
		restart_auth();
		break;
	case CHILD_QUEUE:
	case CHILD_RELAY:
		restart_queue_relay();
		break;
	default:
		start_all();
		break;
	}
}

/*
 * A crash loop (a full disk, a broken file) is not fixed by spinning, nor
 * by giving up and leaving the mail unserved: wait, then try again.
 *
 * Every restart goes through restart_due, even an immediate one: once
 * due, the group's live processes are stopped (restart_stop()), and the
 * restart waits until the old process groups are empty, re-checked after
 * each reaping, for at most GROUP_DRAIN seconds (restart_drain).
 */
#define RESTART_DELAY 30
#define GROUP_DRAIN 5
static time_t restart_due[CHILD_MAX]; /* per restart group; 0 = none */
static time_t restart_drain[CHILD_MAX]; /* stopped; restart by then */

static void
restart_schedule(enum child_slot group, time_t due)
{
	/* Restarting everything covers whatever else was pending. */
	if (group == CHILD_LISTENER)
		for (int g = 0; g < CHILD_MAX; g++)
			restart_due[g] = restart_drain[g] = 0;
	restart_due[group] = due;
}

/* Stop the partners of the lost child; its group was killed when reaped. */
static void
restart_stop(enum child_slot group)
{
	for (int s = 0; s < CHILD_MAX; s++)
		if (in_group(group, (enum child_slot)s))
			stop_partner((enum child_slot)s);
	restart_drain[group] = monotime() + GROUP_DRAIN;
}

static void
child_died(enum child_slot slot, int status)
{
	enum child_slot group = restart_group(slot);

	children[slot].pid = -1;
	if (stopping())
		return;
	log_child_death(slot, status);
	if (restart_due[group] != 0 || restart_due[CHILD_LISTENER] != 0)
		return; /* a pending restart already covers it */
	if (crash_looping(slot)) {
		restart_schedule(group, monotime() + RESTART_DELAY);
		log_warnx("event=restart-delayed child=%s seconds=%d "
			  "reason=\"died 5 times in a minute\"",
		    child_names[slot], RESTART_DELAY);
		return;
	}
	restart_schedule(group, monotime());
	restart_stop(group);
}

static void
run_restarts(void)
{
	time_t now = monotime();

	for (int g = 0; g < CHILD_MAX; g++) {
		if (restart_due[g] == 0 || now < restart_due[g])
			continue;
		if (restart_drain[g] == 0) { /* a delayed restart */
			log_info("event=restarting child=%s", child_names[g]);
			restart_stop((enum child_slot)g);
		}
		if (!group_gone((enum child_slot)g)) {
			if (monotime() < restart_drain[g])
				continue; /* the next reaping looks again */
			log_warnx("event=restart-unclean child=%s seconds=%d "
				  "reason=\"processes of the old group still "
				  "exist\"",
			    child_names[g], GROUP_DRAIN);
		}
		restart_due[g] = restart_drain[g] = 0;
		restart_now((enum child_slot)g);
	}
}

/* Milliseconds until the next restart or drain deadline, -1 if none. */
static int
restart_timeout(void)
{
	time_t now = monotime(), next = 0, at;

	for (int g = 0; g < CHILD_MAX; g++) {
		if (restart_due[g] == 0)
			continue;
		at = restart_drain[g] != 0 ? restart_drain[g] : restart_due[g];
		if (next == 0 || at < next)
			next = at;
	}
	if (next == 0)
		return -1;
	return next <= now ? 0 : (int)(next - now) * 1000;
}

static void
reap_children(void)
{
	enum child_slot slot;
	pid_t pid;
	int status;

	while (reap_one(P_ALL, 0, &pid, &status) == 1) {
		if ((slot = child_slot_of(pid)) != CHILD_MAX)
			child_died(slot, status);
		else
			log_debug("event=reaped pid=%ld", (long)pid);
	}
}

/* ------------------------------------------------------------------ */
/* Reload                                                              */

static void
send_file_fd(enum child_slot slot, uint32_t type, const char *path)
{
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		log_warn("event=reload-failed file=%s", path);
		return;
	}
	ipc_compose(&children[slot].chan, type, 0, fd, NULL, 0);
}

static void
reload(void)
{
	struct config *fresh = xcalloc(1, sizeof(*fresh));
	struct ipc_chan *auth = &children[CHILD_AUTH].chan;

	log_info("event=reload file=%s", config->path);
	if (config_load(fresh, config->path, true) != 0) {
		log_warnx("event=reload-failed reason=\"configuration has "
			  "errors, keeping the running one\"");
		config_free(fresh);
		free(fresh);
		return;
	}
	/* Only certificate, key, password file and sender rights reload. */
	strlcpy_msa(config->tls_certificate, fresh->tls_certificate,
	    sizeof(config->tls_certificate));
	strlcpy_msa(config->tls_key, fresh->tls_key, sizeof(config->tls_key));
	strlcpy_msa(config->auth_users, fresh->auth_users,
	    sizeof(config->auth_users));
	ipc_compose(auth, IMSG_SENDERS_RESET, 0, -1, NULL, 0);
	for (size_t i = 0; i < fresh->nsenders; i++)
		ipc_compose(auth, IMSG_SENDERS_ADD, 0, -1, &fresh->senders[i],
		    sizeof(fresh->senders[i]));
	/* Keep the new rules so that a restarted auth process starts with them. */
	{
		struct sender_rule *old = config->senders;
		size_t nold = config->nsenders;

		config->senders = fresh->senders;
		config->nsenders = fresh->nsenders;
		fresh->senders = old;
		fresh->nsenders = nold;
	}
	send_file_fd(CHILD_AUTH, IMSG_RELOAD_USERS, config->auth_users);
	send_file_fd(CHILD_LISTENER, IMSG_RELOAD_CERT, config->tls_certificate);
	send_file_fd(CHILD_LISTENER, IMSG_RELOAD_KEY, config->tls_key);
	config_free(fresh);
	free(fresh);
}

/* ------------------------------------------------------------------ */
/* Main loop                                                           */

static void
drain_child(enum child_slot slot)
{
	struct ipc_msg msg;
	int r;

	/* Children send the parent nothing yet; just notice a closed end. */
	while ((r = ipc_recv(&children[slot].chan, &msg)) == 1) {
		if (msg.fd != -1)
			(void)close(msg.fd);
		log_warnx("event=unexpected-message child=%s type=%u",
		    child_names[slot], msg.hdr.type);
	}
}

static bool
leaders_alive(void)
{
	for (int s = 0; s < CHILD_MAX; s++)
		if (children[s].pid > 0)
			return true;
	return false;
}

/*
 * SIGTERM lets each child stop what it forked in order; then nothing of
 * their groups may outlive the parent (see reap_one()): a sync worker
 * still writing into tmp/ could leave a stray file behind the next start.
 */
static void
shutdown_children(void)
{
	time_t deadline = monotime() + 8;

	for (int s = 0; s < CHILD_MAX; s++)
		kill_child((enum child_slot)s, SIGTERM);
	for (;;) {
		reap_children(); /* stopping(): no restart */
		if (!leaders_alive() || monotime() >= deadline)
			break;
		(void)usleep(50 * 1000);
	}
	for (int s = 0; s < CHILD_MAX; s++)
		if (children[s].pid > 0) /* alive: its pid names its group */
			(void)kill(-children[s].pgid, SIGKILL);
	deadline = monotime() + GROUP_DRAIN;
	for (;;) {
		reap_children();
		if (group_gone(CHILD_LISTENER))
			return;
		if (monotime() >= deadline)
			break;
		(void)usleep(20 * 1000);
	}
	log_warnx("event=shutdown-unclean seconds=%d reason=\"processes of "
		  "the children's groups still exist\"", GROUP_DRAIN);
}

static void __attribute__((noreturn))
parent_loop(void)
{
	struct pollfd pfd[CHILD_MAX + 1];

	for (;;) {
		for (int s = 0; s < CHILD_MAX; s++) {
			(void)ipc_flush(&children[s].chan);
			pfd[s].fd = children[s].pid > 0 ? children[s].chan.fd
							: -1;
			pfd[s].events = POLLIN;
			if (ipc_write_pending(&children[s].chan))
				pfd[s].events |= POLLOUT;
		}
		pfd[CHILD_MAX].fd = signal_fd;
		pfd[CHILD_MAX].events = POLLIN;
		if (poll(pfd, CHILD_MAX + 1, restart_timeout()) == -1 &&
		    errno != EINTR)
			fatal("poll");
		sig_drain();
		if (stopping()) {
			log_info("event=shutdown");
			shutdown_children();
			log_info("event=stopped");
			exit(0);
		}
		if (sig_take(SIGCHLD))
			reap_children();
		run_restarts();
		if (sig_take(SIGHUP))
			reload();
		for (int s = 0; s < CHILD_MAX; s++)
			if (pfd[s].fd != -1 && (pfd[s].revents & POLLIN))
				drain_child((enum child_slot)s);
	}
}

static int
daemon_main(struct config *cfg)
{
	char err[512];

	if (geteuid() != 0) {
		fprintf(stderr, "msa: must be started as root (it binds "
				"privileged ports and drops to user %s)\n",
		    cfg->user);
		return 1;
	}
	config = cfg;
	log_init(cfg->log_level, cfg->log_syslog, "parent");
	tzset();
	tls_prime();
	sandbox_configure(cfg->sandbox_seccomp);
	if (spool_prepare(cfg, err, sizeof(err)) == -1) {
		log_errorx("event=error spool=%s reason=\"%s\"", cfg->spool, err);
		return 2;
	}
	for (size_t i = 0; i < cfg->nlisten; i++)
		if (bind_listener(&cfg->listen[i]) == -1)
			return 2;
	if ((control_fd = bind_control(cfg)) == -1)
		return 2;
	for (int s = 0; s < CHILD_MAX; s++) {
		children[s].pid = -1;
		children[s].chan.fd = -1;
	}
	install_signals();
	/* Orphans of a child's group are reparented here, killed, reaped. */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1)
		fatal("prctl PR_SET_CHILD_SUBREAPER");
	start_all();
	for (size_t i = 0; i < cfg->nlisten; i++)
		log_info("event=listening address=%s tls=%s",
		    cfg->listen[i].address,
		    cfg->listen[i].tls == LISTEN_IMPLICIT ? "implicit"
							  : "starttls");
	log_info("event=started version=%s hostname=%s", MSA_VERSION,
	    cfg->hostname);
	parent_loop();
}

int
main(int argc, char **argv)
{
	static struct config cfg;
	const char *file = DEFAULT_CONFIG;
	bool check_only = false;
	int ch;

	/* '+': stop at the first non-option, the command. */
	while ((ch = getopt(argc, argv, "+c:nV")) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'n':
			check_only = true;
			break;
		case 'V':
			printf("msa %s\n", MSA_VERSION);
			return 0;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;

	if (argc > 0 && strcmp(argv[0], "passwd") == 0) {
		if (argc > 2)
			usage();
		return passwd_main(argc == 2 ? argv[1] : NULL);
	}
	if (argc > 0 && strcmp(argv[0], "queue") != 0)
		usage();
	if (argc > 0 && check_only)
		usage();
	if (config_load(&cfg, file, check_only || argc == 0) != 0)
		return 1;
	if (check_only) {
		printf("%s: configuration ok\n", file);
		return 0;
	}
	if (argc > 0)
		return control_main(&cfg, argc, argv);
	return daemon_main(&cfg);
}
