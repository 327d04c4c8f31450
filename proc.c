/*
 * proc.c - the one way a process enters its confinement.
 *
 * Every role calls proc_confine() exactly once, after it has opened every
 * file and primed every library it needs: chroot, drop groups and ids,
 * forbid new privileges, lower resource limits, then the seccomp filter.
 */
#include <sys/prctl.h>
#include <sys/resource.h>

#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include "msa.h"

const char *const proc_role_names[ROLE_MAX] = {
	[ROLE_PARENT] = "parent",
	[ROLE_LISTENER] = "listener",
	[ROLE_SESSION] = "session",
	[ROLE_AUTH] = "auth",
	[ROLE_QUEUE] = "queue",
	[ROLE_RELAY] = "relay",
};

static void
proc_set_title(enum proc_role role)
{
	char name[16];

	/* Shown by ps and top; truncated to 15 bytes by the kernel. */
	if (bsnprintf(name, sizeof(name), "msa-%s", proc_role_names[role]) ==
	    -1)
		return;
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

static void
proc_drop_ids(const struct config *cfg)
{
	/* -1 would mean "leave unchanged" to setres[ug]id: stay root. */
	if (cfg->uid == (uid_t)-1 || cfg->gid == (gid_t)-1)
		fatalx("no unprivileged user resolved; refusing to run");
	if (setgroups(1, &cfg->gid) == -1)
		fatal("setgroups");
	if (setresgid(cfg->gid, cfg->gid, cfg->gid) == -1)
		fatal("setresgid %u", (unsigned)cfg->gid);
	if (setresuid(cfg->uid, cfg->uid, cfg->uid) == -1)
		fatal("setresuid %u", (unsigned)cfg->uid);
	/* Paranoia: the drop must be irreversible. */
	if (cfg->uid != 0 && setuid(0) != -1)
		fatalx("could regain root after dropping privileges");
}

void
proc_confine(const struct config *cfg, enum proc_role role, const char *dir)
{
	struct rlimit core = { 0, 0 };

	log_setproc(proc_role_names[role]);
	proc_set_title(role);
	if (dir != NULL) {
		if (chroot(dir) == -1)
			fatal("chroot %s", dir);
		if (chdir("/") == -1)
			fatal("chdir /");
	}
	proc_drop_ids(cfg);
	/*
	 * Never outlive the process that forked us.  The signal acts only
	 * once the current system call returns, so it does not close the
	 * race of a queue sync worker still writing into tmp/ after a
	 * restarted queue emptied it: the parent does, by killing a dead
	 * child's whole process group and restarting only once the group
	 * is empty (msa.c, reap_one()).  Set after the id drop, which
	 * clears it.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == -1)
		fatal("prctl pdeathsig");
	if (setrlimit(RLIMIT_CORE, &core) == -1)
		fatal("setrlimit core");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		fatal("prctl dumpable");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		fatal("prctl no_new_privs");
	sandbox_enter(role);
	log_debug("event=confined role=%s root=%s uid=%u", proc_role_names[role],
	    dir != NULL ? dir : "-", (unsigned)cfg->uid);
}
