/*
 * sandbox.c - one seccomp allow-list per process role.
 *
 * Each role's filter is built by one function from a few tables: the calls
 * every sandboxed role makes (memory, time, signals, stdio, IPC), the
 * role's own calls, and a handful of argument rules that narrow the calls
 * that matter (socket families, fcntl commands, ioctl numbers, setsockopt
 * options, clone flags, no executable mappings).  Anything else kills the
 * whole process (SCMP_ACT_KILL_PROCESS; SCMP_ACT_KILL would end only the
 * offending thread).
 *
 * Sessions are forked by the listener after the listener has entered its
 * own sandbox, so the session filter is stacked on top of the listener's:
 * the listener's list therefore contains the session's, plus what the
 * listener and a freshly forked session (before its own filter) need.
 *
 * The parent is not filtered: it forks and chroots the children, which
 * inherit every filter, and re-reads files and user databases (NSS loads
 * shared libraries) on SIGHUP.  A list that allowed all that would not be
 * worth its name, so the parent only gets no-new-privs.
 *
 * MSA_SECCOMP_DEBUG=1 in the environment at start-up turns the default
 * action into SIGSYS with a handler that names the role and the syscall
 * number on stderr, then exits 31 (`scmp_sys_resolver NR` from Debian's
 * seccomp package, or ausyscall, names the call).
 *
 * Test builds only (-DMSA_TEST_HOOKS, `make hooks`, never the release
 * binary): once a role's filter is loaded, SIGUSR2 makes the process call
 * execve("/bin/sh") straight through syscall(2), which every role's list
 * forbids, so test/80-sigsys.t can watch the kernel kill it with SIGSYS
 * and the daemon recover.
 */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <seccomp.h>

#include "msa.h"

#define SB_MAXCMP 2
#define nitems(a) (sizeof(a) / sizeof((a)[0]))

struct sb_cmp {
	unsigned arg;
	enum scmp_compare op;
	uint64_t a, b; /* EQ: a; MASKED_EQ: (arg & a) == b */
};

struct sb_rule {
	int nr; /* SCMP_SYS(): negative if the call does not exist here */
	int errnum; /* 0: allow; else fail the call with this errno */
	unsigned ncmp; /* all comparisons must hold */
	struct sb_cmp cmp[SB_MAXCMP];
};

/* clang-format off */
#define SB_EQ(n, v) { (n), SCMP_CMP_EQ, (uint64_t)(v), 0 }
#define SB_MASKED(n, m, v) \
	{ (n), SCMP_CMP_MASKED_EQ, (uint64_t)(m), (uint64_t)(v) }

#define ALLOW(sc) { SCMP_SYS(sc), 0, 0, { { 0 } } }
#define ALLOW_IF(sc, c) { SCMP_SYS(sc), 0, 1, { c } }
#define ALLOW_IF2(sc, c1, c2) { SCMP_SYS(sc), 0, 2, { c1, c2 } }
#define FAIL(sc, e) { SCMP_SYS(sc), (e), 0, { { 0 } } }
#define FAIL_IF(sc, e, c) { SCMP_SYS(sc), (e), 1, { c } }

/* Namespaces, threads and shared address spaces are never needed. */
#define SB_CLONE_DENY \
	(CLONE_VM | CLONE_THREAD | CLONE_NEWNS | CLONE_NEWUTS | \
	    CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
	    CLONE_NEWCGROUP)

/* Every sandboxed role. */
static const struct sb_rule sb_base[] = {
	/* stdio, logs, OpenSSL over sockets, descriptors received by IPC */
	ALLOW(read), ALLOW(write), ALLOW(readv), ALLOW(writev), ALLOW(close),
	ALLOW(lseek), ALLOW(fstat), ALLOW(newfstatat),
	/* IPC frames with SCM_RIGHTS; syslog's send(); OpenSSL's send/recv */
	ALLOW(sendmsg), ALLOW(recvmsg), ALLOW(sendto), ALLOW(recvfrom),
	ALLOW(poll), ALLOW(ppoll),
	/* non-blocking mode and close-on-exec; fdopen() asks F_GETFL */
	ALLOW_IF(fcntl, SB_EQ(1, F_GETFL)), ALLOW_IF(fcntl, SB_EQ(1, F_SETFL)),
	ALLOW_IF(fcntl, SB_EQ(1, F_GETFD)), ALLOW_IF(fcntl, SB_EQ(1, F_SETFD)),
	/* glibc malloc; never an executable mapping */
	ALLOW(brk), ALLOW(munmap), ALLOW(mremap), ALLOW(madvise),
	ALLOW_IF(mmap, SB_MASKED(2, PROT_EXEC, 0)),
	ALLOW_IF(mprotect, SB_MASKED(2, PROT_EXEC, 0)),
	ALLOW(futex),
	/* clocks outside the vDSO, timeouts and deliberate delays */
	ALLOW(clock_gettime), ALLOW(gettimeofday), ALLOW(time),
	ALLOW(clock_nanosleep), ALLOW(nanosleep),
	/* RAND_bytes reseeds; log lines carry the pid; raise() for abort() */
	ALLOW(getrandom), ALLOW(getpid), ALLOW(gettid),
	ALLOW(rt_sigaction), ALLOW(rt_sigprocmask), ALLOW(rt_sigreturn),
	ALLOW(restart_syscall), ALLOW(exit), ALLOW(exit_group),
	/* glibc syslog() reconnects to /dev/log after a syslogd restart:
	 * refuse quietly instead of killing the process over a log line */
	FAIL_IF(socket, EACCES, SB_EQ(0, AF_UNIX)),
	/* isatty() on a stdio stream: "not a terminal" */
	FAIL_IF(ioctl, ENOTTY, SB_EQ(1, TCGETS)),
};

/* Socket options a session or the listener sets on a client socket. */
#define SB_SOCKOPT(level, name) \
	ALLOW_IF2(setsockopt, SB_EQ(1, level), SB_EQ(2, name))
#define SB_CLIENT_SOCKOPTS \
	SB_SOCKOPT(SOL_SOCKET, SO_KEEPALIVE), \
	SB_SOCKOPT(SOL_SOCKET, SO_LINGER), \
	SB_SOCKOPT(SOL_SOCKET, SO_RCVTIMEO), \
	SB_SOCKOPT(SOL_SOCKET, SO_SNDTIMEO), \
	SB_SOCKOPT(IPPROTO_TCP, TCP_NODELAY)

/* One client connection and the queue file it writes. */
static const struct sb_rule sb_session[] = {
	ALLOW(shutdown), ALLOW(getpeername), ALLOW(getsockname),
	SB_CLIENT_SOCKOPTS,
	ALLOW(pread64), ALLOW(pwrite64), ALLOW(ftruncate), ALLOW(fsync),
	ALLOW(fdatasync),
};

/* Forking: plain fork() only; clone3 makes glibc fall back to clone. */
#define SB_FORK_ONLY \
	ALLOW_IF(clone, SB_MASKED(0, SB_CLONE_DENY, 0)), FAIL(clone3, ENOSYS), \
	ALLOW(set_robust_list), ALLOW(wait4), ALLOW(waitid), \
	ALLOW(close_range), \
	ALLOW_IF(socketpair, SB_EQ(0, AF_UNIX))
/* ... and signalling the children: by pid, no process groups, no -1. */
#define SB_FORK \
	SB_FORK_ONLY, ALLOW_IF(kill, SB_MASKED(0, 0x80000000u, 0))

/* Accept, fork sessions; the session filter still has to be loadable. */
static const struct sb_rule sb_listener[] = {
	ALLOW(accept), ALLOW(accept4),
	SB_FORK,
	/* a fresh session enters its own sandbox and may lower limits */
	ALLOW_IF(prctl, SB_EQ(0, PR_SET_NO_NEW_PRIVS)),
	ALLOW_IF(prctl, SB_EQ(0, PR_GET_NO_NEW_PRIVS)),
	/* any operation: a filter can only narrow what is allowed */
	ALLOW(seccomp),
	ALLOW_IF(prlimit64, SB_EQ(0, 0)),
};

/* Chrooted into the spool, which it owns. */
static const struct sb_rule sb_queue[] = {
	ALLOW(openat), ALLOW(open), ALLOW(stat), ALLOW(lstat),
	ALLOW(getdents64), ALLOW(unlinkat), ALLOW(unlink), ALLOW(renameat),
	ALLOW(renameat2), ALLOW(rename), ALLOW(mkdirat), ALLOW(mkdir),
	ALLOW(fsync), ALLOW(fdatasync), ALLOW(ftruncate), ALLOW(pread64),
	ALLOW(pwrite64), ALLOW(fstatfs), ALLOW(statfs),
	/* the control socket: accept and check the peer (SO_PEERCRED) */
	ALLOW(accept), ALLOW(accept4), ALLOW(getsockopt),
	/* sync workers are started on demand, retired by closing */
	SB_FORK_ONLY,
};

/* Outbound SMTP and DNS (c-ares), per-job workers. */
static const struct sb_rule sb_relay[] = {
	ALLOW_IF(socket, SB_EQ(0, AF_INET)),
	ALLOW_IF(socket, SB_EQ(0, AF_INET6)),
	ALLOW(connect), ALLOW(shutdown), ALLOW(getsockopt),
	ALLOW(getsockname), ALLOW(getpeername),
	SB_CLIENT_SOCKOPTS,
	SB_SOCKOPT(SOL_SOCKET, SO_SNDBUF), SB_SOCKOPT(SOL_SOCKET, SO_RCVBUF),
	ALLOW(sendmmsg), ALLOW(recvmmsg), ALLOW(select), ALLOW(pselect6),
	ALLOW_IF(ioctl, SB_EQ(1, FIONBIO)), ALLOW_IF(ioctl, SB_EQ(1, FIONREAD)),
	ALLOW(pread64),
	/* a job's message descriptor handed on to an idle worker */
	ALLOW_IF(fcntl, SB_EQ(1, F_DUPFD_CLOEXEC)),
	SB_FORK,
	/* c-ares reads /etc/hosts lazily: "no such file" in the chroot */
	FAIL(openat, ENOENT), FAIL(open, ENOENT),
};

#ifdef MSA_SANITIZER
/*
 * Test builds only (make check-asan): the ASan/UBSan runtime needs an
 * alternate signal stack and reads /proc/self/maps to write its report.
 * A release binary never has this table.
 */
static const struct sb_rule sb_sanitizer[] = {
	ALLOW(sigaltstack), ALLOW(readlink), ALLOW(readlinkat),
	ALLOW(openat), ALLOW(open), ALLOW(getppid), ALLOW(sched_yield),
	ALLOW(prctl), ALLOW(getrlimit), ALLOW(prlimit64), ALLOW(munmap),
	ALLOW(getdents64), ALLOW(dup), ALLOW(dup2), ALLOW(pipe), ALLOW(pipe2),
};
#define SB_SAN SB_TABLE(sb_sanitizer)
#else
#define SB_SAN { NULL, 0 }
#endif

struct sb_table {
	const struct sb_rule *rules;
	size_t n;
};
#define SB_TABLE(t) { (t), nitems(t) }
#define SB_TABLES 4

/* The listener's list holds the session's: sessions stack on it. */
static const struct sb_table sb_roles[ROLE_MAX][SB_TABLES] = {
	[ROLE_LISTENER] = { SB_TABLE(sb_base), SB_TABLE(sb_session),
	    SB_TABLE(sb_listener), SB_SAN },
	[ROLE_SESSION] = { SB_TABLE(sb_base), SB_TABLE(sb_session), SB_SAN },
	/* the password file arrives as a descriptor: the base list reads it */
	[ROLE_AUTH] = { SB_TABLE(sb_base), SB_SAN },
	[ROLE_QUEUE] = { SB_TABLE(sb_base), SB_TABLE(sb_queue), SB_SAN },
	[ROLE_RELAY] = { SB_TABLE(sb_base), SB_TABLE(sb_relay), SB_SAN },
};
/* clang-format on */

static bool sb_debug; /* MSA_SECCOMP_DEBUG, read once at start-up */
static bool sb_disabled; /* sandbox.seccomp: false */

void
sandbox_configure(bool seccomp)
{
	sb_disabled = !seccomp;
	if (sb_disabled)
		log_warnx("event=sandbox-disabled reason=\"sandbox.seccomp is "
			  "false\" hint=\"no process is confined by seccomp; "
			  "use this only on a kernel without it\"");
}
static const char *volatile sb_current = "none";

__attribute__((constructor)) static void
sandbox_read_env(void)
{
	const char *v = getenv("MSA_SECCOMP_DEBUG");

	sb_debug = v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static size_t
sb_append(char *buf, size_t len, size_t size, const char *s)
{
	while (*s != '\0' && len + 1 < size)
		buf[len++] = *s++;
	return len;
}

/* Async-signal-safe: no stdio, no locale, no allocation. */
static void
sandbox_sigsys(int sig, siginfo_t *si, void *uctx)
{
	char msg[160], num[24];
	size_t len = 0, i = sizeof(num) - 1;
	long nr = si->si_syscall;
	ssize_t w;

	(void)sig;
	(void)uctx;
	num[i] = '\0';
	if (nr < 0)
		nr = -nr;
	do {
		num[--i] = (char)('0' + nr % 10);
		nr /= 10;
	} while (nr > 0 && i > 0);
	len = sb_append(msg, len, sizeof(msg), "seccomp: role=");
	len = sb_append(msg, len, sizeof(msg), sb_current);
	len = sb_append(msg, len, sizeof(msg), " killed on syscall ");
	len = sb_append(msg, len, sizeof(msg), num + i);
	len = sb_append(msg, len, sizeof(msg), "\n");
	w = write(STDERR_FILENO, msg, len);
	(void)w;
	_exit(31);
}

static void
sandbox_debug_handler(void)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sandbox_sigsys;
	sa.sa_flags = SA_SIGINFO;
	if (sigemptyset(&sa.sa_mask) == -1
	    || sigaction(SIGSYS, &sa, NULL) == -1)
		fatal("event=sandbox_error call=sigaction");
	if (sigemptyset(&set) == -1 || sigaddset(&set, SIGSYS) == -1
	    || sigprocmask(SIG_UNBLOCK, &set, NULL) == -1)
		fatal("event=sandbox_error call=sigprocmask");
}

#ifdef MSA_TEST_HOOKS
/*
 * The forbidden call, raw (no libc wrapper that could check anything
 * first).  Were it ever allowed, the shell would only exit 97, which the
 * parent logs as exit=97 instead of signal=31: the test sees it.
 */
static void
sandbox_hook_forbidden(int sig)
{
	static char sh[] = "/bin/sh", c[] = "-c", cmd[] = "exit 97";
	char *const argv[] = { sh, c, cmd, NULL };
	char *const envp[] = { NULL };

	(void)sig;
	(void)syscall(SYS_execve, sh, argv, envp);
	_exit(98); /* only if the kernel refused it without killing us */
}

static void
sandbox_hook_install(const char *name)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sandbox_hook_forbidden;
	if (sigemptyset(&sa.sa_mask) == -1
	    || sigaction(SIGUSR2, &sa, NULL) == -1
	    || sigemptyset(&set) == -1 || sigaddset(&set, SIGUSR2) == -1
	    || sigprocmask(SIG_UNBLOCK, &set, NULL) == -1)
		fatal("event=sandbox_error role=%s call=test-hook", name);
	log_debug("event=sandbox-test-hook role=%s signal=SIGUSR2", name);
}
#endif

static void
sandbox_add(scmp_filter_ctx ctx, const char *role, const struct sb_rule *r)
{
	struct scmp_arg_cmp cmp[SB_MAXCMP];
	uint32_t action;
	unsigned i;
	int rc;

	if (r->nr < 0) /* the call does not exist on this architecture */
		return;
	action = r->errnum != 0 ? SCMP_ACT_ERRNO((uint32_t)r->errnum)
				: SCMP_ACT_ALLOW;
	memset(cmp, 0, sizeof(cmp));
	for (i = 0; i < r->ncmp && i < SB_MAXCMP; i++) {
		cmp[i].arg = r->cmp[i].arg;
		cmp[i].op = r->cmp[i].op;
		cmp[i].datum_a = r->cmp[i].a;
		cmp[i].datum_b = r->cmp[i].b;
	}
	rc = seccomp_rule_add_array(ctx, action, r->nr, i, cmp);
	if (rc < 0) {
		errno = -rc;
		fatal("event=sandbox_error role=%s call=seccomp_rule_add "
		      "syscall=%d",
		    role, r->nr);
	}
}

/* abort() raises SIGABRT at itself; nobody else's threads. */
static void
sandbox_add_abort(scmp_filter_ctx ctx, const char *role)
{
	const struct sb_rule r
	    = ALLOW_IF2(tgkill, SB_EQ(0, getpid()), SB_EQ(2, SIGABRT));

	sandbox_add(ctx, role, &r);
}

static scmp_filter_ctx
sandbox_build(enum proc_role role, uint32_t deny)
{
	const char *name = proc_role_names[role];
	scmp_filter_ctx ctx;
	size_t t, i;
	int rc;

	if ((ctx = seccomp_init(deny)) == NULL)
		fatalx("event=sandbox_error role=%s call=seccomp_init "
		       "hint=\"seccomp filters with the kill-process action "
		       "are unavailable (Linux 4.14 or later needed); "
		       "sandbox.seccomp: false runs without them\"",
		    name);
	/* 32-bit or x32 calls from this 64-bit process: same fate. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, deny)) < 0) {
		errno = -rc;
		fatal(
		    "event=sandbox_error role=%s call=seccomp_attr_set", name);
	}
	for (t = 0; t < SB_TABLES; t++)
		for (i = 0; i < sb_roles[role][t].n; i++)
			sandbox_add(ctx, name, &sb_roles[role][t].rules[i]);
	sandbox_add_abort(ctx, name);
	return ctx;
}

static void
sandbox_no_new_privs(void)
{
	int r = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);

	if (r == 1)
		return;
	if (r == -1 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("event=sandbox_error call=prctl(PR_SET_NO_NEW_PRIVS)");
}

void
sandbox_enter(enum proc_role role)
{
	scmp_filter_ctx ctx;
	const char *name;
	int rc;

	if ((int)role < 0 || role >= ROLE_MAX)
		fatalx("event=sandbox_error role=%d hint=\"unknown role\"",
		    (int)role);
	name = proc_role_names[role];
	sandbox_no_new_privs();
	if (role == ROLE_PARENT) {
		log_debug(
		    "event=sandbox role=parent filter=none no_new_privs=1");
		return;
	}
	if (sb_disabled) {
		/* Loud on purpose: every role says it at every start. */
		if (role != ROLE_SESSION)
			log_warnx("event=sandbox-disabled role=%s filter=none",
			    name);
		return;
	}
	ctx = sandbox_build(
	    role, sb_debug ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
	log_debug("event=sandbox role=%s syscalls=%d mode=%s", name,
	    sandbox_syscall_count(role), sb_debug ? "trap" : "kill");
	sb_current = name;
	if (sb_debug)
		sandbox_debug_handler();
	rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc < 0) {
		errno = -rc;
		fatal("event=sandbox_error role=%s call=seccomp_load "
		      "hint=\"cannot install the seccomp filter; on a kernel "
		      "without seccomp filtering set sandbox.seccomp: false "
		      "(not recommended)\"",
		    name);
	}
#ifdef MSA_TEST_HOOKS
	sandbox_hook_install(name);
#endif
}

int
sandbox_syscall_count(enum proc_role role)
{
	int seen[512];
	size_t t, i, nseen = 0, k;
	int nr;

	if ((int)role < 0 || role >= ROLE_MAX || role == ROLE_PARENT)
		return 0;
	for (t = 0; t < SB_TABLES; t++) {
		for (i = 0; i < sb_roles[role][t].n; i++) {
			const struct sb_rule *r = &sb_roles[role][t].rules[i];

			if ((nr = r->nr) < 0 || r->errnum != 0)
				continue;
			for (k = 0; k < nseen && seen[k] != nr; k++)
				;
			if (k == nseen && nseen < nitems(seen))
				seen[nseen++] = nr;
		}
	}
	return (int)nseen + 1; /* + tgkill for abort() */
}

const char *
sandbox_role_name(enum proc_role role)
{
	if ((int)role < 0 || role >= ROLE_MAX)
		return "unknown";
	return proc_role_names[role];
}
