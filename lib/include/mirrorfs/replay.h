/* SPDX-License-Identifier: MIT */
/*
 * replay.h - the one replay engine: what applying a record means.
 *
 * Used by the mirror daemon, crash recovery on mount and restore/promote.
 * Applying is idempotent (applying a record twice leaves the same result as
 * once) and every path is resolved beneath the root fd: a hostile record can
 * fail, never touch anything outside the root. Writes are logged per
 * file and issued together (superseded bytes dropped, adjacent ones in one
 * pwritev); metadata operations are ordered after the writes they depend
 * on; mfs_replay_finish() flushes every touched file once (io_uring fsyncs
 * in parallel, or one syncfs).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mirrorfs/record.h"
#include "mirrorfs/segment.h"

struct mfs_replay;
struct mfs_replay_seg;

#define MFS_REPLAY_F_NO_URING (1u << 0) /* plain syscalls (baseline, fallback) */
#define MFS_REPLAY_F_NO_SYNC (1u << 1)  /* skip the final flush (tests, recovery before its own sync) */

/*
 * Create an engine applying records beneath directory @rootfd (borrowed,
 * must stay open). Returns 0 or -errno; if io_uring is unavailable the
 * engine falls back to plain syscalls (and logs it at debug level).
 */
int mfs_replay_new(int rootfd, unsigned flags, struct mfs_replay **ret);

/*
 * Require authenticated segments: mfs_replay_seg_load() checks every tag
 * with @keys (kept by reference; NULL or empty: tags are not checked) and
 * reads segments into memory instead of mapping them, so that what is
 * applied is what was checked.
 */
struct mfs_keyring;
void mfs_replay_set_keys(struct mfs_replay *r, const struct mfs_keyring *keys);

/*
 * Check a record without applying it: path syntax (relative, no "..",
 * no NUL, components <= 255 bytes), field ranges. Returns 0 or -EINVAL.
 */
int mfs_replay_check(const struct mfs_rec *rec);

/*
 * Like mfs_replay_check(); on refusal, one line into @buf naming the LSN,
 * the record type, the path and the refused field ("LSN 7 mknod 'd/x':
 * mode: not a file type mknod makes"). Returns 0 or -EINVAL.
 */
int mfs_replay_check_why(const struct mfs_rec *rec, char *buf, size_t size);

/*
 * Apply one record (markers are accepted and ignored). The write data is
 * copied if it has to be queued. Errors of queued writes may be reported by
 * a later call or by mfs_replay_finish().
 * Returns 0 or -errno (-EINVAL bad path, -EXDEV/-ELOOP escape attempt, ...).
 */
int mfs_replay_apply(struct mfs_replay *r, const struct mfs_rec *rec);

/*
 * Whether the data folder's file system can never take @rec: a write,
 * truncate or fallocate ending past its largest file size, or an xattr
 * value larger than it takes (both probed once). Such a change failed on
 * the primary (EFBIG, ENOSPC, E2BIG) and a later record of the same path
 * compensates it: crash recovery, which applies records one by one onto
 * the primary's own backing folder, skips it, as a mirror does (a write
 * would otherwise fail only at the flush, with no record to blame).
 */
bool mfs_replay_is_past_limits(struct mfs_replay *r, const struct mfs_rec *rec);

/*
 * Issue every queued write and release the loaded segments (their bytes
 * are in the data files' page cache then), without any sync. Returns 0
 * or the first error.
 */
int mfs_replay_drain(struct mfs_replay *r);

/*
 * Complete everything queued and fsync every file and directory touched
 * since the last finish (unless MFS_REPLAY_F_NO_SYNC). Returns 0 or the
 * first error.
 */
int mfs_replay_finish(struct mfs_replay *r);

struct mfs_replay *mfs_replay_free(struct mfs_replay *r);

/*
 * Convenience: load a whole segment file (mfs_replay_seg_load, no size
 * limit) and apply its records with LSN > @after_lsn (mfs_replay_seg_apply).
 * @expect_uuid may be NULL. Returns 0 and the last applied LSN in
 * *ret_last, -EBADMSG if the segment is not valid, -EINVAL if a record is
 * refused (nothing applied when @strict; otherwise the valid records before
 * a torn tail or a refused record are applied), or -errno.
 */
int mfs_replay_segment(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
		       uint64_t after_lsn, bool strict, uint64_t *ret_last);

/*
 * Map segment file @segfd into memory (or read it into a buffer of engine
 * @r, which must outlive the segment), once (at most @max_size bytes, else -EFBIG), and
 * validate it fully: the reader's verdict (every record's CRC,
 * the trailer and whole-segment CRC, the data-set id @expect_uuid, may be
 * NULL) and mfs_replay_check() of every record. Nothing is applied. The
 * verdict is in mfs_replay_seg_info(), a refused record in
 * mfs_replay_seg_refused(). Returns 0, or -errno if the file cannot be read.
 * The one call that may run on another thread, concurrently with the
 * engine's other calls: it uses only the file and the engine's buffer
 * pool, which is locked.
 */
int mfs_replay_seg_load(struct mfs_replay *r, int segfd, const uint8_t *expect_uuid,
			uint64_t max_size, struct mfs_replay_seg **ret);

/* The reader's verdict over a loaded segment (records up to a refused one). */
const struct mfs_seg_info *mfs_replay_seg_info(const struct mfs_replay_seg *s);

/*
 * Returns 0 if mfs_replay_check() accepted every record, else -EINVAL with
 * the first refused record's LSN and type (either pointer may be NULL).
 */
int mfs_replay_seg_refused(const struct mfs_replay_seg *s, uint64_t *ret_lsn,
			   enum mfs_rec_type *ret_type);

/* Free a loaded segment that was not given to mfs_replay_seg_apply(). */
struct mfs_replay_seg *mfs_replay_seg_free(struct mfs_replay_seg *s);

/*
 * Apply the valid records of loaded segment @s with LSN > @after_lsn, in
 * order, from the memory they were read into: write data are not copied,
 * and bytes a later write of the same batch overwrites are never written.
 * The engine takes @s over in every case (it is freed once its writes are
 * issued, at the latest by mfs_replay_finish() or mfs_replay_free()): the
 * caller must not touch it afterwards. The preflight runs first if it was
 * not run (its refusal is returned, nothing applied, why in
 * mfs_replay_why()). A record the preflight marked as the primary's
 * compensated failure is not applied but still given to @cb. @cb (may be
 * NULL) is called after each record applied; a non-zero return stops and
 * is returned. LSNs of a
 * segment are consecutive: a record that fails is the one after the last
 * @cb saw. Returns 0, @cb's value, or -errno of the failing record.
 */
int mfs_replay_seg_apply(struct mfs_replay *r, struct mfs_replay_seg *s, uint64_t after_lsn,
			 int (*cb)(const struct mfs_rec *rec, void *arg), void *arg);

/*
 * Records of @s past LSN @until_lsn, or from the first one later than
 * @until_ns on, are neither checked by the preflight nor applied
 * (UINT64_MAX: no limit, the default). Call before mfs_replay_seg_preflight().
 */
void mfs_replay_seg_limit(struct mfs_replay_seg *s, uint64_t until_lsn, uint64_t until_ns);

/* Default share of the free space one segment may fallocate (percent). */
#define MFS_REPLAY_ALLOC_PCT 50u

/* Set that share (1..100) for the segments of engine @r. */
void mfs_replay_set_alloc_share(struct mfs_replay *r, unsigned pct);

/*
 * Check loaded segment @s as a whole against the data folder before the
 * first of its records after @after_lsn is applied, so that it is applied
 * whole or not at all (replay_preflight.c): paths through symlinks the
 * segment made, or that leave the root or reach the reserved folder; sizes
 * past the file system's largest file or xattr value (a write, truncate or
 * fallocate past it followed by the primary's compensating truncate is
 * marked to be skipped instead); fallocate totals against the allowed share
 * of the file system; device nodes without CAP_MKNOD. Nothing is changed.
 * mfs_replay_seg_apply() runs it if it was not run.
 * Returns 0, or -errno with one line in mfs_replay_seg_why(): the
 * segment's fault (-EINVAL a refused record, -EXDEV, -EFBIG, -E2BIG), or,
 * with *ret_local there true, the machine's (-ENOSPC, -EPERM, -ENOMEM...).
 */
int mfs_replay_seg_preflight(struct mfs_replay *r, struct mfs_replay_seg *s, uint64_t after_lsn);

/*
 * Why @s was refused, by mfs_replay_seg_load() (a record) or the preflight:
 * one line naming the LSN, record type, path and field, or NULL.
 * *ret_local (may be NULL): the reason is the machine's (retry later).
 */
const char *mfs_replay_seg_why(const struct mfs_replay_seg *s, bool *ret_local);

/*
 * The last failure of mfs_replay_apply() or mfs_replay_seg_apply(), one
 * line naming the LSN, record type and path, or NULL.
 */
const char *mfs_replay_why(const struct mfs_replay *r);

/*
 * Whether error @e of applying a record is the machine's (EIO, ENOSPC,
 * EPERM, ... : retry later) rather than the segment's (EFBIG, EINVAL,
 * EXDEV, ...: quarantine).
 */
bool mfs_replay_error_is_local(int e);

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
	uint64_t writebehinds;  /* writebacks started early, while issuing (see replay.c) */
	bool uring;             /* io_uring in use */
};
void mfs_replay_get_stats(struct mfs_replay *r, struct mfs_replay_stats *ret);
