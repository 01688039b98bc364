/* SPDX-License-Identifier: MIT */
/*
 * replay.h - the one replay engine: what applying a record means.
 *
 * Used by the mirror daemon, crash recovery on mount and restore/promote.
 * Applying is idempotent (applying a record twice leaves the same result as
 * once) and every path is resolved beneath the root fd: a hostile record can
 * fail, never touch anything outside the root. Writes are batched through
 * io_uring; metadata operations are ordered after the writes they depend
 * on; mfs_replay_finish() flushes every touched file once.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "mirrorfs/record.h"

struct mfs_replay;

#define MFS_REPLAY_F_NO_URING (1u << 0) /* plain syscalls (baseline, fallback) */
#define MFS_REPLAY_F_NO_SYNC (1u << 1)  /* skip the final flush (tests, recovery before its own sync) */

/*
 * Create an engine applying records beneath directory @rootfd (borrowed,
 * must stay open). Returns 0 or -errno; if io_uring is unavailable the
 * engine falls back to plain syscalls (and logs it at debug level).
 */
int mfs_replay_new(int rootfd, unsigned flags, struct mfs_replay **ret);

/*
 * Check a record without applying it: path syntax (relative, no "..",
 * no NUL, components <= 255 bytes), field ranges. Returns 0 or -EINVAL.
 */
int mfs_replay_check(const struct mfs_rec *rec);

/*
 * Apply one record (markers are accepted and ignored). The write data is
 * copied if it has to be queued. Errors of queued writes may be reported by
 * a later call or by mfs_replay_finish().
 * Returns 0 or -errno (-EINVAL bad path, -EXDEV/-ELOOP escape attempt, ...).
 */
int mfs_replay_apply(struct mfs_replay *r, const struct mfs_rec *rec);

/*
 * Complete everything queued and fsync every file and directory touched
 * since the last finish (unless MFS_REPLAY_F_NO_SYNC). Returns 0 or the
 * first error.
 */
int mfs_replay_finish(struct mfs_replay *r);

struct mfs_replay *mfs_replay_free(struct mfs_replay *r);

/*
 * Convenience: validate a whole segment file and apply its records with
 * LSN > @after_lsn. @expect_uuid may be NULL. Returns 0 and the last
 * applied LSN in *ret_last, -EBADMSG if the segment is not valid (nothing
 * applied when @strict: the segment is validated fully first), or -errno.
 */
int mfs_replay_segment(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
		       uint64_t after_lsn, bool strict, uint64_t *ret_last);

/* Counters of an engine (since mfs_replay_new). */
struct mfs_replay_stats {
	uint64_t records;       /* records given to mfs_replay_apply (markers included) */
	uint64_t writes;        /* write records */
	uint64_t write_bytes;   /* bytes in write records */
	uint64_t io_writes;     /* write syscalls / SQEs actually issued */
	uint64_t io_bytes;      /* bytes actually written */
	uint64_t dropped_bytes; /* bytes overwritten by a later write before being issued */
	uint64_t skipped;       /* "already done" outcomes tolerated (see replay.c) */
	uint64_t syncs;         /* fsync/syncfs calls of the final flushes */
	bool uring;             /* io_uring in use */
};
void mfs_replay_get_stats(struct mfs_replay *r, struct mfs_replay_stats *ret);
