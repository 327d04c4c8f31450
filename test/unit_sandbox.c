/*
 * unit_sandbox.c - each role's seccomp filter lets the role's real work
 * through and kills the process on anything else.
 *
 * Every case forks: a filter cannot be removed once installed.  A child
 * reports with its exit code; a killed child with its signal (SIGSYS).
 */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ares.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "msa.h"
#include "test/tap.h"

static char dir[] = "/tmp/msa-unit-sandbox-XXXXXX";
static SSL_CTX *srv_ctx, *cli_ctx;

static const char *
path(const char *name)
{
	static char buf[4][PATH_MAX];
	static unsigned slot;
	char *p = buf[slot++ % 4];

	(void)snprintf(p, PATH_MAX, "%s/%s", dir, name);
	return p;
}

typedef int (*child_fn)(void *arg);

/* Run fn in a child; returns its wait status (-1: fork failed). */
static int
run_child(child_fn fn, void *arg)
{
	int status;
	pid_t pid;

	fflush(stdout);
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0)
		_exit(fn(arg));
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return status;
}

static bool
killed_by_sigsys(int st)
{
	return st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
}

static bool
exited(int st, int code)
{
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == code;
}

static void
diag_status(int st)
{
	if (st == -1)
		printf("#   fork/wait failed\n");
	else if (WIFSIGNALED(st))
		printf("#   killed by signal %d\n", WTERMSIG(st));
	else
		printf("#   exit status %d\n", WEXITSTATUS(st));
}

/* Whole /proc/PID/status into buf. */
static bool
proc_status(pid_t pid, char *buf, size_t len)
{
	char p[64];
	ssize_t n;
	int fd;

	(void)snprintf(p, sizeof(p), "/proc/%ld/status", (long)pid);
	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* ------------------------------------------------------------------ */
/* Forbidden calls, per role                                           */

static int
act_open(void)
{
	return open("/etc/passwd", O_RDONLY) == -1 ? 2 : 0;
}

static int
act_socket_inet(void)
{
	return socket(AF_INET, SOCK_STREAM, 0) == -1 ? 2 : 0;
}

static int
act_socket_netlink(void)
{
	return socket(AF_NETLINK, SOCK_RAW, 0) == -1 ? 2 : 0;
}

static int
act_connect(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	return connect(0, (struct sockaddr *)&sin, sizeof(sin)) == -1 ? 2 : 0;
}

static int
act_fork(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	return pid == -1 ? 2 : 0;
}

static int
act_clone_newuser(void)
{
	long r = syscall(
	    SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0L, 0L, 0L, 0L);

	if (r == 0)
		_exit(0);
	return r == -1 ? 2 : 0;
}

static int
act_execve(void)
{
	char *const argv[] = { "true", NULL };
	char *const envp[] = { NULL };

	(void)execve("/bin/true", argv, envp);
	return 2;
}

static int
act_kill(void)
{
	return kill(getpid(), 0) == -1 ? 2 : 0;
}

/* Signal 0 only: harmless even if a broken filter let it through. */
static int
act_kill_all(void)
{
	return kill(-1, 0) == -1 ? 2 : 0;
}

static int
act_ptrace(void)
{
	return ptrace(PTRACE_TRACEME, 0, NULL, NULL) == -1 ? 2 : 0;
}

static int
act_mmap_exec(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? 2 : 0;
}

static int
act_mprotect_exec(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return 3;
	return mprotect(p, 4096, PROT_READ | PROT_EXEC) == -1 ? 2 : 0;
}

static int
act_setuid(void)
{
	return setuid(0) == -1 ? 2 : 0;
}

static int
act_unshare(void)
{
	return unshare(CLONE_NEWUSER) == -1 ? 2 : 0;
}

static int
act_reuseaddr(void)
{
	int on = 1;

	return setsockopt(0, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1
	    ? 2
	    : 0;
}

static int
act_dupfd(void)
{
	return fcntl(2, F_DUPFD, 10) == -1 ? 2 : 0;
}

static int
act_ioctl_other(void)
{
	return ioctl(2, FIOCLEX) == -1 ? 2 : 0;
}

#if defined(__x86_64__)
/* A 32-bit system call from a 64-bit process (getpid is 20 on i386). */
static int
act_int80(void)
{
	long r = 20;

	__asm__ volatile("int $0x80" : "+a"(r) : : "memory");
	return 0;
}
#endif

struct forbidden {
	enum proc_role role;
	const char *what;
	int (*act)(void);
};

static const struct forbidden forbidden[] = {
	{ ROLE_SESSION, "open(\"/etc/passwd\")", act_open },
	{ ROLE_SESSION, "socket(AF_INET)", act_socket_inet },
	{ ROLE_SESSION, "connect()", act_connect },
	{ ROLE_SESSION, "fork()", act_fork },
	{ ROLE_SESSION, "execve()", act_execve },
	{ ROLE_SESSION, "kill()", act_kill },
	{ ROLE_SESSION, "ptrace()", act_ptrace },
	{ ROLE_SESSION, "an executable mmap()", act_mmap_exec },
	{ ROLE_SESSION, "mprotect() to executable", act_mprotect_exec },
	{ ROLE_SESSION, "setuid(0)", act_setuid },
	{ ROLE_SESSION, "unshare(CLONE_NEWUSER)", act_unshare },
	{ ROLE_SESSION, "setsockopt(SO_REUSEADDR)", act_reuseaddr },
	{ ROLE_SESSION, "fcntl(F_DUPFD)", act_dupfd },
#if defined(__x86_64__)
	{ ROLE_SESSION, "a 32-bit int 0x80 system call", act_int80 },
#endif
	{ ROLE_LISTENER, "open(\"/etc/passwd\")", act_open },
	{ ROLE_LISTENER, "socket(AF_INET)", act_socket_inet },
	{ ROLE_LISTENER, "connect()", act_connect },
	{ ROLE_LISTENER, "execve()", act_execve },
	{ ROLE_LISTENER, "ptrace()", act_ptrace },
	{ ROLE_LISTENER, "clone(CLONE_NEWUSER)", act_clone_newuser },
	{ ROLE_LISTENER, "kill(-1)", act_kill_all },
	{ ROLE_LISTENER, "an executable mmap()", act_mmap_exec },
	{ ROLE_AUTH, "open(\"/etc/passwd\")", act_open },
	{ ROLE_AUTH, "socket(AF_INET)", act_socket_inet },
	{ ROLE_AUTH, "connect()", act_connect },
	{ ROLE_AUTH, "fork()", act_fork },
	{ ROLE_AUTH, "execve()", act_execve },
	{ ROLE_AUTH, "kill()", act_kill },
	{ ROLE_QUEUE, "socket(AF_INET)", act_socket_inet },
	{ ROLE_QUEUE, "connect()", act_connect },
	{ ROLE_QUEUE, "clone(CLONE_NEWUSER)", act_clone_newuser },
	{ ROLE_QUEUE, "execve()", act_execve },
	{ ROLE_QUEUE, "kill()", act_kill },
	{ ROLE_QUEUE, "mprotect() to executable", act_mprotect_exec },
	{ ROLE_RELAY, "socket(AF_NETLINK)", act_socket_netlink },
	{ ROLE_RELAY, "execve()", act_execve },
	{ ROLE_RELAY, "ptrace()", act_ptrace },
	{ ROLE_RELAY, "clone(CLONE_NEWUSER)", act_clone_newuser },
	{ ROLE_RELAY, "kill(-1)", act_kill_all },
	{ ROLE_RELAY, "ioctl(FIOCLEX)", act_ioctl_other },
	{ ROLE_RELAY, "an executable mmap()", act_mmap_exec },
	{ ROLE_RELAY, "setuid(0)", act_setuid },
};

static int
child_forbidden(void *arg)
{
	const struct forbidden *f = arg;

	sandbox_enter(f->role);
	return 10 + f->act();
}

static void
test_forbidden(void)
{
	size_t i;
	int st;

	for (i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
		st = run_child(child_forbidden, (void *)&forbidden[i]);
		if (!ok(killed_by_sigsys(st),
			"%s: %s kills the process (SIGSYS)",
			sandbox_role_name(forbidden[i].role),
			forbidden[i].what))
			diag_status(st);
	}
}

/* ------------------------------------------------------------------ */
/* Counts and /proc                                                    */

static void
test_counts(void)
{
	enum proc_role r;

	is_int(
	    sandbox_syscall_count(ROLE_PARENT), 0, "the parent has no filter");
	for (r = ROLE_LISTENER; r < ROLE_MAX; r++) {
		int n = sandbox_syscall_count(r);
		ok(n > 20 && n < 100, "%s allows %d syscalls",
		    sandbox_role_name(r), n);
	}
	ok(sandbox_syscall_count(ROLE_SESSION)
		< sandbox_syscall_count(ROLE_LISTENER),
	    "the session allows fewer syscalls than the listener it is "
	    "stacked on");
	ok(sandbox_syscall_count(ROLE_AUTH)
		< sandbox_syscall_count(ROLE_SESSION),
	    "auth allows fewer syscalls than a session");
}

struct pipes {
	int ready[2], go[2];
	enum proc_role role;
};

static int
child_wait_confined(void *arg)
{
	struct pipes *p = arg;
	char c = 0;

	sandbox_enter(p->role);
	if (write(p->ready[1], "r", 1) != 1 || read(p->go[0], &c, 1) != 1)
		return 2;
	return 0;
}

/*
 * Fork a child confined as role that waits for a byte on p->go: its pid
 * (*ready: it said it is confined), or -1 with a failed test if there are
 * no pipes or no child.
 */
static pid_t
start_confined(struct pipes *p, enum proc_role role, bool *ready)
{
	pid_t pid;
	char c;

	p->role = role;
	if (pipe(p->ready) == -1 || pipe(p->go) == -1) {
		ok(0, "pipes");
		return -1;
	}
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(child_wait_confined(p));
	if (pid == -1) {
		ok(0, "fork");
		return -1;
	}
	*ready = read(p->ready[0], &c, 1) == 1;
	return pid;
}

static void
close_pipes(struct pipes *p)
{
	close(p->ready[0]);
	close(p->ready[1]);
	close(p->go[0]);
	close(p->go[1]);
}

/* /proc/PID/status of a confined child while it runs. */
static void
test_proc_status(enum proc_role role)
{
	const char *what = sandbox_role_name(role);
	struct pipes p;
	char st[8192];
	pid_t pid;
	int status;
	bool have;

	if ((pid = start_confined(&p, role, &have)) == -1)
		return;
	have = have && proc_status(pid, st, sizeof(st));
	ok(have && strstr(st, "\nSeccomp:\t2\n") != NULL,
	    "%s: /proc status shows \"Seccomp: 2\" while it runs", what);
	ok(have && strstr(st, "\nNoNewPrivs:\t1\n") != NULL,
	    "%s: /proc status shows \"NoNewPrivs: 1\"", what);
	if (write(p.go[1], "g", 1) != 1)
		(void)kill(pid, SIGKILL);
	status = -1;
	(void)waitpid(pid, &status, 0);
	ok(exited(status, 0), "%s: the confined child then exits normally",
	    what);
	close_pipes(&p);
}

/* ------------------------------------------------------------------ */
/* Allowed work                                                        */

struct session_work {
	int pipe_w; /* write "ok" here */
	int chan; /* IPC: receive a descriptor, send it back */
};

static int
child_session_work(void *arg)
{
	struct session_work *w = arg;
	struct ipc_chan ch;
	struct ipc_msg msg;
	unsigned char rnd[32];
	struct timespec ts;
	struct stat sb;
	char *big;
	int r;

	sandbox_enter(ROLE_SESSION);
	if (write(w->pipe_w, "ok", 2) != 2)
		return 2;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)
	    || RAND_bytes(rnd, sizeof(rnd)) != 1)
		return 3;
	if ((big = malloc(64 << 20)) == NULL) /* mmap, not brk */
		return 4;
	memset(big, 'x', 64 << 20);
	if ((big = realloc(big, 96 << 20)) == NULL) /* mremap */
		return 5;
	free(big);
	if (clock_gettime(CLOCK_REALTIME, &ts) == -1 || fstat(1, &sb) == -1)
		return 6;
	/* syslog's reconnect and isatty() fail quietly */
	if (socket(AF_UNIX, SOCK_DGRAM, 0) != -1 || errno != EACCES)
		return 7;
	if (isatty(2))
		return 8;
	ipc_init(&ch, w->chan);
	if ((r = ipc_wait(&ch, &msg, 5000)) != 1 || msg.fd == -1)
		return 9;
	ipc_compose(&ch, IMSG_QUEUE_CREATE_RES, 0, msg.fd, "x", 1);
	if (ipc_flush_all(&ch) == -1)
		return 10;
	ipc_close(&ch);
	exit(0); /* atexit handlers (OpenSSL's cleanup) run confined too */
}

static void
test_session_work(void)
{
	struct session_work w;
	struct ipc_chan ch;
	struct ipc_msg msg;
	int pfd[2], sv[2], st, passed[2], r;
	char buf[4] = "";

	if (pipe(pfd) == -1 || pipe(passed) == -1) {
		ok(0, "pipes");
		return;
	}
	ipc_socketpair(sv);
	ipc_init(&ch, sv[0]);
	ipc_compose(&ch, IMSG_QUEUE_CREATE, 0, passed[1], NULL, 0);
	(void)ipc_flush(&ch);
	w.pipe_w = pfd[1];
	w.chan = sv[1];
	st = run_child(child_session_work, &w);
	if (!ok(exited(st, 0),
		"session: pipe write, getrandom, RAND_bytes, a 96 MB block, "
		"clocks, IPC with a descriptor and exit() all pass"))
		diag_status(st);
	ok(read(pfd[0], buf, 2) == 2 && memcmp(buf, "ok", 2) == 0,
	    "session: the write reached the pipe");
	r = ipc_recv(&ch, &msg);
	ok(r == 1 && msg.fd != -1,
	    "session: the descriptor came back over IPC");
	if (r == 1 && msg.fd != -1)
		close(msg.fd);
	ipc_close(&ch);
	close(sv[1]);
	close(pfd[0]);
	close(pfd[1]);
	close(passed[0]);
}

/* A TLS server in the session sandbox: handshake, one line each way. */
static int
serve_tls(SSL_CTX *ctx, int fd)
{
	char line[64];
	SSL *ssl;
	int n;

	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
		return 2;
	if (SSL_accept(ssl) != 1)
		return 3;
	if ((n = SSL_read(ssl, line, sizeof(line))) <= 0)
		return 4;
	if (SSL_write(ssl, "250 ok\r\n", 8) != 8)
		return 5;
	(void)SSL_shutdown(ssl);
	n = SSL_session_reused(ssl) ? 10 : 0;
	SSL_free(ssl);
	return n;
}

struct tls_child {
	int fd;
};

static int
child_tls_session(void *arg)
{
	struct tls_child *t = arg;

	sandbox_enter(ROLE_SESSION);
	return serve_tls(srv_ctx, t->fd);
}

/* Client side; returns 0 ok. *sess: in = resume, out = new session. */
static int
tls_client(int fd, SSL_SESSION **sess)
{
	char buf[64];
	SSL *ssl;
	int rc = -1;

	if ((ssl = SSL_new(cli_ctx)) == NULL || SSL_set_fd(ssl, fd) != 1)
		goto done;
	if (*sess != NULL)
		SSL_set_session(ssl, *sess);
	if (SSL_connect(ssl) != 1 || SSL_write(ssl, "EHLO x\r\n", 8) != 8
	    || SSL_read(ssl, buf, sizeof(buf)) != 8)
		goto done;
	SSL_SESSION_free(*sess);
	*sess = SSL_get1_session(ssl);
	(void)SSL_shutdown(ssl);
	rc = 0;
done:
	SSL_free(ssl);
	return rc;
}

/* fork a child running fn while this process is the TLS client. */
static int
tls_exchange(child_fn fn, SSL_SESSION **sess, int *client_rc)
{
	struct tls_child t;
	int sv[2], status;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	t.fd = sv[1];
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(fn(&t));
	close(sv[1]);
	*client_rc = pid > 0 ? tls_client(sv[0], sess) : -1;
	close(sv[0]);
	if (pid <= 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return status;
}

static void
test_session_tls(void)
{
	SSL_SESSION *sess = NULL;
	int st, crc;

	st = tls_exchange(child_tls_session, &sess, &crc);
	if (!ok(exited(st, 0) && crc == 0,
		"session: a TLS 1.3 handshake and an exchange pass the filter"))
		diag_status(st);
	st = tls_exchange(child_tls_session, &sess, &crc);
	if (!ok(exited(st, 10) && crc == 0,
		"session: a resumed TLS session passes the filter"))
		diag_status(st);
	SSL_SESSION_free(sess);
}

/* ------------------------------------------------------------------ */
/* Listener with a session stacked on it                               */

struct listener_child {
	int lsock; /* listening socket with one pending client */
	int cert_fd, key_fd;
	int report; /* pipe: the session's pid */
};

static int
child_listener(void *arg)
{
	struct listener_child *l = arg;
	struct config cfg;
	char err[256];
	SSL_CTX *fresh;
	int fd, status, sv[2];
	pid_t pid;

	sandbox_enter(ROLE_LISTENER);
	/* IMSG_RELOAD_CERT/KEY: a new context from received descriptors */
	memset(&cfg, 0, sizeof(cfg));
	cfg.tls_min_version = TLS1_2_VERSION;
	if ((fresh
		= tls_server_ctx(&cfg, l->cert_fd, l->key_fd, err, sizeof(err)))
	    == NULL)
		return 2;
	if (syscall(SYS_clone3, NULL, 0) != -1 || errno != ENOSYS)
		return 3;
	if ((fd = accept4(l->lsock, NULL, NULL, SOCK_CLOEXEC)) == -1)
		return 4;
	ipc_socketpair(sv);
	if ((pid = fork()) == -1)
		return 5;
	if (pid == 0) {
		close(sv[0]);
		sandbox_enter(ROLE_SESSION);
		_exit(serve_tls(fresh, fd));
	}
	close(sv[1]);
	close(fd);
	if (write(l->report, &pid, sizeof(pid)) != sizeof(pid))
		return 6;
	if (kill(pid, 0) == -1)
		return 7;
	if (waitpid(pid, &status, 0) != pid)
		return 8;
	if (WIFSIGNALED(status))
		return 100 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static void
test_listener_stack(void)
{
	struct listener_child l;
	struct sockaddr_un sun;
	SSL_SESSION *sess = NULL;
	char st[8192];
	int cfd, rep[2], status, crc = -1;
	pid_t pid, spid = 0;
	bool two = false;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	(void)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path("lsock"));
	l.lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	l.cert_fd = open(path("cert.pem"), O_RDONLY | O_CLOEXEC);
	l.key_fd = open(path("key.pem"), O_RDONLY | O_CLOEXEC);
	if (l.lsock == -1 || cfd == -1 || l.cert_fd == -1 || l.key_fd == -1
	    || bind(l.lsock, (struct sockaddr *)&sun, sizeof(sun)) == -1
	    || listen(l.lsock, 5) == -1
	    || connect(cfd, (struct sockaddr *)&sun, sizeof(sun)) == -1
	    || pipe(rep) == -1) {
		ok(0, "listener test set-up");
		return;
	}
	l.report = rep[1];
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(child_listener(&l));
	if (pid > 0 && read(rep[0], &spid, sizeof(spid)) == sizeof(spid)) {
		/* The session installs its filter, then waits for us. */
		for (int i = 0; i < 500 && !two; i++) {
			two = proc_status(spid, st, sizeof(st))
			    && strstr(st, "\nSeccomp_filters:\t2\n") != NULL
			    && strstr(st, "\nSeccomp:\t2\n") != NULL;
			if (!two)
				(void)usleep(10000);
		}
		crc = tls_client(cfd, &sess);
	}
	status = -1;
	if (pid > 0)
		(void)waitpid(pid, &status, 0);
	if (!ok(exited(status, 0) && crc == 0,
		"listener: reload a context, accept, fork a session that "
		"stacks its filter and serves TLS"))
		diag_status(status);
	ok(two, "a session forked by the listener runs under two filters");
	SSL_SESSION_free(sess);
	close(cfd);
	close(l.lsock);
	close(l.cert_fd);
	close(l.key_fd);
	close(rep[0]);
	close(rep[1]);
}

/* ------------------------------------------------------------------ */
/* Auth: a password file descriptor and bcrypt                         */

struct auth_child {
	int fd;
};

static int
child_auth(void *arg)
{
	struct auth_child *a = arg;
	struct crypt_data cd;
	char *line = NULL, *colon;
	size_t cap = 0;
	ssize_t n;
	FILE *f;

	sandbox_enter(ROLE_AUTH);
	if ((f = fdopen(a->fd, "r")) == NULL)
		return 2;
	if ((n = getline(&line, &cap, f)) <= 0)
		return 3;
	line[strcspn(line, "\n")] = '\0';
	if ((colon = strchr(line, ':')) == NULL)
		return 4;
	memset(&cd, 0, sizeof(cd));
	if (crypt_rn("correct horse", colon + 1, &cd, sizeof(cd)) == NULL
	    || strcmp(cd.output, colon + 1) != 0)
		return 5;
	if (crypt_rn("wrong", colon + 1, &cd, sizeof(cd)) != NULL
	    && strcmp(cd.output, colon + 1) == 0)
		return 6;
	free(line);
	fclose(f);
	return 0;
}

static void
test_auth(void)
{
	struct crypt_data cd;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct auth_child a;
	FILE *f;
	int st;

	memset(&cd, 0, sizeof(cd));
	if (crypt_gensalt_rn("$2b$", 5, NULL, 0, salt, sizeof(salt)) == NULL
	    || crypt_rn("correct horse", salt, &cd, sizeof(cd)) == NULL
	    || (f = fopen(path("passwd"), "w")) == NULL) {
		ok(0, "auth test set-up");
		return;
	}
	fprintf(f, "alice:%s\n", cd.output);
	fclose(f);
	a.fd = open(path("passwd"), O_RDONLY | O_CLOEXEC);
	st = run_child(child_auth, &a);
	if (!ok(exited(st, 0),
		"auth: reading the password file descriptor and bcrypt pass"))
		diag_status(st);
	close(a.fd);
}

/* ------------------------------------------------------------------ */
/* Queue: spool files, the directory, the control socket               */

struct queue_child {
	int dfd; /* the spool directory */
	int ctl; /* listening control socket with one pending peer */
	uid_t uid;
};

static int
child_queue(void *arg)
{
	struct queue_child *q = arg;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct dirent *de;
	struct stat sb;
	int fd, n = 0, c;
	DIR *d;

	sandbox_enter(ROLE_QUEUE);
	fd = openat(
	    q->dfd, "tmp-1", O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (fd == -1 || write(fd, "data\n", 5) != 5 || fsync(fd) == -1
	    || pwrite(fd, "D", 1, 0) != 1 || ftruncate(fd, 5) == -1)
		return 2;
	close(fd);
	if (renameat(q->dfd, "tmp-1", q->dfd, "ID.data") == -1
	    || fsync(q->dfd) == -1 || fstatat(q->dfd, "ID.data", &sb, 0) == -1)
		return 3;
	if ((fd = openat(q->dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1
	    || (d = fdopendir(fd)) == NULL)
		return 4;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, "ID.data") == 0;
	closedir(d);
	if (n != 1)
		return 5;
	if (unlinkat(q->dfd, "ID.data", 0) == -1
	    || mkdirat(q->dfd, "sub", 0700) == -1
	    || unlinkat(q->dfd, "sub", AT_REMOVEDIR) == -1)
		return 6;
	if ((c = accept4(q->ctl, NULL, NULL, SOCK_CLOEXEC)) == -1
	    || getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1
	    || cred.uid != q->uid)
		return 7;
	close(c);
	return 0;
}

static void
test_queue(void)
{
	struct queue_child q;
	struct sockaddr_un sun;
	int peer, st;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	(void)snprintf(
	    sun.sun_path, sizeof(sun.sun_path), "%s", path("control.sock"));
	q.uid = getuid();
	q.dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	q.ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	peer = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (q.dfd == -1 || q.ctl == -1 || peer == -1
	    || bind(q.ctl, (struct sockaddr *)&sun, sizeof(sun)) == -1
	    || listen(q.ctl, 5) == -1
	    || connect(peer, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		ok(0, "queue test set-up");
		return;
	}
	st = run_child(child_queue, &q);
	if (!ok(exited(st, 0),
		"queue: create, write, fsync, rename, list, unlink spool "
		"files and check a control client's credentials"))
		diag_status(st);
	close(q.dfd);
	close(q.ctl);
	close(peer);
}

/* ------------------------------------------------------------------ */
/* Relay: c-ares over UDP, SMTP over TCP, workers                      */

struct relay_child {
	ares_channel chan;
	struct sockaddr_in smtp; /* a listening TCP socket of the parent */
	int msg_fd; /* the message, read-only */
};

static void
relay_dns_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	(void)abuf;
	(void)alen;
	*(int *)arg = status;
}

static int
relay_dns(ares_channel chan)
{
	int status = -1, nfds;
	struct timeval tv, *tvp;
	fd_set r, w;

	ares_query(
	    chan, "nothing.invalid", ns_c_in, ns_t_mx, relay_dns_cb, &status);
	for (;;) {
		FD_ZERO(&r);
		FD_ZERO(&w);
		if ((nfds = ares_fds(chan, &r, &w)) == 0)
			break;
		tvp = ares_timeout(chan, NULL, &tv);
		if (select(nfds, &r, &w, NULL, tvp) == -1 && errno != EINTR)
			return -1;
		ares_process(chan, &r, &w);
	}
	return status;
}

static int
relay_smtp(const struct sockaddr_in *sin)
{
	struct pollfd pfd;
	socklen_t len = sizeof(int);
	int fd, err = 0, on = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1
	    || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1)
		return -1;
	if (connect(fd, (const struct sockaddr *)sin, sizeof(*sin)) == -1
	    && errno != EINPROGRESS)
		return -1;
	pfd.fd = fd;
	pfd.events = POLLOUT;
	if (poll(&pfd, 1, 5000) != 1
	    || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1
	    || err != 0)
		return -1;
	if (write(fd, "QUIT\r\n", 6) != 6)
		return -1;
	close(fd);
	return 0;
}

static int
child_relay(void *arg)
{
	struct relay_child *rc = arg;
	char buf[8];
	int status, sv[2], on = 1;
	pid_t pid;

	sandbox_enter(ROLE_RELAY);
	if ((status = relay_dns(rc->chan)) != ARES_ENOTFOUND)
		return 20 + (status & 0x3f);
	if (relay_smtp(&rc->smtp) == -1)
		return 3;
	/* c-ares may look at /etc/hosts: no such file, no kill */
	if (open("/etc/hosts", O_RDONLY) != -1 || errno != ENOENT)
		return 4;
	if (pread(rc->msg_fd, buf, 4, 0) != 4 || memcmp(buf, "From", 4) != 0)
		return 5;
	if (ioctl(rc->msg_fd, FIONBIO, &on) == -1 && errno != ENOTTY)
		return 6;
	/* the message descriptor duplicated for an idle worker */
	if ((status = fcntl(rc->msg_fd, F_DUPFD_CLOEXEC, 0)) == -1)
		return 10;
	close(status);
	/* a per-job worker with its own channel */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return 7;
	if ((pid = fork()) == -1)
		return 8;
	if (pid == 0)
		_exit(write(sv[1], "done", 4) == 4 ? 7 : 1);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)
	    || WEXITSTATUS(status) != 7 || read(sv[0], buf, 4) != 4)
		return 9;
	ares_destroy(rc->chan);
	return 0;
}

/* The parent plays the DNS server: NXDOMAIN for whatever is asked. */
static void
answer_nxdomain(int udp)
{
	unsigned char pkt[512];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	struct pollfd pfd = { .fd = udp, .events = POLLIN };
	ssize_t n;

	if (poll(&pfd, 1, 5000) != 1)
		return;
	n = recvfrom(udp, pkt, sizeof(pkt), 0, (struct sockaddr *)&from, &flen);
	if (n < 12)
		return;
	pkt[2] |= 0x80; /* QR: a response */
	pkt[3] = 0x83; /* RA, RCODE 3: NXDOMAIN */
	(void)sendto(udp, pkt, (size_t)n, 0, (struct sockaddr *)&from, flen);
}

static void
test_relay(void)
{
	struct relay_child rc;
	struct ares_options o;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char servers[64], lookups[] = "b";
	int udp, tcp, st, c;
	pid_t pid;
	FILE *f;

	memset(&rc, 0, sizeof(rc));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (udp == -1 || tcp == -1
	    || bind(udp, (struct sockaddr *)&sin, sizeof(sin)) == -1
	    || bind(tcp, (struct sockaddr *)&sin, sizeof(sin)) == -1
	    || listen(tcp, 5) == -1
	    || getsockname(tcp, (struct sockaddr *)&rc.smtp, &len) == -1) {
		ok(0, "relay test set-up (loopback sockets)");
		return;
	}
	len = sizeof(sin);
	if (getsockname(udp, (struct sockaddr *)&sin, &len) == -1)
		return;
	(void)snprintf(
	    servers, sizeof(servers), "127.0.0.1:%u", ntohs(sin.sin_port));
	memset(&o, 0, sizeof(o));
	o.timeout = 3000;
	o.tries = 1;
	o.lookups = lookups;
	if (ares_init_options(&rc.chan, &o,
		ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS)
		!= ARES_SUCCESS
	    || ares_set_servers_ports_csv(rc.chan, servers) != ARES_SUCCESS) {
		ok(0, "relay test set-up (c-ares)");
		return;
	}
	if ((f = fopen(path("msg"), "w")) != NULL) {
		fputs("From: a@b\r\n\r\nhi\r\n", f);
		fclose(f);
	}
	rc.msg_fd = open(path("msg"), O_RDONLY | O_CLOEXEC);
	fflush(stdout);
	if ((pid = fork()) == 0)
		_exit(child_relay(&rc));
	answer_nxdomain(udp);
	st = -1;
	if (pid > 0)
		(void)waitpid(pid, &st, 0);
	if (!ok(exited(st, 0),
		"relay: a c-ares lookup, a TCP connection, reading the message, "
		"duplicating its descriptor and a forked worker pass"))
		diag_status(st);
	c = accept(tcp, NULL, NULL);
	ok(c != -1, "relay: the connection reached the SMTP side");
	if (c != -1)
		close(c);
	ares_destroy(rc.chan);
	close(udp);
	close(tcp);
	close(rc.msg_fd);
}

/* ------------------------------------------------------------------ */
/* The parent role and the debug mode                                  */

static int
child_parent_role(void *arg)
{
	char st[8192];
	int fd;

	(void)arg;
	sandbox_enter(ROLE_PARENT);
	if (!proc_status(getpid(), st, sizeof(st)))
		return 2;
	if (strstr(st, "\nNoNewPrivs:\t1\n") == NULL)
		return 3;
	if (strstr(st, "\nSeccomp:\t0\n") == NULL)
		return 4;
	if ((fd = open("/etc/passwd", O_RDONLY)) == -1)
		return 5;
	close(fd);
	return 0;
}

/*
 * The SIGUSR2 trigger of test/80-sigsys.t: compiled in only with
 * -DMSA_TEST_HOOKS (make hooks).  In any other build SIGUSR2 keeps its
 * default action, so a confined process simply dies of SIGUSR2.
 */
static void
test_hook(enum proc_role role)
{
	struct pipes p;
	int status = -1;
	pid_t pid;
	bool ready;

	if ((pid = start_confined(&p, role, &ready)) == -1)
		return;
	if (ready)
		(void)kill(pid, SIGUSR2);
	(void)waitpid(pid, &status, 0);
#ifdef MSA_TEST_HOOKS
	if (!ok(killed_by_sigsys(status),
		"%s: the test build's SIGUSR2 trigger makes a forbidden call "
		"(SIGSYS)",
		sandbox_role_name(role)))
		diag_status(status);
#else
	if (!ok(status != -1 && WIFSIGNALED(status)
		    && WTERMSIG(status) == SIGUSR2,
		"%s: this build has no SIGUSR2 trigger (default action)",
		sandbox_role_name(role)))
		diag_status(status);
#endif
	close_pipes(&p);
}

/* MSA_SECCOMP_DEBUG is read at start-up: re-run this binary with it. */
static void
test_debug_mode(const char *self)
{
	char out[512], want[128];
	int errp[2], st = -1;
	ssize_t n = 0, r;
	pid_t pid;

	if (pipe(errp) == -1)
		return;
	fflush(stdout);
	if ((pid = fork()) == 0) {
		char *const argv[] = { (char *)self, "--debug-child", NULL };

		dup2(errp[1], STDERR_FILENO);
		setenv("MSA_SECCOMP_DEBUG", "1", 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(errp[1]);
	while (pid > 0 && (size_t)n < sizeof(out) - 1
	    && (r = read(errp[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0)
		n += r;
	out[n] = '\0';
	if (pid > 0)
		(void)waitpid(pid, &st, 0);
	close(errp[0]);
	if (!ok(exited(st, 31), "MSA_SECCOMP_DEBUG: a forbidden call exits 31"))
		diag_status(st);
	(void)snprintf(want, sizeof(want),
	    "seccomp: role=session killed on syscall %d\n", (int)SYS_openat);
	is_str(out, want, "and names the role and the syscall number");
}

static int
debug_child(void)
{
	sandbox_enter(ROLE_SESSION);
	(void)open("/etc/passwd", O_RDONLY);
	return 99;
}

/* ------------------------------------------------------------------ */

static bool
make_cert(void)
{
	char cmd[1024];
	struct config cfg;
	char err[256];
	int cfd, kfd;

	if (mkdtemp(dir) == NULL)
		return false;
	(void)snprintf(cmd, sizeof(cmd),
	    "cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem "
	    "-subj /CN=localhost -days 2 >/dev/null 2>&1",
	    dir);
	if (system(cmd) != 0)
		return false;
	memset(&cfg, 0, sizeof(cfg));
	cfg.tls_min_version = TLS1_2_VERSION;
	cfd = open(path("cert.pem"), O_RDONLY | O_CLOEXEC);
	kfd = open(path("key.pem"), O_RDONLY | O_CLOEXEC);
	srv_ctx = tls_server_ctx(&cfg, cfd, kfd, err, sizeof(err));
	close(cfd);
	close(kfd);
	if ((cli_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return false;
	SSL_CTX_set_verify(cli_ctx, SSL_VERIFY_NONE, NULL);
	return srv_ctx != NULL;
}

int
main(int argc, char **argv)
{
	struct rlimit nocore = { 0, 0 };
	char cmd[PATH_MAX + 16];
	int st;

	if (argc == 2 && strcmp(argv[1], "--debug-child") == 0)
		return debug_child();
	/* valgrind does not emulate seccomp(2): nothing to test under it */
	if (getenv("LD_PRELOAD") != NULL
	    && strstr(getenv("LD_PRELOAD"), "vgpreload") != NULL) {
		printf(
		    "1..0 # SKIP seccomp filters cannot run under valgrind\n");
		return 0;
	}
	/* Killed children must not leave core files behind. */
	(void)setrlimit(RLIMIT_CORE, &nocore);
	(void)signal(SIGPIPE, SIG_IGN);
	tls_prime();
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS
	    || !make_cert()) {
		ok(0, "test set-up: certificate, c-ares");
		return done_testing();
	}

	test_counts();
	for (enum proc_role r = ROLE_LISTENER; r < ROLE_MAX; r++)
		test_proc_status(r);
	test_forbidden();
	test_session_work();
	test_session_tls();
	test_listener_stack();
	test_auth();
	test_queue();
	test_relay();
	st = run_child(child_parent_role, NULL);
	if (!ok(exited(st, 0),
		"parent: no-new-privs only, no filter, files still open"))
		diag_status(st);
	test_debug_mode(argv[0]);
	for (enum proc_role r = ROLE_LISTENER; r < ROLE_MAX; r++)
		test_hook(r);

	(void)snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	SSL_CTX_free(srv_ctx);
	SSL_CTX_free(cli_ctx);
	ares_library_cleanup();
	return done_testing();
}
