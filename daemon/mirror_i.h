/* SPDX-License-Identifier: MIT */
/*
 * mirror_i.h - what the pieces of mirror.c share: the mirror's state and
 * the steps of a pass. incoming.c opens and locks the folders and judges
 * an arriving segment (validation, quarantine, retire); prefetch.c loads
 * the next segments on threads of their own; apply.c applies a segment
 * (through lib/segrun.c), gathers batches and commits them; mirror.c runs
 * a pass and owns the mirror's lifetime. The invariants are stated at the
 * head of mirror.c.
 */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirror.h"
#include "mirrorfs/applied.h"
#include "mirrorfs/auth.h"
#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/pidlock.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

#define YOUNG_NS (30ull * 1000000000ull) /* a torn segment this young may still be arriving */
#define MAX_LISTED 100u
#define BATCH_BYTES (1ull << 30) /* segment bytes applied before a flush and state save */
#define RETRY_MIN_MS 1000u       /* first retry after a local failure ... */
#define RETRY_MAX_MS 60000u      /* ... doubling up to this */

/*
 * The next PREFETCH segments, each opened and loaded (mapped and
 * validated) by a thread of its own while the main thread applies the one
 * before them: the checksum passes and page-ins, which bound replay when
 * most writes are superseded, run on every CPU. A thread only reads (the
 * file, and the engine's buffer pool, which is locked); every decision
 * (judge, quarantine, apply) stays on the main thread, in LSN order.
 */
#define PREFETCH 2

struct prefetch {
	pthread_t thread;
	bool active;
	char name[MFS_SEG_NAME_LEN + 1];
	struct mfs_replay *engine;
	int in_fd;
	uint64_t max_size;
	bool have_uuid;   /* the data-set id expected when the load started */
	uint8_t uuid[16];
	int fd;           /* the open segment, or -errno */
	struct stat st;
	int r;            /* 0, or -errno of fstat / the load */
	struct mfs_replay_seg *s;
};

struct held {
	char name[MFS_SEG_NAME_LEN + 1];
	uint64_t size;
	int64_t mtime;
};

struct mirror {
	struct mirror_config cfg;
	int in_fd, data_fd, state_fd, q_fd, cascade_fd, keep_fd;
	int data_lock_fd, state_lock_fd; /* mfs_pidlock: one mirrord per data and per state folder */
	int cascade_lock_fd;             /* and per cascade folder */
	struct mfs_replay *engine;
	struct mfs_applied st; /* STATE/applied */
	struct mirror_status status;
	char last_error[512];
	struct mfs_log_repeat error_log; /* the same failure pass after pass: logged with backoff */
	int status_err, metrics_err; /* the last write's error: a new one is logged, not a repeat */
	char instance[PATH_MAX]; /* status.instance */
	struct held *held; /* hold mode: segments already validated */
	size_t n_held;
	struct mfs_rec *rec; /* cascade copy */
	/* the batch: applied, not yet flushed and recorded */
	uint64_t batch_lsn, batch_ns, batch_bytes, batch_data, batch_t0;
	bool batch_have_chain; /* authenticated: the chain value at batch_chain_lsn */
	uint64_t batch_chain_lsn;
	uint8_t batch_chain[MFS_TAG_SIZE];
	char **batch_names;
	size_t n_batch;
	struct prefetch pf[PREFETCH];
	unsigned retries; /* passes in a row that failed locally */
	/* keyed cascade: the chain of the tagged segments written to --cascade */
	bool cascade_have_chain; /* cascade_chain is the chain value at cascade_chain_lsn */
	uint64_t cascade_chain_lsn;
	uint8_t cascade_chain[MFS_TAG_SIZE];
};

/* What applying one segment needs in the scan callback. */
struct apply_ctx {
	struct mirror *m;
	struct mfs_segw *cw; /* cascade writer or NULL */
	uint64_t after, last, last_ns, bytes;
	uint64_t err_lsn;
	int error;
	bool local; /* error is ours (cascade), not the segment's */
};

struct check_ctx {
	int error;
	char why[640]; /* the refused record: LSN, type, path, field */
};

/* ---------------------------------------------------------------- incoming.c */

void mirror_quarantine(struct mirror *m, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mirror_set_error(struct mirror *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int mirror_open_dir(const char *what, const char *path, bool create);
bool mirror_has_snapshots(int fd);
int mirror_take_locks(struct mirror *m);
void mirror_retire(struct mirror *m, const char *name);
int mirror_check_cb(const struct mfs_rec *rec, void *arg);
bool mirror_keyed(const struct mirror *m);
void mirror_chain_reset(struct mirror *m);
int mirror_judge(struct mirror *m, const struct mfs_segent *e, int fd, const struct check_ctx *c,
		 const struct mfs_seg_info *info);
int mirror_preflight(struct mirror *m, const struct mfs_segent *e, struct mfs_replay_seg *s);

/* ---------------------------------------------------------------- prefetch.c */

int mirror_seg_open(int in_fd, const char *name, int *ret_fd, struct stat *st);
void mirror_prefetch_start(struct mirror *m, const struct mfs_segent *e);
void mirror_prefetch_join_all(struct mirror *m);
bool mirror_prefetch_take(struct mirror *m, const struct mfs_segent *e, int *ret_fd,
			  struct stat *ret_st, int *ret_r, struct mfs_replay_seg **ret_s);
int mirror_validate_stream(struct mirror *m, const struct mfs_segent *e, int fd,
			   struct mfs_seg_info *info);
int mirror_validate(struct mirror *m, const struct mfs_segent *e, int fd, int r,
		    struct mfs_replay_seg *s, struct mfs_replay_seg **ret);
bool mirror_held_has(struct mirror *m, const struct mfs_segent *e, const struct stat *st);
void mirror_held_add(struct mirror *m, const struct mfs_segent *e, const struct stat *st);

/* ---------------------------------------------------------------- apply.c */

int mirror_batch_commit(struct mirror *m);
void mirror_cascade_chain_load(struct mirror *m);
int mirror_handle(struct mirror *m, const struct mfs_segent *e, const struct mfs_segent *next,
		  size_t n_next);
