/* SPDX-License-Identifier: MIT */
/*
 * replay_i.h - what the replay engine's modules share: a loaded segment's
 * records (replay.c loads and applies them, replay_preflight.c checks them
 * against the data folder before the first one is applied).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mirrorfs/record.h"
#include "mirrorfs/segment.h"

struct mfs_replay;

/*
 * A record of a loaded segment: struct mfs_rec's fields (the same group,
 * copied whole), its strings in the segment's string table instead of two
 * 4 KiB arrays.
 */
struct lrec {
	MFS_REC_FIELDS_GROUP;
	uint32_t path, path2; /* offsets into strs */
	const void *data; /* into buf */
	bool skip; /* the primary's own failure, compensated (lrec_is_compensated): not applied */
};

struct mfs_replay_seg {
	struct mfs_replay *r;        /* whose buffer pool @buf returns to */
	struct mfs_replay_seg *next; /* the engine's held list */
	uint8_t *buf;                /* the whole file, read once */
	size_t len, cap;
	bool mapped;
	struct lrec *recs;
	size_t n_recs, cap_recs;
	char *strs;
	size_t n_strs, cap_strs;
	void **zdata; /* expanded data of compressed writes (malloc'd, one per record) */
	size_t n_zdata, cap_zdata;
	struct mfs_seg_info info;
	int refused; /* 0 or -EINVAL: a record mfs_replay_check() refused */
	uint64_t refused_lsn;
	enum mfs_rec_type refused_type;
	uint64_t until_lsn, until_ns; /* records past these are neither checked nor applied */
	int pf_error;                 /* 0, or why the preflight refused the segment */
	bool pf_local;                /* ... for a reason of the machine, not of the segment */
	bool pf_done;                 /* preflight passed */
	char why[640];                /* the refusal, one line (LSN, type, path, field) */
};

/* What the preflight learnt about the data folder's file system (probed once). */
struct replay_limits {
	bool probed;
	uint64_t max_file;   /* largest file size (0: unknown) */
	uint32_t xattr_max;  /* largest xattr value one file takes (0: unknown) */
	unsigned alloc_pct;  /* share of the free space one segment may fallocate (1..100) */
};

/* The engine's root folder and limits, for replay_preflight.c. */
int replay_rootfd(const struct mfs_replay *r);
struct replay_limits *replay_limits(struct mfs_replay *r);

/*
 * Whether record @i of @s is a change the primary journaled, saw fail with
 * an error of the segment's own making, and compensated: the next record
 * of the same path (records of other files may come between: the primary
 * holds only that file's lock) states what the file holds instead. For a
 * write, truncate or fallocate (EFBIG) that is a truncate of the file,
 * maybe after a write of the range (fs/data.c compensate_write); for a
 * setxattr (ENOSPC, E2BIG) a setxattr or removexattr of the same name
 * (fs/ops.c compensate_xattr).
 */
bool lrec_is_compensated(const struct mfs_replay_seg *s, size_t i);

/* Whether the records after @i of @s are within its until limits. */
static inline bool lrec_wanted(const struct mfs_replay_seg *s, size_t i, uint64_t after_lsn)
{
	const struct lrec *l = &s->recs[i];

	return l->lsn > after_lsn && l->lsn <= s->until_lsn && l->time_ns <= s->until_ns;
}
