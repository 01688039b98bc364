/* SPDX-License-Identifier: MIT */
/*
 * sigbus.h - read a mapped file without dying of SIGBUS.
 *
 * A page of a file mapping that cannot be read (a disk or network read
 * error, or the file shrank below it) raises SIGBUS when touched, which
 * kills the process. A thread arms a guard over a mapping before it reads
 * it: a failed page then reads as zeros instead, the fault is counted, and
 * disarming reports it. See sigbus.c.
 */
#ifndef MIRRORFS_SIGBUS_H
#define MIRRORFS_SIGBUS_H

#include <signal.h>
#include <stddef.h>

struct mfs_bus_guard {
	const char *lo, *hi; /* the mapping */
	volatile sig_atomic_t faults;
};

/*
 * Arm @g over [@p, @p + @len) for the calling thread (one guard per thread
 * at a time). Installs the process's SIGBUS handler on first use.
 */
void mfs_bus_guard_arm(struct mfs_bus_guard *g, const void *p, size_t len);

/* Disarm @g. Returns 0, or -EIO if a page could not be read meanwhile. */
int mfs_bus_guard_disarm(struct mfs_bus_guard *g);

#endif
