/*
 * log.c - one key=value line per event, to stderr or syslog.
 *
 * fatal() and log_warn() append strerror(errno); fatalx() and log_warnx()
 * do not.  Every line is sanitised so that text from the network cannot
 * split it or forge a second event.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "msa.h"

static enum log_level log_min = LOG_LVL_INFO;
static bool log_to_syslog;
static char log_proc[32] = "msa";

void
log_init(enum log_level level, bool to_syslog, const char *procname)
{
	log_min = level;
	log_to_syslog = to_syslog;
	log_setproc(procname);
	if (to_syslog) /* LOG_NDELAY: connect to /dev/log before any chroot */
		openlog("msa", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_setproc(const char *procname)
{
	strlcpy_msa(log_proc, procname, sizeof(log_proc));
}

static void
log_clean(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void __attribute__((format(printf, 3, 0)))
log_emit(enum log_level level, const char *errstr, const char *fmt,
    va_list ap)
{
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	static const char *const name[] = { "debug", "info", "warning",
		"error" };
	char msg[2048], line[2300];
	int saved = errno;

	if (level < log_min)
		return;
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	log_clean(msg);
	if (log_to_syslog) {
		if (errstr != NULL)
			syslog(prio[level], "proc=%s %s error=\"%s\"", log_proc,
			    msg, errstr);
		else
			syslog(prio[level], "proc=%s %s", log_proc, msg);
	} else {
		struct timespec ts;
		struct tm tm;
		char stamp[32] = "";

		if (clock_gettime(CLOCK_REALTIME, &ts) == 0 &&
		    gmtime_r(&ts.tv_sec, &tm) != NULL)
			(void)strftime(stamp, sizeof(stamp),
			    "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (errstr != NULL)
			(void)snprintf(line, sizeof(line),
			    "%s msa[%ld] level=%s proc=%s %s error=\"%s\"\n",
			    stamp, (long)getpid(), name[level], log_proc, msg,
			    errstr);
		else
			(void)snprintf(line, sizeof(line),
			    "%s msa[%ld] level=%s proc=%s %s\n", stamp,
			    (long)getpid(), name[level], log_proc, msg);
		/* One write per line so concurrent processes do not interleave. */
		(void)write_all(STDERR_FILENO, line, strlen(line));
	}
	errno = saved;
}

#define LOG_FN(fn, level, witherr)                                      \
	void fn(const char *fmt, ...)                                   \
	{                                                               \
		va_list ap;                                             \
		const char *e = (witherr) ? strerror(errno) : NULL;     \
		va_start(ap, fmt);                                      \
		log_emit(level, e, fmt, ap);                            \
		va_end(ap);                                             \
	}

LOG_FN(log_debug, LOG_LVL_DEBUG, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_warnx, LOG_LVL_WARNING, 0)
LOG_FN(log_warn, LOG_LVL_WARNING, 1)
LOG_FN(log_errorx, LOG_LVL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;
	const char *e = strerror(errno);

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, e, fmt, ap);
	va_end(ap);
	exit(2);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(2);
}

const char *
log_sanitize(char *buf, size_t bufsize, const char *s)
{
	size_t i;

	if (bufsize == 0)
		return "";
	if (s == NULL || *s == '\0') {
		strlcpy_msa(buf, "-", bufsize);
		return buf;
	}
	for (i = 0; s[i] != '\0' && i + 1 < bufsize; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = (c <= 0x20 || c == 0x7f || c == '"' || c == '=') ?
		    '?' : (char)c;
	}
	buf[i] = '\0';
	return buf;
}
