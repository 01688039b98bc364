/* SPDX-License-Identifier: MIT */
/*
 * notify.c - sd_notify through libsystemd (see notify.h; notify_stub.c
 * when meson found no libsystemd).
 */
#include "mirrorfs/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

int mfs_notify(const char *state)
{
	return sd_notify(0, state);
}

int mfs_notifyf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	r = sd_notify(0, s);
	free(s);
	return r;
}

uint64_t mfs_notify_watchdog_usec(void)
{
	uint64_t usec = 0;

	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
