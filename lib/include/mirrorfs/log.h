/* SPDX-License-Identifier: MIT */
/*
 * log.h - the log facade: syslog levels, a pluggable sink.
 *
 * The macros test the level before evaluating their arguments. The
 * *_errno() forms set errno = -r so that %m works, and return r.
 */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

typedef void (*mfs_log_func_t)(int level, const char *fmt, va_list ap);

extern int mfs_log_max_level;

/* Replace the sink (NULL = default: stderr, "PROG: message"). */
void mfs_log_set_func(mfs_log_func_t func);
/* Name used by the default sink (program name). */
void mfs_log_set_ident(const char *ident);
/*
 * Daemons: the default sink starts each line with the local time, the
 * program, its PID and the level, or, when stderr is the journal
 * (JOURNAL_STREAM), with journald's "<N>" priority prefix only.
 */
void mfs_log_set_stamps(bool on);
/* Send messages to syslog instead of stderr. */
void mfs_log_use_syslog(const char *ident);

/*
 * The repeat limiter: a message that fails again and again (a retry loop)
 * is logged the first time, then again only after an interval that doubles
 * from MFS_LOG_REPEAT_MIN_NS to MFS_LOG_REPEAT_MAX_NS; a different message
 * is logged at once and starts over. Zero-initialise it.
 */
#define MFS_LOG_REPEAT_MIN_NS (2ull * 1000000000ull)
#define MFS_LOG_REPEAT_MAX_NS (3600ull * 1000000000ull)
struct mfs_log_repeat {
	char last[512];
	uint64_t next_ns, interval_ns;
	unsigned suppressed;
};

/*
 * Whether @msg is to be logged now (@now_ns monotonic). Returns true with
 * *ret_suppressed = how many identical ones were dropped since the last
 * one logged, false to drop it.
 */
bool mfs_log_repeat_due(struct mfs_log_repeat *rp, const char *msg, uint64_t now_ns,
			unsigned *ret_suppressed);
/* Forget the last message (the failure is over): the next one is logged. */
void mfs_log_repeat_reset(struct mfs_log_repeat *rp);

void mfs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mfs_log_at(level, ...)                              \
	do {                                                \
		if ((level) <= mfs_log_max_level)           \
			mfs_log((level), __VA_ARGS__);      \
	} while (0)

#define log_debug(...) mfs_log_at(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) mfs_log_at(LOG_INFO, __VA_ARGS__)
#define log_notice(...) mfs_log_at(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) mfs_log_at(LOG_WARNING, __VA_ARGS__)
#define log_error(...) mfs_log_at(LOG_ERR, __VA_ARGS__)

#define log_full_errno(level, r, ...)                        \
	({                                                   \
		int _r_ = (r);                               \
		errno = _r_ < 0 ? -_r_ : _r_;                \
		mfs_log_at((level), __VA_ARGS__);            \
		_r_ < 0 ? _r_ : -_r_;                        \
	})
#define log_debug_errno(r, ...) log_full_errno(LOG_DEBUG, r, __VA_ARGS__)
#define log_info_errno(r, ...) log_full_errno(LOG_INFO, r, __VA_ARGS__)
#define log_warning_errno(r, ...) log_full_errno(LOG_WARNING, r, __VA_ARGS__)
#define log_error_errno(r, ...) log_full_errno(LOG_ERR, r, __VA_ARGS__)
