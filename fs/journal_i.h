/* SPDX-License-Identifier: MIT */
/*
 * journal_i.h - private interfaces of the journal: the writer and
 * checkpoints (journal.c), rotation and the timer (rotate.c), opening and
 * recovery (recover.c, redo.c, keycheck.c).
 */
#pragma once

#include "fs.h"

#include "mirrorfs/segment.h"

#define NS_PER_S 1000000000ull
/* Every this many bytes appended, the timer thread starts writing the open
 * segment out (mfs_segw_writeback): a snapshot's or a checkpoint's sync
 * then flushes a little, not a burst of everything since the last one. */
#define WRITEBEHIND_CHUNK (2ull << 20)

struct fs_journal {
	int dirfd;
	int open_dirfd;
	int closed_dirfd;
	int lock_fd;      /* the journal folder's lock (mfs_pidlock) */
	int data_lock_fd; /* DATADIR/.mirrorfs/lock when the journal is elsewhere */
	char *path;
	uint8_t uuid[16];
	char uuid_text[37];

	const struct mfs_keyring *keys; /* fs->opt.keys: keys[0] tags new segments, enc[0] seals */
	struct mfs_keyring dec;         /* its encryption keys only: reads that check no tag */
	int zstd_level;                 /* fs->opt.zstd_level */
	pthread_rwlock_t seg_lock; /* appends/syncs shared, segment switch exclusive */
	struct mfs_segw *w;        /* protected by seg_lock; NULL after a fatal error */
	struct mfs_segw *sealing;  /* seg_lock: a snapshot's old segment until it is closed */
	uint64_t sealing_last;     /* seg_lock: its last LSN */
	char open_name[256];       /* protected by seg_lock */
	uint64_t seg_no;           /* protected by seg_lock */
	_Atomic uint64_t seg_bytes; /* appended to the open segment (approximate) */

	pthread_mutex_t ckpt_lock; /* serialises checkpoints, rotations, trims */
	pthread_mutex_t dsync_lock; /* a checkpoint mark: after ns_lock */
	pthread_mutex_t state_lock; /* the state file; a leaf */
	_Atomic uint64_t checkpoint_lsn; /* the last checkpoint marked in the journal */
	uint64_t state_ckpt;             /* the one in the state file; state_lock */
	uint64_t last_rotate_ns; /* CLOCK_MONOTONIC; ckpt_lock */
	uint64_t last_ckpt_ns;   /* ckpt_lock */

	pthread_mutex_t tlock; /* lock order: ckpt_lock -> ns_lock -> tlock */
	pthread_cond_t tcond;
	pthread_t timer;
	bool timer_started;
	bool stop;        /* tlock */
	bool want_rotate; /* tlock */
	bool want_wb;     /* tlock: write-behind of the open segment is due */
};

/* Write the state file: backing files durable up to LSN @ckpt. */
int fs_journal_state_write(struct fs_journal *j, uint64_t last, uint64_t ckpt);
/* Options of the next segment: authenticated with the first key, if any,
 * continuing the chain from @prev (the last tag before it, or NULL). */
const struct mfs_segw_opts *fs_journal_seg_opts(struct fs_journal *j, const uint8_t *prev,
						struct mfs_segw_opts *o);
/* Create open segment @seg_no starting at @first_lsn as j->w. */
int fs_journal_new_segment(struct fs_journal *j, uint64_t seg_no, uint64_t first_lsn,
			   const uint8_t *prev);
/* A checkpoint, j->ckpt_lock held. *ret_lsn (or NULL): its LSN. */
int fs_journal_checkpoint_locked(struct fs *fs, uint64_t *ret_lsn);
/* Seal a left-over open segment that already has a trailer into journal/. */
int fs_journal_move_sealed(struct fs_journal *j, const char *name);
/* Stop the timer thread (if started). */
void fs_journal_timer_stop(struct fs_journal *j);

/* ---------------------------------------------------------------- redo.c */

/* Crash recovery's redo pass: replay every record after checkpoint LSN
 * @after (or a later durable checkpoint mark) onto DATADIR, then fsync
 * what it changed. *ret_last: the last LSN seen. Returns 0 or -errno
 * (logged). */
int fs_journal_redo(struct fs *fs, uint64_t after, uint64_t *ret_last);

/* ---------------------------------------------------------------- keycheck.c */

struct mfs_jstate;

/* With keys: every closed segment must authenticate and continue the
 * chain (those up to @checkpoint may be untagged or an old key's).
 * Returns 0, -EBADMSG or -ENOKEY (logged with the path and LSN). */
int fs_journal_verify_closed(struct fs_journal *j, uint64_t checkpoint);
/* The chain value the first new segment after LSN @last continues: the
 * last closed segment's when it authenticates with our keys, else the
 * promoted mirror's from @st, else zeros (the chain starts again). */
void fs_journal_start_chain(struct fs_journal *j, const struct mfs_jstate *st, uint64_t last,
			    uint8_t ret[MFS_TAG_SIZE]);
/* Close the continued open segment and start a new one when its key,
 * encryption key or compression is not what the options say. Returns 0
 * or -errno (logged). */
int fs_journal_switch_auth(struct fs_journal *j);
