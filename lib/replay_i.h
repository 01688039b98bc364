/* SPDX-License-Identifier: MIT */
/*
 * replay_i.h - what the replay engine's modules share: the engine's state
 * (struct mfs_replay), its caches (replay_cache.c), its write log
 * (replay_wlog.c), what each record means (replay_ops.c) and what a valid
 * one is (replay_check.c), a loaded segment's records (replay_seg.c loads
 * them and applies them, replay_preflight.c checks them against the data
 * folder before the first one is applied). replay.c is the engine itself
 * (new, apply, flush, free) and tells the design at its head.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <liburing.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/record.h"
#include "mirrorfs/replay.h"
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

/* ================================================================ the engine's insides */

#define QUEUE_DEPTH 256u
#define BATCH_WRITES 1048576u /* writes logged before they are issued (32 MiB of log) */
#define HOLD_MIN (64u << 20)  /* held segment / copied bytes before they are issued: */
#define HOLD_MAX (1u << 30)   /* RAM / 16, within these bounds */
#define HOLD_SEGS 4096u       /* held segments before they are issued: a backlog of tiny
				 segments stays within bounded memory and mappings */
#define ARENA_CHUNK (4u << 20)
#define POOL_SLOTS 8          /* segment buffers kept for reuse */
#define BUF_ALIGN (1u << 20)  /* segment buffer sizes are rounded up to this */
#define IOV_BATCH 512          /* iovecs per pwritev */
#define MAX_FILES 512u         /* open regular files kept (fd cache) */
#define MAX_FILES_NAIVE 8192u  /* naive mode keeps every touched file to fsync it */
#define MAX_PATHS 1024u        /* path -> file entries */
#define MAX_DIRS 64u           /* touched directories fsynced one by one */
#define SYNCFS_MIN 64u         /* this many objects to flush: one syncfs instead */
#define PTAB_SIZE 2048u
#define PFX_SIZE 4096u         /* slots counting cached paths below a folder, by hash */
#define ITAB_SIZE 1024u
#define DIRECT_MIN (256u << 10) /* copied writes this large skip the log when the file is idle */
#define WB_RUN (1u << 20)      /* a pwritev this long is part of a sequential stretch */
#define WB_CHUNK (8u << 20)    /* sequential bytes issued to a file between write-behind kicks */
#define WB_INFLIGHT 2u         /* write-behind kicks in flight at most */
#define UD_FSYNC 0u            /* io_uring user data: a flush's fsync */
#define UD_WB 1u               /* io_uring user data: a write-behind (a hint, errors ignored) */
#define RESERVED_NAME ".mirrorfs"

/*
 * A write waiting in its file's log. Its bytes stay where they are (a
 * loaded segment, or the copy arena) until the log is issued; @seq orders
 * writes to the same bytes: the later one wins.
 */
struct pw {
	uint64_t off, end;
	const char *src;
	uint64_t seq;
};

struct rfile {
	dev_t dev;
	ino_t ino;
	int fd;          /* O_WRONLY, owned */
	struct pw *log;  /* writes not yet issued, in arrival order */
	size_t n_log, cap_log;
	uint32_t *oidx;  /* open addressing, offset -> 1 + index of its latest log entry */
	size_t cap_oidx; /* a power of two > 2 * n_log, or 0 */
	unsigned refs;   /* path cache entries naming this file */
	bool touched;    /* written since the last finish */
	bool queued;     /* on the engine's pending list */
	struct rfile *inext; /* inode hash chain */
	struct rfile *qnext; /* pending list */
};

struct pent {
	struct pent *next;
	struct rfile *f;
	uint32_t hash;
	char path[]; /* NUL-terminated */
};

/* Copies of write data given to mfs_replay_apply(), held until issued. */
struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

struct mfs_replay {
	int rootfd;
	unsigned flags;
	bool uring, naive, need_syncfs;
	bool ref; /* applying a held segment: write data need not be copied */
	bool par_fsync; /* fsyncs in parallel through io_uring (not on ext4: slower) */
	struct io_uring ring;
	unsigned sq_unsubmitted; /* SQEs prepared, not yet submitted */
	unsigned inflight;       /* submitted, not reaped */
	unsigned wb_inflight;    /* of which write-behind kicks */
	int error;               /* first error of an issued write */
	struct rfile *itab[ITAB_SIZE];
	unsigned n_files, max_files;
	struct pent *ptab[PTAB_SIZE];
	uint32_t pfx[PFX_SIZE]; /* cached paths below each folder, counted at replay_hash_str(folder) */
	unsigned n_paths;
	struct rfile *queue; /* files with logged writes */
	uint64_t pending_writes, seq;
	struct chunk *arena;
	struct mfs_replay_seg *held, *applying;
	size_t held_bytes, hold_max, n_held;
	struct mfs_rec *scratch; /* a loaded record being applied */
	pthread_mutex_t pool_lock; /* mfs_replay_seg_load() may run on another thread */
	const struct mfs_keyring *keys; /* mfs_replay_set_keys(): tags required */
	struct { void *p; size_t cap; } pool[POOL_SLOTS]; /* segment buffers for reuse */
	char *dirs[MAX_DIRS];    /* touched directories ("" = root) */
	unsigned n_dirs;
	struct replay_limits lim; /* preflight's knowledge of the data folder (replay_preflight.c) */
	char why[640];            /* the last failure, one line (mfs_replay_why) */
	struct mfs_replay_stats st;
};

/* ---------------------------------------------------------------- replay_cache.c */

int replay_skipped(struct mfs_replay *r, const struct mfs_rec *rec, int e);
int replay_file_get(struct mfs_replay *r, const char *path, struct rfile **ret);
bool replay_is_gone(int e);
struct rfile *replay_path_find(struct mfs_replay *r, const char *path);
struct rfile *replay_inode_find(struct mfs_replay *r, dev_t dev, ino_t ino);
void replay_path_clear(struct mfs_replay *r);
void replay_files_gc(struct mfs_replay *r, bool all);
unsigned replay_inode_slot(dev_t dev, ino_t ino);
int replay_path_add(struct mfs_replay *r, const char *path, struct rfile *f);
void replay_path_invalidate(struct mfs_replay *r, const char *path);
void replay_dir_touch(struct mfs_replay *r, const char *path);
void replay_rfile_free(struct mfs_replay *r, struct rfile *f);
uint32_t replay_hash_str(const char *s);

/* ---------------------------------------------------------------- replay_wlog.c */

int replay_drain(struct mfs_replay *r);
bool replay_file_busy(const struct rfile *f);
const char *replay_arena_copy(struct mfs_replay *r, const void *data, size_t len);
int replay_log_add(struct mfs_replay *r, struct rfile *f, uint64_t off, const char *src, size_t len);
bool replay_hold_full(const struct mfs_replay *r);
void replay_reap_one(struct mfs_replay *r, struct io_uring_cqe *cqe);
size_t replay_seg_cost(const struct mfs_replay_seg *s);

/* ---------------------------------------------------------------- replay_ops.c */

int replay_apply_rec(struct mfs_replay *r, const struct mfs_rec *rec);

/* ---------------------------------------------------------------- replay_check.c */

void replay_rec_fields(const struct mfs_rec *rec, char *buf, size_t size);
int replay_chmod_nofollow(int dirfd, const char *name, mode_t mode);
int replay_chown_nofollow(int dirfd, const char *name, uint32_t uid, uint32_t gid);
int replay_set_attrs(int dirfd, const char *name, uint32_t uid, uint32_t gid, uint32_t mode);
int replay_falloc(int fd, const struct mfs_rec *rec);

/* ---------------------------------------------------------------- replay.c */

int replay_note_why(struct mfs_replay *r, const struct mfs_rec *rec, int e);
