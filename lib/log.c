/* SPDX-License-Identifier: MIT */
/*
 * log.c - the log facade: a level filter and a pluggable sink.
 */
#include "mirrorfs/log.h"

#include <stdio.h>
#include <string.h>

int mfs_log_max_level = LOG_INFO;

static const char *log_ident = "mirrorfs";
static mfs_log_func_t log_func;

__attribute__((format(printf, 2, 0))) static void log_stderr(int level, const char *fmt,
							  va_list ap)
{
	(void)level;
	char line[4096];

	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "%s: %s\n", log_ident, line);
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
