/* SPDX-License-Identifier: MIT */
/*
 * lock_i.h - private interfaces of flush-and-lock: the lock itself
 * (lock.c: take, drop, quiesce, the ctl commands, status) and the parking
 * of mutations while it is held (park.c: the wrapped ops table, the gate,
 * the FIFO of parked requests and the resumer thread).
 */
#pragma once

#include "fs.h"

#define LOCK_TIMEOUT_DEFAULT_MS UINT64_C(60000)
#define LOCK_TIMEOUT_MAX_MS UINT64_C(604800000) /* a week */
#define NS_PER_MS UINT64_C(1000000)

enum park_kind {
	PK_SETATTR,
	PK_MKNOD,
	PK_MKDIR,
	PK_SYMLINK,
	PK_UNLINK,
	PK_RMDIR,
	PK_RENAME,
	PK_LINK,
	PK_OPEN,
	PK_CREATE,
	PK_WRITE,
	PK_FALLOCATE,
	PK_COPY,
	PK_SETXATTR,
	PK_REMOVEXATTR,
};

/* A request waiting for the unlock, with copies of all its arguments. */
struct fs_parked {
	struct fs_parked *next;
	enum park_kind kind;
	fuse_req_t req;
	fuse_ino_t ino, ino2;
	struct fuse_file_info fi, fi2;
	bool has_fi;
	struct stat attr;
	int valid, flags, mode;
	mode_t fmode;
	dev_t rdev;
	off_t off, off2, len;
	size_t size;
	char *name, *name2; /* names, link target, xattr name */
	char *data; /* write data, xattr value */
};

struct fs_lock {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* resumer: state changed (CLOCK_MONOTONIC) */
	pthread_cond_t idle; /* locker: inflight dropped to 0 */
	atomic_bool closed; /* written under mu */
	atomic_uint inflight;
	bool locked; /* mu */
	bool internal; /* mu; held by fs_lock_quiesce(): no unlock, no timeout */
	bool stop; /* mu */
	const void *owner; /* mu; the owning ctl handle, compared only */
	uint64_t since_ns; /* mu; CLOCK_REALTIME */
	uint64_t timeout_ms; /* mu */
	uint64_t deadline_ns; /* mu; CLOCK_MONOTONIC */
	struct fs_parked *head; /* mu */
	struct fs_parked **tail; /* mu */
	size_t n_parked; /* mu */
	pthread_t resumer;
	bool resumer_started;
};

/* Release the lock (lk->mu held): parked requests resume. */
void fs_lock_release_locked(struct fs_lock *lk, const char *why);
/* Release the lock if @owner (NULL: anyone) holds it. Returns 0 or -EINVAL. */
int fs_lock_drop(struct fs *fs, const void *owner, const char *why);
