/*
 * control.c - msa queue list | show ID | flush [ID] | delete ID.
 *
 * A client of the queue process's control socket (<spool>/control.sock, a
 * SOCK_SEQPACKET unix socket bound by the root parent).  It speaks the
 * same IPC framing as the daemon's processes: one request, then
 * IMSG_CTL_TEXT chunks printed as they come, then IMSG_CTL_END with an
 * errno-style status.  The queue process only answers root and the msa
 * user (SO_PEERCRED).
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "msa.h"

#define CONTROL_TIMEOUT_MS (60 * 1000)

struct control_cmd {
	const char *name;
	uint32_t type;
	int min_args, max_args; /* after the command word */
};

static const struct control_cmd control_cmds[] = {
	{ "list", IMSG_CTL_LIST, 0, 0 },
	{ "show", IMSG_CTL_SHOW, 1, 1 },
	{ "flush", IMSG_CTL_FLUSH, 0, 1 },
	{ "delete", IMSG_CTL_DELETE, 1, 1 },
};

static int
control_usage(void)
{
	fprintf(stderr, "usage: msa [-c FILE] queue list | show ID | "
			"flush [ID] | delete ID\n");
	return 1;
}

static int
control_connect(const struct config *cfg, char *path, size_t pathlen)
{
	struct sockaddr_un sun;
	int fd;

	if (bsnprintf(path, pathlen, "%s/%s", cfg->spool, SPOOL_CONTROL) ==
	    -1 ||
	    strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "msa: queue: control socket path too long: "
				"%s/%s\n",
		    cfg->spool, SPOOL_CONTROL);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy_msa(sun.sun_path, path, sizeof(sun.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1) {
		fprintf(stderr, "msa: queue: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int e = errno;

		fprintf(stderr,
		    "msa: queue: cannot reach the queue process at %s: %s%s\n",
		    path, strerror(e),
		    e == ENOENT || e == ECONNREFUSED ? " (is msa running?)"
		    : e == EACCES ? " (only root and the msa user may)" : "");
		(void)close(fd);
		return -1;
	}
	return fd;
}

/* Print the reply; the exit status. */
static int
control_reply(struct ipc_chan *ch, const char *path, const char *user,
    const char *cmd, const char *id)
{
	struct ipc_ctl_end end;
	struct ipc_msg msg;
	int r;

	for (;;) {
		r = ipc_wait(ch, &msg, CONTROL_TIMEOUT_MS);
		if (r == 0) {
			fprintf(stderr, "msa: queue: no answer from the queue "
					"process at %s\n",
			    path);
			return 2;
		}
		if (r < 0) {
			fprintf(stderr, "msa: queue: the queue process at %s "
					"closed the connection (only root and "
					"user %s may use it)\n",
			    path, user);
			return 2;
		}
		if (msg.fd != -1)
			(void)close(msg.fd);
		if (msg.hdr.type == IMSG_CTL_TEXT) {
			if (msg.hdr.len > 0 &&
			    fwrite(msg.data, 1, msg.hdr.len, stdout) !=
				msg.hdr.len)
				return 2;
			continue;
		}
		if (msg.hdr.type != IMSG_CTL_END ||
		    msg.hdr.len != sizeof(end)) {
			fprintf(stderr, "msa: queue: unexpected reply from %s\n",
			    path);
			return 2;
		}
		memcpy(&end, msg.data, sizeof(end));
		if (fflush(stdout) == EOF)
			return 2;
		if (end.status == 0)
			return 0;
		if (end.status == ENOENT) {
			fprintf(stderr, "msa: queue: %s: no such message: %s\n",
			    cmd, id);
			return 1;
		}
		fprintf(stderr, "msa: queue: %s failed: %s\n", cmd,
		    strerror(end.status));
		return 2;
	}
}

int
control_main(struct config *cfg, int argc, char **argv)
{
	const struct control_cmd *cmd = NULL;
	struct ipc_queue_id qi;
	struct ipc_chan ch;
	char path[MAX_PATHLEN + 32];
	const char *id = "";
	size_t i;
	int fd, nargs, status;

	if (argc > 0 && strcmp(argv[0], "queue") == 0) {
		argc--;
		argv++;
	}
	if (argc < 1)
		return control_usage();
	for (i = 0; i < sizeof(control_cmds) / sizeof(control_cmds[0]); i++)
		if (strcmp(argv[0], control_cmds[i].name) == 0)
			cmd = &control_cmds[i];
	nargs = argc - 1;
	if (cmd == NULL || nargs < cmd->min_args || nargs > cmd->max_args)
		return control_usage();
	if (nargs == 1) {
		id = argv[1];
		if (!queue_id_valid(id)) {
			fprintf(stderr, "msa: queue: %s: not a queue id: %s\n",
			    cmd->name, id);
			return 1;
		}
	}
	if ((fd = control_connect(cfg, path, sizeof(path))) == -1)
		return 2;
	ipc_init(&ch, fd);
	memset(&qi, 0, sizeof(qi));
	strlcpy_msa(qi.id, id, sizeof(qi.id));
	ipc_compose(&ch, cmd->type, 0, -1, &qi,
	    cmd->type == IMSG_CTL_LIST ? 0 : sizeof(qi));
	if (ipc_flush_all(&ch) == -1) {
		fprintf(stderr, "msa: queue: cannot send to %s: %s\n", path,
		    strerror(errno));
		ipc_close(&ch);
		return 2;
	}
	status = control_reply(&ch, path, cfg->user, cmd->name, id);
	ipc_close(&ch);
	return status;
}
