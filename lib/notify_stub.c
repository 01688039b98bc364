/* SPDX-License-Identifier: MIT */
/*
 * notify_stub.c - built without libsystemd: nothing is ever sent, and
 * no watchdog is asked for (see notify.h).
 */
#include "mirrorfs/notify.h"

int mfs_notify(const char *state)
{
	(void)state;
	return 0;
}

int mfs_notifyf(const char *fmt, ...)
{
	(void)fmt;
	return 0;
}

uint64_t mfs_notify_watchdog_usec(void)
{
	return 0;
}
