/* SPDX-License-Identifier: MIT */
/*
 * pidlock.h - one lock per role on a folder, naming the holder's PID.
 *
 * A lock is a file holding "PID ROLE\n", locked with an open file
 * description lock (fcntl F_OFD_SETLK) for as long as the holder keeps
 * the fd: it survives fork (daemonizing) and is released when the
 * process dies, so it never goes stale. A data folder's lock is
 * DATADIR/.mirrorfs/lock, shared by every program that writes the folder
 * (mirrorfs, mirrord, mirrorctl rejoin/promote/restore).
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* The data folder's lock, relative to the data folder. */
#define MFS_PIDLOCK_DATA ".mirrorfs/lock"
/* A state folder's lock (mirrord --state), relative to the state folder. */
#define MFS_PIDLOCK_STATE "lock"

struct mfs_pidlock_holder {
	pid_t pid; /* 0: the holder has not written its PID yet */
	char role[32]; /* "mirrorfs", "mirrord", "mirrorctl rejoin"... or "" */
};

/*
 * Take the lock file @name (created mode 0600, its folder must exist)
 * in @dirfd exclusively without waiting, and write "PID ROLE\n" into it.
 * Returns the fd that holds the lock (closing it releases the lock),
 * -EBUSY when another open file holds it (*@ret_holder then names it),
 * or -errno.
 */
int mfs_pidlock_take(int dirfd, const char *name, const char *role,
		     struct mfs_pidlock_holder *ret_holder);

/*
 * As mfs_pidlock_take() for a data folder @datafd: creates DATADIR/.mirrorfs
 * (mode 0700) when missing, then takes MFS_PIDLOCK_DATA.
 */
int mfs_pidlock_take_data(int datafd, const char *role, struct mfs_pidlock_holder *ret_holder);

/* Write the calling process's PID into a lock taken here (after a fork). Returns 0 or -errno. */
int mfs_pidlock_update(int fd, const char *role);

/*
 * Whether the lock file @name in @dirfd is held by another open file,
 * without creating or locking anything. Returns 0 when it is free or does
 * not exist, -EBUSY when held (*@ret_holder names the holder), or -errno.
 */
int mfs_pidlock_probe(int dirfd, const char *name, struct mfs_pidlock_holder *ret_holder);

/* "mirrord (pid 123)", or "another process" when the holder is unknown, into @buf. */
const char *mfs_pidlock_describe(const struct mfs_pidlock_holder *h, char *buf, size_t len);
