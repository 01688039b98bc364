/* SPDX-License-Identifier: MIT */
/*
 * notify.h - readiness, status and watchdog for the service manager
 * (sd_notify). Built on libsystemd when meson found it; otherwise every
 * call is a no-op (notify_stub.c). Outside systemd (no NOTIFY_SOCKET)
 * nothing is sent either.
 */
#pragma once

#include <stdint.h>

/*
 * Send @state ("READY=1", "STATUS=...", "WATCHDOG=1", newline-separated
 * assignments) to $NOTIFY_SOCKET. Returns 1 if sent, 0 if there is no
 * socket (or no libsystemd), -errno on failure.
 */
int mfs_notify(const char *state);
/* The same with a printf format. */
int mfs_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The watchdog interval the service manager asks of this process
 * ($WATCHDOG_USEC, for this PID), in microseconds; 0 when none.
 */
uint64_t mfs_notify_watchdog_usec(void);
