/* SPDX-License-Identifier: MIT */
/*
 * log.c - the log facade: a level filter and a pluggable sink.
 *
 * The default sink writes one line per message to stderr. The daemons ask
 * for stamps (mfs_log_set_stamps): each line then starts with the local
 * time and the level, unless stderr is the journal (JOURNAL_STREAM names
 * it), which records both itself: there the line starts with the kernel
 * style "<N>" priority that journald reads. The repeat limiter keeps a
 * failure retried in a loop from filling the log.
 */
#include "mirrorfs/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int mfs_log_max_level = LOG_INFO;

static const char *log_ident = "mirrorfs";
static mfs_log_func_t log_func;
static bool log_stamps;
static int log_journal = -1; /* stderr is the journal: 1, not: 0, unknown: -1 */

static const char *const level_names[] = {
	"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

/* Whether stderr is the stream JOURNAL_STREAM ("DEV:INODE") names. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* "2026-01-31T12:00:00.123+0100 " into @buf (@size >= 64). */
static void format_stamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char zone[8];
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	snprintf(buf + n, size - n, ".%03ld%s ", ts.tv_nsec / 1000000, zone);
}

__attribute__((format(printf, 2, 0))) static void log_stderr(int level, const char *fmt,
							  va_list ap)
{
	char line[4096], stamp[64] = "";
	int lv = level < 0 ? 0 : level > LOG_DEBUG ? LOG_DEBUG : level;

	vsnprintf(line, sizeof(line), fmt, ap);
	if (!log_stamps) {
		fprintf(stderr, "%s: %s\n", log_ident, line);
		return;
	}
	if (log_journal < 0)
		log_journal = stderr_is_journal();
	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", lv, line);
		return;
	}
	format_stamp(stamp, sizeof(stamp));
	fprintf(stderr, "%s%s[%ld] %s: %s\n", stamp, log_ident, (long)getpid(), level_names[lv],
		line);
}

__attribute__((format(printf, 2, 0))) static void log_syslog(int level, const char *fmt,
							  va_list ap)
{
	vsyslog(level, fmt, ap);
}

void mfs_log_set_func(mfs_log_func_t func)
{
	log_func = func;
}

void mfs_log_set_ident(const char *ident)
{
	const char *slash = strrchr(ident, '/');

	log_ident = slash ? slash + 1 : ident;
}

void mfs_log_set_stamps(bool on)
{
	log_stamps = on;
	log_journal = -1;
}

void mfs_log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID, LOG_DAEMON);
	log_func = log_syslog;
}

void mfs_log(int level, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	errno = saved; /* keep %m meaningful */
	(log_func ? log_func : log_stderr)(level, fmt, ap);
	va_end(ap);
	errno = saved;
}

bool mfs_log_repeat_due(struct mfs_log_repeat *rp, const char *msg, uint64_t now_ns,
			unsigned *ret_suppressed)
{
	if (strncmp(rp->last, msg, sizeof(rp->last) - 1) || !rp->interval_ns) {
		snprintf(rp->last, sizeof(rp->last), "%s", msg);
		rp->interval_ns = MFS_LOG_REPEAT_MIN_NS;
		rp->next_ns = now_ns + rp->interval_ns;
		rp->suppressed = 0;
		*ret_suppressed = 0;
		return true;
	}
	if (now_ns < rp->next_ns) {
		rp->suppressed++;
		return false;
	}
	*ret_suppressed = rp->suppressed;
	rp->suppressed = 0;
	if (rp->interval_ns < MFS_LOG_REPEAT_MAX_NS)
		rp->interval_ns *= 2;
	rp->next_ns = now_ns + rp->interval_ns;
	return true;
}

void mfs_log_repeat_reset(struct mfs_log_repeat *rp)
{
	memset(rp, 0, sizeof(*rp));
}
