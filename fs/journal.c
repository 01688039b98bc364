/* SPDX-License-Identifier: MIT */
/*
 * journal.c - the journal of a mounted data set: its folder, the open
 * segment, checkpoints, rotation and crash recovery.
 *
 * Journal folder (-o journal_dir=DIR, default DATADIR/.mirrorfs):
 *
 *   lock                 "PID mirrorfs", locked while mounted (lib/pidlock.c):
 *                        one mirrorfs per journal; by default this is also
 *                        the data folder's lock, which mirrord, rejoin,
 *                        promote and restore respect
 *   state                "dataset=UUID\ncheckpoint=N\nlast=N\nsegment=N\n",
 *                        replaced atomically (mfs_replace_file): backing
 *                        files are durable up to LSN checkpoint; last is the
 *                        last LSN known at that time; segment the open
 *                        segment's sequence number
 *   open/open-SEQ.mfsj   the one open segment (no trailer yet), mode 0600
 *   journal/FIRST-LAST.mfsj  closed segments (mfs_seg_name), mode 0600; a
 *                        segment is sealed in open/ and renamed here, so it
 *                        appears whole and at once
 *
 * The write-ahead rule: no change reaches the backing files before its
 * record is durable. Writes are kept in memory until the group commit that
 * makes their records durable applies them (pending.c); every other
 * mutation appends its record, makes it durable
 * (fs_journal_append_durable), then applies it, under fs->ns_lock (shared
 * for data, exclusive for the namespace) and the inode's lock, so journal
 * order is the order in which changes reach the backing files. ENOSPC on
 * the journal fails the mutation before anything is touched. A change
 * that fails after its record is compensated by records stating what the
 * backing file really holds; an append or apply that cannot be, puts the
 * file system in the failed state: every later mutation gets EIO.
 *
 * Checkpoint: under fs->ns_lock held exclusively (a barrier) read the last
 * LSN L; make the journal durable up to L (which applies the writes
 * pending up to L); fsync the backing files and folders changed since the
 * last checkpoint (pending.c, the dirty set: never syncfs, which flushes
 * nothing on a FUSE-based store and waits for other programs' data);
 * append the mark MFS_REC_CHECKPOINT(L); make it durable; write state.
 *
 * Recovery on mount replays every record after the last checkpoint (the
 * state file's, or a later mark in the durable journal) into DATADIR, from
 * the closed segments and the open one (whose torn tail is cut), then
 * fsyncs what it changed. That is correct whatever subset of those
 * records had reached the backing files, because no name is removed
 * inside that tail but by its first record: unlink, rmdir and rename run
 * between two fences (fs_journal_fence), each a checkpoint mark without a
 * state file. Every replayed record then makes its post-condition true
 * (lib/replay.c, "Idempotency"). One limit: RENAME_EXCHANGE applied but
 * its second mark not yet durable when the power fails is exchanged
 * again by recovery.
 */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/pidlock.h"
#include "mirrorfs/replay.h"
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

	const struct mfs_keyring *keys; /* fs->opt.keys: keys[0] tags new segments */
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

void fs_fail(struct fs *fs, int r, const char *what)
{
	int expected = 0;

	if (atomic_compare_exchange_strong(&fs->failed, &expected, r ? r : -EIO))
		log_error_errno(r, "FATAL: %s: %m; the journal '%s' and the backing files in '%s' "
				   "may disagree, every further change fails with EIO; unmount and "
				   "mount again to recover",
				what, fs->j ? fs->j->path : "?", fs->opt.data_dir);
}

/* ================================================================ state */

/* Write the state file: backing files durable up to LSN @ckpt. */
static int state_write(struct fs_journal *j, uint64_t last, uint64_t ckpt)
{
	struct mfs_jstate st = { .last = last };
	int r;

	memcpy(st.data_set, j->uuid, sizeof(st.data_set));
	pthread_mutex_lock(&j->state_lock);
	ckpt = MFS_MAX(ckpt, j->state_ckpt);
	st.checkpoint = ckpt;
	st.segment = j->seg_no;
	r = mfs_jstate_write(j->dirfd, &st);
	if (r == 0)
		j->state_ckpt = ckpt;
	pthread_mutex_unlock(&j->state_lock);
	return r;
}

/* ================================================================ writer */

/*
 * Options of the next segment: authenticated with the first key, if any,
 * continuing the chain from @prev (the last tag before it, or NULL).
 */
static const struct mfs_segw_opts *seg_opts(struct fs_journal *j, const uint8_t *prev,
					    struct mfs_segw_opts *o)
{
	if (!j->keys->n && !j->zstd_level)
		return NULL;
	memset(o, 0, sizeof(*o));
	o->key = j->keys->n ? &j->keys->keys[0] : NULL;
	o->zstd_level = j->zstd_level;
	if (prev && o->key)
		memcpy(o->prev_tag, prev, MFS_TAG_SIZE);
	return o;
}

static int new_segment(struct fs_journal *j, uint64_t seg_no, uint64_t first_lsn,
		       const uint8_t *prev)
{
	struct mfs_segw_opts o;
	char name[64];
	int r;

	mfs_jdir_open_name(seg_no, name);
	r = mfs_segw_create_opts(j->open_dirfd, name, j->uuid, seg_no, first_lsn, 0,
				 seg_opts(j, prev, &o), &j->w);
	if (r < 0)
		return r;
	snprintf(j->open_name, sizeof(j->open_name), "%s", name);
	j->seg_no = seg_no;
	atomic_store(&j->seg_bytes, 0);
	return 0;
}

static uint64_t next_lsn_locked(struct fs_journal *j)
{
	struct mfs_segw_stats s;

	if (!j->w)
		return 0;
	mfs_segw_get_stats(j->w, &s);
	return s.next_lsn;
}

static int journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn);

int fs_journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	return journal_append(fs, rec, ret_lsn);
}

/* Ask the timer thread for the work behind @flag (a tlock field). */
static void timer_want(struct fs_journal *j, bool *flag)
{
	pthread_mutex_lock(&j->tlock);
	if (!*flag) {
		*flag = true;
		pthread_cond_signal(&j->tcond);
	}
	pthread_mutex_unlock(&j->tlock);
}

static int journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	struct fs_journal *j = fs->j;
	uint64_t lsn = 0, bytes, add;
	int r;

	r = fs_check_failed(fs);
	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&j->seg_lock);
	r = j->w ? mfs_segw_append_publish(j->w, rec, &lsn, NULL) : -EIO;
	pthread_rwlock_unlock(&j->seg_lock);
	if (r == -ENOSPC || r == -EDQUOT) {
		log_warning("journal '%s' is full: a change was refused with %s", j->path,
			    r == -ENOSPC ? "ENOSPC" : "EDQUOT");
		return r;
	}
	if (r < 0) {
		fs_fail(fs, r, "cannot append to the journal");
		return -EIO;
	}
	add = mfs_rec_head_size(rec) + rec->data_len;
	bytes = atomic_fetch_add(&j->seg_bytes, add) + add;
	atomic_fetch_add_explicit(&fs->metrics.records, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&fs->metrics.bytes, add, memory_order_relaxed);
	if (fs->opt.rotate_size && bytes >= fs->opt.rotate_size)
		timer_want(j, &j->want_rotate);
	else if ((bytes - add) / WRITEBEHIND_CHUNK != bytes / WRITEBEHIND_CHUNK)
		timer_want(j, &j->want_wb);
	if (ret_lsn)
		*ret_lsn = lsn;
	return 0;
}

/* Make the journal durable up to @lsn; *ret_durable: the LSN it is durable to. */
static int sync_only(struct fs *fs, uint64_t lsn, uint64_t *ret_durable)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s;
	int r;

	pthread_rwlock_rdlock(&j->seg_lock);
	if (!j->w) {
		r = -EIO;
	} else {
		if (lsn == 0 || lsn >= next_lsn_locked(j))
			lsn = next_lsn_locked(j) - 1;
		/* after a snapshot's switch, the new segment is established
		 * perhaps before the old one is sealed: nothing is durable
		 * before the old one's records are */
		r = j->sealing ? mfs_segw_sync(j->sealing, MFS_MIN(lsn, j->sealing_last)) : 0;
		mfs_segw_get_stats(j->w, &s);
		if (r == 0 && lsn >= s.first_lsn) {
			uint64_t t0 = mfs_mono_ns(), syncs = s.syncs;

			r = mfs_segw_sync(j->w, lsn);
			mfs_segw_get_stats(j->w, &s);
			if (s.syncs != syncs) /* this call's group commit fsynced */
				fs_metrics_fsync(fs, mfs_mono_ns() - t0);
		}
		mfs_segw_get_stats(j->w, &s);
		*ret_durable = MFS_MAX(lsn, s.durable_lsn);
	}
	pthread_rwlock_unlock(&j->seg_lock);
	if (r < 0 && r != -EIO)
		fs_fail(fs, r, "cannot sync the journal");
	return r < 0 ? -EIO : 0;
}

int fs_journal_sync(struct fs *fs, uint64_t lsn)
{
	uint64_t durable = 0;
	int r;

	/* the copy-on-write preservation a record depends on is durable
	 * before the record (snap.c, "Ordering") */
	r = fs_snap_sync_dirty(fs);
	if (r < 0)
		return r;
	r = sync_only(fs, lsn, &durable);
	if (r < 0)
		return r;
	r = fs_pending_apply(fs, durable);
	if (r < 0) {
		fs_fail(fs, r, "cannot apply journaled writes to the backing files");
		return -EIO;
	}
	return 0;
}

int fs_journal_append_durable(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	uint64_t lsn;
	int r = journal_append(fs, rec, &lsn);

	if (r < 0)
		return r;
	r = fs_journal_sync(fs, lsn);
	if (r < 0)
		return r;
	*ret_lsn = lsn;
	return 0;
}

/* ================================================================ checkpoint */

static uint64_t last_lsn(struct fs_journal *j)
{
	uint64_t n;

	pthread_rwlock_rdlock(&j->seg_lock);
	n = next_lsn_locked(j);
	pthread_rwlock_unlock(&j->seg_lock);
	return n ? n - 1 : 0;
}

/*
 * Every change up to LSN @l is applied (its record durable): fsync the
 * backing files and folders changed since the last mark, then append
 * MFS_REC_CHECKPOINT(@l), which recovery starts after. Its record needs
 * no sync of its own: it is durable before any later record is. *ret_m:
 * the marker's LSN.
 */
static int mark_checkpoint(struct fs *fs, uint64_t l, uint64_t *ret_m)
{
	struct fs_journal *j = fs->j;
	struct mfs_rec *rec;
	char bad[PATH_MAX] = "";
	uint64_t m, cur;
	int r = 0;

	rec = fs_rec_new(MFS_REC_CHECKPOINT);
	if (!rec)
		return -ENOMEM;
	rec->length = l;
	pthread_mutex_lock(&j->dsync_lock);
	if (!fs->opt.skip_backing_sync)
		r = fs_dirty_sync(fs, bad, sizeof(bad));
	if (r < 0 && *bad)
		log_error_errno(r, "cannot sync backing file '%s': %m", bad);
	else if (r < 0)
		log_error_errno(r, "cannot sync the backing files in '%s': %m", fs->opt.data_dir);
	else
		r = fs_journal_append(fs, rec, &m);
	if (r == 0) {
		/* the marker right after l is covered too: an idle data set is
		 * not marked again and again */
		uint64_t covered = m == l + 1 ? m : l;
		cur = atomic_load(&j->checkpoint_lsn);
		while (cur < covered &&
		       !atomic_compare_exchange_weak(&j->checkpoint_lsn, &cur, covered))
			;
	}
	pthread_mutex_unlock(&j->dsync_lock);
	free(rec);
	if (r == 0 && ret_m)
		*ret_m = m;
	return r;
}

int fs_journal_mark(struct fs *fs, uint64_t l)
{
	uint64_t m;

	return mark_checkpoint(fs, l, &m);
}

int fs_journal_fence(struct fs *fs, bool durable)
{
	struct fs_journal *j = fs->j;
	uint64_t l = last_lsn(j), m;
	int r;

	if (l <= atomic_load(&j->checkpoint_lsn))
		return 0;
	r = fs_journal_sync(fs, l);
	if (r == 0)
		r = mark_checkpoint(fs, l, &m);
	if (r == 0 && durable)
		r = fs_journal_sync(fs, m);
	return r;
}

static int checkpoint_locked(struct fs *fs, uint64_t *ret_lsn)
{
	struct fs_journal *j = fs->j;
	uint64_t l, m = 0, t0;
	int r;

	if (fs->opt.ckpt_delay_ms) /* with ckpt_lock held: see timer_main() */
		usleep(fs->opt.ckpt_delay_ms * 1000u);
	pthread_rwlock_wrlock(&fs->ns_lock); /* barrier: every change up to l is applied or pending */
	l = last_lsn(j);
	pthread_rwlock_unlock(&fs->ns_lock);
	j->last_ckpt_ns = mfs_mono_ns();
	if (l <= j->state_ckpt) {
		if (ret_lsn)
			*ret_lsn = atomic_load(&j->checkpoint_lsn);
		return 0;
	}
	/* records durable and pending writes applied up to l, then the
	 * backing files fsynced (write-ahead: never the other way round) */
	t0 = mfs_mono_ns();
	r = fs_journal_sync(fs, l);
	if (r == 0)
		r = mark_checkpoint(fs, l, &m);
	if (r == 0)
		r = fs_journal_sync(fs, m);
	if (r < 0)
		return r;
	r = state_write(j, m, m == l + 1 ? m : l);
	if (r < 0)
		return log_error_errno(r, "cannot write '%s/" MFS_JDIR_STATE "': %m", j->path);
	atomic_store(&fs->metrics.ckpt_ns, mfs_mono_ns() - t0);
	log_debug("checkpoint at LSN %" PRIu64, l);
	if (ret_lsn)
		*ret_lsn = l;
	return 0;
}

int fs_journal_checkpoint(struct fs *fs, uint64_t *ret_lsn)
{
	int r;

	pthread_mutex_lock(&fs->j->ckpt_lock);
	r = checkpoint_locked(fs, ret_lsn);
	pthread_mutex_unlock(&fs->j->ckpt_lock);
	return r;
}

/* ================================================================ rotation */

/* Seal a left-over open segment that already has a trailer into journal/. */
static int move_sealed(struct fs_journal *j, const char *name)
{
	_cleanup_close_ int fd = openat(j->open_dirfd, name, O_RDONLY | O_CLOEXEC);
	struct mfs_seg_info info;
	char closed[MFS_SEG_NAME_LEN + 1];
	int r;

	if (fd < 0)
		return -errno;
	r = mfs_seg_scan_fd(fd, j->uuid, NULL, NULL, &info);
	if (r < 0)
		return r;
	if (info.verdict != MFS_SEG_OK)
		return -EBADMSG;
	mfs_seg_name(info.first_lsn, info.last_lsn, closed);
	r = mfs_rename_noreplace(j->open_dirfd, name, j->closed_dirfd, closed);
	if (r == -EEXIST) {
		/* the link of mfs_rename_noreplace()'s fallback was made, the
		 * removal not: the same file under both names */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && fstatat(j->closed_dirfd, closed, &b, 0) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			r = unlinkat(j->open_dirfd, name, 0) < 0 ? -errno : 0;
	}
	if (r < 0)
		return log_error_errno(r, "cannot move sealed segment '%s' to '%s/" MFS_JDIR_CLOSED "/%s': %m",
				       name, j->path, closed);
	log_info("sealed segment '%s' moved to '%s'", name, closed);
	(void)mfs_fsync_dir(j->closed_dirfd, NULL);
	return mfs_fsync_dir(j->open_dirfd, NULL);
}

static int rotate_locked(struct fs *fs, char ret_name[MFS_SEG_NAME_LEN + 1], bool ckpt)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s;
	uint8_t chain[MFS_TAG_SIZE];
	char old[256];
	int r;

	ret_name[0] = 0;
	pthread_rwlock_rdlock(&j->seg_lock);
	if (j->w)
		mfs_segw_get_stats(j->w, &s);
	pthread_rwlock_unlock(&j->seg_lock);
	if (!j->w)
		return -EIO;
	j->last_rotate_ns = mfs_mono_ns();
	if (s.records == 0)
		return 0;
	r = ckpt ? checkpoint_locked(fs, NULL) : 0;
	if (r < 0)
		return r;

	/* ns_lock as a barrier: a change and the compensation journaled after
	 * it failed are appended under one hold of it, so they end up in one
	 * segment (a mirror skips the pair; a forward record alone is refused) */
	pthread_rwlock_wrlock(&fs->ns_lock);
	pthread_rwlock_wrlock(&j->seg_lock);
	mfs_segw_get_stats(j->w, &s);
	mfs_segw_chain(j->w, chain);
	snprintf(old, sizeof(old), "%s", j->open_name);
	r = mfs_segw_close(j->w, j->closed_dirfd, ret_name);
	j->w = NULL;
	if (r < 0) {
		log_error_errno(r, "cannot close segment '%s/" MFS_JDIR_OPEN "/%s': %m", j->path, old);
		if (mfs_segw_reopen_keys(j->open_dirfd, old, j->uuid, j->keys, &j->w, NULL) ==
		    -EALREADY)
			(void)move_sealed(j, old);
	}
	if (!j->w) {
		int r2 = new_segment(j, s.seg_no + 1, s.next_lsn, chain);
		if (r2 < 0)
			fs_fail(fs, r2, "cannot create a new journal segment");
		r = r < 0 ? r : r2;
	}
	pthread_rwlock_unlock(&j->seg_lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (r == 0) {
		(void)state_write(j, s.next_lsn - 1, atomic_load(&j->checkpoint_lsn));
		log_info("closed segment '%s'", ret_name);
	}
	return r;
}

int fs_journal_rotate(struct fs *fs, char ret_name[MFS_SEG_NAME_LEN + 1])
{
	int r;

	pthread_mutex_lock(&fs->j->ckpt_lock);
	r = rotate_locked(fs, ret_name, true);
	pthread_mutex_unlock(&fs->j->ckpt_lock);
	return r;
}

int fs_journal_snapshot_begin(struct fs *fs, const char *name, uint64_t *ret_lsn,
			      struct mfs_segw **ret_old)
{
	struct fs_journal *j = fs->j;
	struct mfs_rec *rec = fs_rec_new(MFS_REC_SNAPSHOT);
	struct mfs_segw_stats s;
	struct mfs_segw_opts o;
	struct mfs_segw *old;
	uint8_t chain[MFS_TAG_SIZE];
	uint64_t lsn;
	char nname[64];
	int r;

	if (!rec)
		return -ENOMEM;
	snprintf(rec->path2, sizeof(rec->path2), "%s", name);
	pthread_mutex_lock(&j->ckpt_lock);
	r = fs_journal_append(fs, rec, &lsn);
	free(rec);
	if (r < 0) {
		pthread_mutex_unlock(&j->ckpt_lock);
		return r;
	}
	pthread_rwlock_wrlock(&j->seg_lock);
	old = j->w;
	mfs_segw_get_stats(old, &s);
	mfs_segw_chain(old, chain);
	mfs_jdir_open_name(s.seg_no + 1, nname);
	r = mfs_segw_create_opts(j->open_dirfd, nname, j->uuid, s.seg_no + 1, s.next_lsn,
				 MFS_SEGW_LAZY, seg_opts(j, chain, &o), &j->w);
	if (r < 0) {
		j->w = old;
		pthread_rwlock_unlock(&j->seg_lock);
		pthread_mutex_unlock(&j->ckpt_lock);
		return r;
	}
	snprintf(j->open_name, sizeof(j->open_name), "%s", nname);
	j->seg_no = s.seg_no + 1;
	j->sealing = old;
	j->sealing_last = s.next_lsn - 1;
	atomic_store(&j->seg_bytes, 0);
	j->last_rotate_ns = mfs_mono_ns();
	pthread_rwlock_unlock(&j->seg_lock);
	*ret_lsn = s.next_lsn - 1;
	*ret_old = old;
	return 0; /* ckpt_lock stays held until fs_journal_snapshot_end() */
}

struct seal_job {
	struct fs_journal *j;
	struct mfs_segw *old;
};

static int seal_old_job(void *arg)
{
	return mfs_segw_seal(((struct seal_job *)arg)->old);
}

static int establish_new_job(void *arg)
{
	struct fs_journal *j = ((struct seal_job *)arg)->j;
	int r;

	/* the new segment's folder entry durable before its records can be
	 * reported durable: a crash before the sealed segment's move to
	 * closed/ (which fsyncs open/ too) lost the whole new segment */
	r = mfs_fsync_dir(j->open_dirfd, NULL);
	pthread_rwlock_rdlock(&j->seg_lock);
	if (r == 0)
		r = j->w ? mfs_segw_establish(j->w) : -EIO;
	pthread_rwlock_unlock(&j->seg_lock);
	return r;
}

int fs_journal_snapshot_sync(struct fs *fs, struct mfs_segw *old)
{
	struct seal_job x = { fs->j, old };
	struct mfs_job jobs[] = { { seal_old_job, &x, 0 }, { establish_new_job, &x, 0 } };

	/* The old segment's trailer and the new one's header at once (their
	 * flushes merge). Whichever reaches the disk first, a crash leaves
	 * two open segments, which recovery joins, or sets the newer aside if
	 * the older lost its tail (none of its records was reported durable:
	 * writers' syncs wait for the establishment). */
	(void)mfs_run_jobs(jobs, ARRAY_SIZE(jobs));
	if (jobs[0].r < 0)
		fs_fail(fs, jobs[0].r, "cannot seal the segment before a snapshot");
	if (jobs[1].r < 0)
		fs_fail(fs, jobs[1].r, "cannot make the new journal segment durable");
	return jobs[0].r < 0 ? jobs[0].r : jobs[1].r;
}

int fs_journal_snapshot_end(struct fs *fs, struct mfs_segw *old)
{
	struct fs_journal *j = fs->j;
	char closed[MFS_SEG_NAME_LEN + 1];
	int r;

	/* After fs_journal_snapshot_sync(): move the sealed segment to
	 * closed/ (a crash before that leaves a sealed one in open/, which
	 * recovery moves), fsyncing both folders; the fsync of open/ also
	 * makes the new segment's entry durable. */
	pthread_rwlock_wrlock(&j->seg_lock);
	j->sealing = NULL;
	pthread_rwlock_unlock(&j->seg_lock);
	r = mfs_segw_close(old, j->closed_dirfd, closed);
	if (r < 0) {
		fs_fail(fs, r, "cannot close the segment before a snapshot");
		(void)mfs_fsync_dir(j->open_dirfd, NULL); /* the new segment's entry */
	}
	/* No state_write(): its "segment" and "last" only matter to a mount
	 * that finds no open segment, and the new one is durable now. */
	if (r == 0)
		log_info("closed segment '%s'", closed);
	pthread_mutex_unlock(&j->ckpt_lock);
	return r;
}

void fs_journal_uuid(struct fs *fs, char out[37])
{
	memcpy(out, fs->j->uuid_text, 37);
}

int fs_journal_trim(struct fs *fs, const char *name)
{
	struct fs_journal *j = fs->j;
	uint64_t first, last;
	int r = 0;

	if (!mfs_seg_name_parse(name, &first, &last))
		return -ENOENT;
	pthread_mutex_lock(&j->ckpt_lock);
	if (last > j->state_ckpt)
		r = checkpoint_locked(fs, NULL); /* recovery must not need it any more */
	if (r == 0 && unlinkat(j->closed_dirfd, name, 0) < 0)
		r = -errno;
	pthread_mutex_unlock(&j->ckpt_lock);
	if (r == 0) {
		(void)mfs_fsync_dir(j->closed_dirfd, NULL);
		log_debug("trimmed segment '%s'", name);
	}
	return r;
}

/* ================================================================ timer */

static void timer_tick(struct fs *fs, bool want_rotate)
{
	struct fs_journal *j = fs->j;
	char name[MFS_SEG_NAME_LEN + 1];
	uint64_t now = mfs_mono_ns();
	bool rotate = want_rotate;

	pthread_mutex_lock(&j->ckpt_lock);
	if (fs->opt.rotate_interval &&
	    now - j->last_rotate_ns >= fs->opt.rotate_interval * NS_PER_S)
		rotate = true;
	if (rotate)
		(void)rotate_locked(fs, name, true);
	else if (fs->opt.checkpoint_interval &&
		 now - j->last_ckpt_ns >= fs->opt.checkpoint_interval * NS_PER_S)
		(void)checkpoint_locked(fs, NULL);
	pthread_mutex_unlock(&j->ckpt_lock);
}

/* How long the timer may sleep: until the next rotation or checkpoint is
 * due (a fixed 1 s tick would let rotate_interval=1 close segments every
 * 2 s), at most 1 s (FS_PENDING_DELAY_MS with writes pending), at least
 * 5 ms. */
static uint64_t timer_wait_ns(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	uint64_t now = mfs_mono_ns(), due = now + NS_PER_S;

	if (fs_pending_bytes(fs))
		due = now + FS_PENDING_DELAY_MS * 1000000ull;

	pthread_mutex_lock(&j->ckpt_lock);
	if (fs->opt.rotate_interval)
		due = MFS_MIN(due, j->last_rotate_ns + fs->opt.rotate_interval * NS_PER_S);
	if (fs->opt.checkpoint_interval)
		due = MFS_MIN(due, j->last_ckpt_ns + fs->opt.checkpoint_interval * NS_PER_S);
	pthread_mutex_unlock(&j->ckpt_lock);
	return due > now + 5000000ull ? due - now : 5000000ull;
}

static void *timer_main(void *arg)
{
	struct fs *fs = arg;
	struct fs_journal *j = fs->j;

	for (;;) {
		struct timespec ts;
		/* Not under tlock: timer_wait_ns() takes ckpt_lock, and the
		 * lock order is ckpt_lock -> ns_lock (a checkpoint's barrier)
		 * -> tlock (journal_append(), in a mutation that holds ns_lock).
		 * Taking ckpt_lock under tlock deadlocked a writer, a segment
		 * trim and this thread. */
		uint64_t wait = timer_wait_ns(fs);
		bool want, wb;
		int w = 0;

		pthread_mutex_lock(&j->tlock);
		if (j->stop)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(wait / NS_PER_S);
		ts.tv_nsec += (long)(wait % NS_PER_S);
		if (ts.tv_nsec >= (long)NS_PER_S) {
			ts.tv_sec++;
			ts.tv_nsec -= (long)NS_PER_S;
		}
		if (!j->want_rotate && !j->want_wb)
			w = pthread_cond_timedwait(&j->tcond, &j->tlock, &ts);
		if (j->stop)
			break;
		want = j->want_rotate;
		wb = j->want_wb;
		j->want_rotate = j->want_wb = false;
		pthread_mutex_unlock(&j->tlock);
		if (!atomic_load(&fs->failed)) {
			fs_pending_check_space(fs);
			if (fs_pending_bytes(fs))
				(void)fs_journal_sync(fs, 0); /* pending writes wait at most a tick */
		}
		if (wb && !atomic_load(&fs->failed)) {
			pthread_rwlock_rdlock(&j->seg_lock);
			if (j->w)
				(void)mfs_segw_writeback(j->w);
			pthread_rwlock_unlock(&j->seg_lock);
		}
		if ((want || w == ETIMEDOUT) && !atomic_load(&fs->failed))
			timer_tick(fs, want);
		fs_metrics_write(fs, false);
	}
	pthread_mutex_unlock(&j->tlock);
	return NULL;
}

int fs_journal_start(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	int r;

	j->last_rotate_ns = j->last_ckpt_ns = mfs_mono_ns();
	fs_metrics_write(fs, true); /* before the timer thread, which owns it next */
	r = pthread_create(&j->timer, NULL, timer_main, fs);
	if (r)
		return log_error_errno(-r, "cannot start the timer thread: %m");
	j->timer_started = true;
	return 0;
}

/* ================================================================ recovery */

static int name_cmp(const void *a, const void *b);

struct replay_ctx {
	struct mfs_replay *engine;
	uint64_t after;
	uint64_t applied, failed, last;
	bool scan;      /* first pass: only find the last checkpoint mark */
	uint64_t mark;  /* the highest LSN a durable checkpoint mark covers */
	char **touched; /* paths the replay changed, to fsync after it */
	size_t n_touched, cap_touched;
	bool nomem;
};

/* Remember @path (and, for a namespace record, its folder) for the fsync
 * after recovery. Consecutive duplicates are common: skipped here. */
static void touch(struct replay_ctx *c, const char *path, bool parent)
{
	char buf[MFS_PATH_MAX + 1], *slash;

	snprintf(buf, sizeof(buf), "%s", path);
	if (parent) {
		slash = strrchr(buf, '/');
		if (slash)
			*slash = 0;
		else
			buf[0] = 0;
	}
	if (c->n_touched && !strcmp(c->touched[c->n_touched - 1], buf))
		return;
	if (c->n_touched == c->cap_touched) {
		size_t cap = c->cap_touched ? c->cap_touched * 2 : 64;
		char **n = realloc(c->touched, cap * sizeof(*n));
		if (!n) {
			c->nomem = true;
			return;
		}
		c->touched = n;
		c->cap_touched = cap;
	}
	c->touched[c->n_touched] = strdup(buf);
	if (!c->touched[c->n_touched])
		c->nomem = true;
	else
		c->n_touched++;
}

static void touch_rec(struct replay_ctx *c, const struct mfs_rec *rec)
{
	bool ns = rec->type == MFS_REC_MKNOD || rec->type == MFS_REC_MKDIR ||
		  rec->type == MFS_REC_SYMLINK || rec->type == MFS_REC_UNLINK ||
		  rec->type == MFS_REC_RMDIR || rec->type == MFS_REC_RENAME ||
		  rec->type == MFS_REC_LINK;

	touch(c, rec->path, false);
	if (ns)
		touch(c, rec->path, true);
	if (rec->type == MFS_REC_RENAME || rec->type == MFS_REC_LINK) {
		touch(c, rec->path2, false);
		touch(c, rec->path2, true);
	}
}

static int replay_one(const struct mfs_rec *rec, void *arg)
{
	struct replay_ctx *c = arg;
	int r;

	if (rec->lsn <= c->after)
		return 0;
	if (c->scan) {
		if (rec->type == MFS_REC_CHECKPOINT)
			c->mark = MFS_MAX(c->mark, rec->length);
		return 0;
	}
	c->last = rec->lsn;
	if (mfs_rec_type_is_marker(rec->type))
		return 0;
	if (mfs_replay_is_past_limits(c->engine, rec)) {
		/* failed when it was made (EFBIG...): a later record compensates */
		log_debug("recovery: LSN %" PRIu64 " %s '%s' is past the file system's limits, "
			  "skipped", rec->lsn, mfs_rec_type_name(rec->type), rec->path);
		return 0;
	}
	touch_rec(c, rec);
	r = mfs_replay_apply(c->engine, rec);
	if (r < 0) {
		char line[512];
		mfs_rec_format(rec, line, sizeof(line));
		log_warning_errno(r, "recovery: LSN %" PRIu64 " (%s) failed, ignoring: %m",
				  rec->lsn, line);
		c->failed++;
	} else {
		c->applied++;
	}
	return 0;
}

/* fsync what recovery changed (syncfs reaches no FUSE-based store). A
 * path gone since (removed by a later record) needs nothing. */
static int sync_touched(struct fs *fs, struct replay_ctx *c)
{
	int r = 0;

	if (c->nomem)
		return -ENOMEM;
	qsort(c->touched, c->n_touched, sizeof(*c->touched), name_cmp);
	for (size_t k = 0; k < c->n_touched && r == 0; k++) {
		const char *p = c->touched[k][0] ? c->touched[k] : ".";
		struct stat st;
		int fd;

		if (k && !strcmp(c->touched[k], c->touched[k - 1]))
			continue;
		fd = openat(fs->sync_fd, p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd < 0) {
			if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != ENXIO &&
			    errno != EACCES)
				r = log_error_errno(-errno, "recovery: cannot open '%s': %m", p);
			continue;
		}
		if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
		    fsync(fd) < 0)
			r = log_error_errno(-errno, "recovery: cannot sync '%s': %m", p);
		close(fd);
	}
	return r;
}

static void touched_free(struct replay_ctx *c)
{
	while (c->n_touched)
		free(c->touched[--c->n_touched]);
	free(c->touched);
}

static int replay_file(struct fs_journal *j, int dirfd, const char *name, bool closed,
		       struct replay_ctx *c)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	const char *sub = closed ? MFS_JDIR_CLOSED : MFS_JDIR_OPEN;
	struct mfs_seg_info info;
	char verdict[256];
	int r;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open segment '%s/%s/%s': %m", j->path, sub,
				       name);
	r = mfs_seg_scan_fd(fd, j->uuid, replay_one, c, &info);
	if (r < 0)
		return log_error_errno(r, "cannot read segment '%s/%s/%s': %m", j->path, sub, name);
	if (info.verdict != MFS_SEG_OK && (closed || info.verdict != MFS_SEG_TORN)) {
		mfs_seg_verdict_format(&info, verdict, sizeof(verdict));
		return log_error_errno(-EBADMSG, "segment '%s/%s/%s' is damaged: %s", j->path, sub,
				       name, verdict);
	}
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One pass over the closed segments after @c->after and the open one. */
static int replay_pass(struct fs_journal *j, const struct mfs_segent *segs, size_t n,
		       struct replay_ctx *c)
{
	int r = 0;

	for (size_t k = 0; k < n && r == 0; k++)
		if (segs[k].last > c->after)
			r = replay_file(j, j->closed_dirfd, segs[k].name, true, c);
	if (r == 0 && j->w)
		r = replay_file(j, j->open_dirfd, j->open_name, false, c);
	return r;
}

/*
 * Replay every record after the last checkpoint: the state file's, or a
 * later checkpoint mark in the durable journal (fences write them, see
 * fs_journal_fence), onto DATADIR, then fsync what it changed. Between
 * two marks no record removes a name but the first after a mark, so the
 * records apply idempotently onto a tree that already has any of them.
 */
static int replay_tail(struct fs *fs, uint64_t after, uint64_t *ret_last)
{
	struct fs_journal *j = fs->j;
	struct replay_ctx c = { .after = after, .scan = true };
	_cleanup_free_ struct mfs_segent *segs = NULL;
	size_t n = 0;
	int r;

	r = mfs_segdir_list(j->closed_dirfd, &segs, &n);
	if (r < 0)
		return log_error_errno(r, "cannot list '%s/" MFS_JDIR_CLOSED "': %m", j->path);
	r = replay_pass(j, segs, n, &c);
	if (r == 0) {
		c.after = MFS_MAX(after, c.mark);
		c.scan = false;
		atomic_store(&j->checkpoint_lsn, c.after);
		r = mfs_replay_new(fs->sync_fd, MFS_REPLAY_F_NO_SYNC, &c.engine);
		if (r < 0)
			log_error_errno(r, "cannot start the replay engine on '%s': %m",
					fs->opt.data_dir);
	}
	if (r == 0)
		r = replay_pass(j, segs, n, &c);
	if (c.engine && r == 0) {
		int r2 = mfs_replay_finish(c.engine);
		if (r2 < 0)
			log_warning_errno(r2, "recovery: replay into '%s' finished with an error, "
					  "ignoring: %m", fs->opt.data_dir);
	}
	mfs_replay_free(c.engine);
	if (r == 0 && !fs->opt.skip_backing_sync)
		r = sync_touched(fs, &c);
	touched_free(&c);
	if (r == 0 && (c.applied || c.failed))
		log_notice("recovery: replayed %" PRIu64 " records after checkpoint LSN %" PRIu64
			   " up to LSN %" PRIu64 " (%" PRIu64 " failed)",
			   c.applied, c.after, c.last, c.failed);
	*ret_last = c.last;
	return r;
}

/* The data-set UUID and sequence number from a segment's header. */
static int peek_header(int dirfd, const char *name, uint8_t uuid[16], uint64_t *ret_seg_no)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct mfs_segr *rd = NULL;
	const struct mfs_seg_info *info;
	int r;

	if (fd < 0)
		return -errno;
	r = mfs_segr_open_fd(fd, NULL, &rd);
	if (r < 0)
		return r;
	info = mfs_segr_info(rd);
	r = info->header_valid ? 0 : -EBADMSG;
	if (r == 0) {
		memcpy(uuid, info->uuid, 16);
		*ret_seg_no = info->seg_no;
	}
	mfs_segr_free(rd);
	return r;
}

struct open_seg {
	uint64_t seg_no;
	char name[256];
};

static int open_seg_cmp(const void *a, const void *b)
{
	const struct open_seg *x = a, *y = b;

	return x->seg_no < y->seg_no ? -1 : x->seg_no > y->seg_no;
}

/*
 * Find the open segment in open/ and continue it (cutting a torn tail).
 * Two open segments are left by a crash right after a snapshot switched
 * segments (fs_journal_snapshot_begin): the older is sealed into journal/
 * up to its last valid record, and the newer continues it - unless a torn
 * tail of the older left a gap, in which case the newer (whose records
 * were never reported durable: syncs wait for the older's seal) is set
 * aside as lost-NAME.
 */
static int recover_open(struct fs_journal *j, bool have_uuid)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct open_seg segs[8];
	struct dirent *de;
	size_t n = 0;
	uint64_t prev_last = 0;
	int r = 0;

	r = mfs_dir_open(j->open_dirfd, ".", &d);
	if (r < 0)
		return r;
	while ((de = readdir(d))) {
		uint64_t seg_no;
		uint8_t uuid[16];

		if (!mfs_jdir_is_open_name(de->d_name))
			continue;
		if (peek_header(j->open_dirfd, de->d_name, uuid, &seg_no) < 0) {
			log_notice("removing '%s/" MFS_JDIR_OPEN "/%s': its header was never completed",
				   j->path, de->d_name);
			(void)unlinkat(j->open_dirfd, de->d_name, 0);
			continue;
		}
		if (!have_uuid) {
			memcpy(j->uuid, uuid, 16);
			have_uuid = true;
		}
		if (n == ARRAY_SIZE(segs) || strlen(de->d_name) >= sizeof(segs[0].name))
			return log_error_errno(-EEXIST, "too many open segments in '%s/" MFS_JDIR_OPEN "'",
					       j->path);
		segs[n].seg_no = seg_no;
		snprintf(segs[n].name, sizeof(segs[n].name), "%s", de->d_name);
		n++;
	}
	if (n > 2)
		return log_error_errno(-EEXIST, "%zu open segments in '%s/" MFS_JDIR_OPEN "'", n, j->path);
	qsort(segs, n, sizeof(segs[0]), open_seg_cmp);
	for (size_t k = 0; k < n && r == 0; k++) {
		struct mfs_segw_stats st;
		uint64_t cut = 0;
		const char *name = segs[k].name;

		r = mfs_segw_reopen_keys(j->open_dirfd, name, j->uuid, j->keys, &j->w, &cut);
		if (r == -EALREADY) {
			r = move_sealed(j, name);
			continue;
		}
		if (r == -ENOKEY)
			return log_error_errno(r, "open segment '%s/" MFS_JDIR_OPEN "/%s' is authenticated "
					       "with a key not given: mount with -o auth_key=FILE "
					       "(and auth_key_old=FILE while the key changes)",
					       j->path, name);
		if (r == -EBADMSG && j->keys->n)
			return log_error_errno(r, "open segment '%s/" MFS_JDIR_OPEN "/%s' does not "
					       "authenticate (altered?): refusing to continue it",
					       j->path, name);
		if (r < 0)
			return log_error_errno(r, "cannot reopen segment '%s/" MFS_JDIR_OPEN "/%s': %m",
					       j->path, name);
		if (cut)
			log_notice("segment '%s': cut a torn tail of %" PRIu64 " bytes", name, cut);
		mfs_segw_get_stats(j->w, &st);
		if (k > 0 && prev_last && st.first_lsn != prev_last + 1) {
			char lost[300];
			mfs_segw_free(j->w);
			j->w = NULL;
			snprintf(lost, sizeof(lost), "lost-%s", name);
			log_error("segment '%s' starts at LSN %" PRIu64 " but the one before ends at %" PRIu64
				  " (torn by a crash): set aside as '%s/" MFS_JDIR_OPEN "/%s'; none of its "
				  "records was reported durable",
				  name, st.first_lsn, prev_last, j->path, lost);
			if (renameat(j->open_dirfd, name, j->open_dirfd, lost) < 0)
				return -errno;
			continue;
		}
		if (k + 1 < n && st.records == 0) { /* the older one, empty */
			prev_last = st.first_lsn - 1;
			mfs_segw_free(j->w);
			j->w = NULL;
			(void)unlinkat(j->open_dirfd, name, 0);
			continue;
		}
		if (k + 1 < n) { /* the older one of two: seal it */
			char closed[MFS_SEG_NAME_LEN + 1];
			prev_last = st.next_lsn - 1;
			r = mfs_segw_close(j->w, j->closed_dirfd, closed);
			j->w = NULL;
			if (r < 0)
				return log_error_errno(r, "cannot seal segment '%s/" MFS_JDIR_OPEN "/%s': %m",
						       j->path, name);
			log_notice("sealed segment '%s' left open by a crash as '%s'", name, closed);
			continue;
		}
		snprintf(j->open_name, sizeof(j->open_name), "%s", name);
		j->seg_no = segs[k].seg_no;
	}
	return r;
}

/*
 * The journal folder's lock (one mirrorfs per journal) and the data
 * folder's (DATADIR/.mirrorfs/lock, the one every program that writes a
 * data folder takes: mirrord, rejoin, promote, restore): the same file
 * unless -o journal_dir puts the journal elsewhere.
 */
static int take_locks(struct fs *fs, struct fs_journal *j)
{
	struct mfs_pidlock_holder h;
	char who[64];
	int r;

	r = j->lock_fd = mfs_pidlock_take(j->dirfd, MFS_JDIR_LOCK, "mirrorfs", &h);
	if (r == -EBUSY)
		return log_error_errno(r, "'%s' is %sin use by %s (journal '%s' is locked)",
				       fs->opt.data_dir,
				       strcmp(h.role, "mirrorfs") ? "" : "already mounted: ",
				       mfs_pidlock_describe(&h, who, sizeof(who)), j->path);
	if (r < 0)
		return log_error_errno(r, "cannot lock '%s/" MFS_JDIR_LOCK "': %m", j->path);
	snprintf(who, sizeof(who), "/" MFS_CTL_DIR);
	if (!fs->opt.journal_dir || (!strncmp(j->path, fs->opt.data_dir, strlen(fs->opt.data_dir)) &&
				     !strcmp(j->path + strlen(fs->opt.data_dir), who)))
		return 0;
	r = j->data_lock_fd = mfs_pidlock_take_data(fs->data_fd, "mirrorfs", &h);
	if (r == -EBUSY)
		return log_error_errno(r, "'%s' is %sin use by %s", fs->opt.data_dir,
				       strcmp(h.role, "mirrorfs") ? "" : "already mounted: ",
				       mfs_pidlock_describe(&h, who, sizeof(who)));
	if (r < 0)
		return log_error_errno(r, "cannot lock '%s/" MFS_PIDLOCK_DATA "': %m",
				       fs->opt.data_dir);
	return 0;
}

int fs_journal_lock_refresh(struct fs *fs)
{
	int r = mfs_pidlock_update(fs->j->lock_fd, "mirrorfs");

	if (r < 0)
		return log_warning_errno(r, "cannot write the PID into '%s/" MFS_JDIR_LOCK "', "
				         "ignoring: %m", fs->j->path);
	if (fs->j->data_lock_fd >= 0)
		r = mfs_pidlock_update(fs->j->data_lock_fd, "mirrorfs");
	if (r < 0)
		return log_warning_errno(r, "cannot write the PID into '%s/" MFS_PIDLOCK_DATA "', "
				         "ignoring: %m", fs->opt.data_dir);
	return 0;
}

static int open_dirs(struct fs *fs, struct fs_journal *j)
{
	const char *sub[] = { MFS_JDIR_OPEN, MFS_JDIR_CLOSED };
	int *fds[] = { &j->open_dirfd, &j->closed_dirfd };
	bool made = false, any = false;
	int r;

	r = j->dirfd = mfs_jdir_open(j->path, true, &made);
	if (r < 0)
		return log_error_errno(r, "cannot open journal folder '%s': %m", j->path);
	r = take_locks(fs, j);
	if (r < 0)
		return r;
	for (size_t k = 0; k < ARRAY_SIZE(sub); k++) {
		r = *fds[k] = mfs_jdir_open_sub(j->dirfd, sub[k], true, &made);
		if (r < 0)
			return log_error_errno(r, "cannot open '%s/%s': %m", j->path, sub[k]);
		any = any || made;
	}
	r = any ? mfs_fsync_dir(j->dirfd, NULL) : 0;
	if (r < 0)
		return log_error_errno(r, "cannot sync journal folder '%s': %m", j->path);
	return 0;
}

/* Sequence number and last LSN after the closed segments. */
static int closed_tail(struct fs_journal *j, uint64_t *seg_no, uint64_t *last)
{
	_cleanup_free_ struct mfs_segent *segs = NULL;
	size_t n = 0;
	uint64_t no;
	uint8_t uuid[16];
	int r;

	r = mfs_segdir_list(j->closed_dirfd, &segs, &n);
	if (r < 0 || n == 0)
		return r;
	*last = MFS_MAX(*last, segs[n - 1].last);
	r = peek_header(j->closed_dirfd, segs[n - 1].name, uuid, &no);
	if (r == 0) {
		*seg_no = MFS_MAX(*seg_no, no);
	} else { /* sequence numbers need only grow: stay clear of any in journal/ */
		log_warning_errno(r, "cannot read the header of segment '%s/" MFS_JDIR_CLOSED "/%s', "
				  "ignoring: %m", j->path, segs[n - 1].name);
		*seg_no += n;
	}
	return 0;
}

static bool tag_zero(const uint8_t *t)
{
	for (size_t i = 0; i < MFS_TAG_SIZE; i++)
		if (t[i])
			return false;
	return true;
}

/*
 * The chain value at LSN @last from the closed segment that ends there,
 * when it is authenticated with one of our keys; zeros otherwise (the
 * chain starts again: a new data set, a promoted mirror, an earlier
 * unauthenticated journal).
 */
static void closed_chain(struct fs_journal *j, uint64_t last, uint8_t ret[MFS_TAG_SIZE])
{
	struct mfs_segr_opts o = { .expect_uuid = j->uuid, .keys = j->keys };
	_cleanup_free_ struct mfs_segent *segs = NULL;
	size_t n = 0;
	struct mfs_seg_info info;
	int fd;

	memset(ret, 0, MFS_TAG_SIZE);
	if (!j->keys->n || mfs_segdir_list(j->closed_dirfd, &segs, &n) < 0 || n == 0 ||
	    segs[n - 1].last != last)
		goto out;
	fd = openat(j->closed_dirfd, segs[n - 1].name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0 && mfs_seg_scan_fd_opts(fd, &o, NULL, NULL, &info) == 0 &&
	    info.verdict == MFS_SEG_OK && info.authenticated)
		memcpy(ret, info.last_tag, MFS_TAG_SIZE);
	if (fd >= 0)
		close(fd);
out:
	if (j->keys->n && tag_zero(ret))
		log_notice("the authenticated chain starts again at LSN %" PRIu64, last + 1);
}

/*
 * The open segment continued after recovery is authenticated with another
 * key than keys[0] (or at all when it should not be): close it (an empty
 * one is removed) and start a new one, so that every new record is tagged
 * as the options say.
 */
static int switch_auth(struct fs_journal *j)
{
	struct mfs_segw_stats s;
	const uint8_t *id = mfs_segw_key_id(j->w);
	uint8_t chain[MFS_TAG_SIZE];
	char closed[MFS_SEG_NAME_LEN + 1], old[256];
	int r;

	if ((j->keys->n ? id && !memcmp(id, j->keys->keys[0].id, MFS_AUTH_KEY_ID_SIZE) : !id) &&
	    mfs_segw_set_compress(j->w, j->zstd_level) == 0)
		return 0; /* a format-1 segment cannot hold compressed writes: a new one */
	mfs_segw_get_stats(j->w, &s);
	mfs_segw_chain(j->w, chain);
	snprintf(old, sizeof(old), "%s", j->open_name);
	if (s.records == 0) {
		j->w = mfs_segw_free(j->w);
		r = unlinkat(j->open_dirfd, old, 0) < 0 ? -errno : mfs_fsync_dir(j->open_dirfd, NULL);
	} else {
		r = mfs_segw_close(j->w, j->closed_dirfd, closed);
		j->w = NULL;
	}
	if (r < 0)
		return log_error_errno(r, "cannot close segment '%s/" MFS_JDIR_OPEN "/%s' to change its "
				       "key: %m", j->path, old);
	log_notice("segment '%s' closed: new segments are %s%s", old,
		   j->keys->n ? "authenticated with the given key" : "not authenticated",
		   j->zstd_level ? ", compressed" : "");
	r = new_segment(j, s.seg_no + 1, s.next_lsn, chain);
	if (r < 0)
		return log_error_errno(r, "cannot create a segment in '%s/" MFS_JDIR_OPEN "': %m",
				       j->path);
	return 0;
}

static int journal_recover(struct fs *fs, struct fs_journal *j)
{
	struct mfs_jstate st = { 0 };
	uint64_t seg_no, last, replayed;
	bool fresh = false, have_state;
	int r;

	r = mfs_jstate_read(j->dirfd, &st);
	if (r < 0 && r != -ENOENT)
		return log_error_errno(r, "cannot read '%s/" MFS_JDIR_STATE "': %m", j->path);
	have_state = r == 0;
	if (have_state)
		memcpy(j->uuid, st.data_set, 16);
	r = recover_open(j, have_state);
	if (r < 0)
		return r;
	if (!have_state && !j->w) {
		uint64_t dummy = 0, l = 0;
		r = closed_tail(j, &dummy, &l);
		if (r < 0)
			return log_error_errno(r, "cannot list '%s/" MFS_JDIR_CLOSED "': %m", j->path);
		fresh = (l == 0);
		if (fresh) {
			r = mfs_uuid_generate(j->uuid);
			if (r < 0)
				return log_error_errno(r, "cannot generate a data-set id: %m");
		} else {
			return log_error_errno(-EBADMSG, "'%s' has segments but no state file",
					       j->path);
		}
	}
	mfs_uuid_format(j->uuid, j->uuid_text);
	atomic_store(&j->checkpoint_lsn, st.checkpoint);
	if (j->w) {
		/* an open segment that ends before the checkpoint was left by an
		 * earlier life of this data directory (a primary that became a
		 * mirror and was promoted again): continuing it would reuse LSNs */
		struct mfs_segw_stats s;
		mfs_segw_get_stats(j->w, &s);
		if (s.next_lsn - 1 < st.checkpoint) {
			char stale[300];
			snprintf(stale, sizeof(stale), "stale-%s", j->open_name);
			log_warning("open segment '%s' ends at LSN %" PRIu64 ", before the checkpoint "
				    "at LSN %" PRIu64 " (left by an earlier life of this data "
				    "directory): set aside as '%s/" MFS_JDIR_OPEN "/%s'",
				    j->open_name, s.next_lsn - 1, st.checkpoint, j->path, stale);
			j->w = mfs_segw_free(j->w);
			if (renameat(j->open_dirfd, j->open_name, j->open_dirfd, stale) < 0)
				return log_error_errno(-errno, "cannot set '%s' aside: %m", j->open_name);
			j->open_name[0] = 0;
		}
	}

	r = replay_tail(fs, st.checkpoint, &replayed);
	if (r < 0)
		return r;
	j->state_ckpt = st.checkpoint;
	if (!j->w) {
		seg_no = st.segment;
		last = MFS_MAX(st.last, st.checkpoint);
		uint8_t chain[MFS_TAG_SIZE];

		r = closed_tail(j, &seg_no, &last);
		if (r < 0)
			return log_error_errno(r, "cannot list '%s/" MFS_JDIR_CLOSED "': %m", j->path);
		closed_chain(j, last, chain);
		r = new_segment(j, seg_no + 1, last + 1, chain);
		if (r < 0)
			return log_error_errno(r, "cannot create a segment in '%s/" MFS_JDIR_OPEN "': %m",
					       j->path);
	}
	r = switch_auth(j);
	if (r < 0)
		return r;
	r = mfs_segw_reserve(j->w, 1u << 20);
	if (r < 0)
		return log_error_errno(r, "journal folder '%s' has no room: %m", j->path);
	if (fresh) {
		r = state_write(j, 0, 0);
		if (r < 0)
			return log_error_errno(r, "cannot write '%s/" MFS_JDIR_STATE "': %m", j->path);
		log_info("new data set %s in '%s'", j->uuid_text, j->path);
	}
	return checkpoint_locked(fs, NULL);
}

int fs_journal_open(struct fs *fs)
{
	struct fs_journal *j = calloc(1, sizeof(*j));
	char path[PATH_MAX];
	int r;

	if (!j)
		return -ENOMEM;
	j->keys = &fs->opt.keys;
	j->zstd_level = fs->opt.zstd_level;
	j->dirfd = j->open_dirfd = j->closed_dirfd = j->lock_fd = j->data_lock_fd = -EBADF;
	pthread_rwlock_init(&j->seg_lock, NULL);
	pthread_mutex_init(&j->ckpt_lock, NULL);
	pthread_mutex_init(&j->dsync_lock, NULL);
	pthread_mutex_init(&j->state_lock, NULL);
	pthread_mutex_init(&j->tlock, NULL);
	pthread_cond_init(&j->tcond, NULL);
	fs->j = j;
	if (fs->opt.journal_dir)
		snprintf(path, sizeof(path), "%s", fs->opt.journal_dir);
	else
		snprintf(path, sizeof(path), "%s/" MFS_CTL_DIR, fs->opt.data_dir);
	j->path = strdup(path);
	if (!j->path)
		return -ENOMEM;
	r = open_dirs(fs, j);
	if (r < 0)
		return r;
	r = journal_recover(fs, j);
	if (r == 0)
		r = fs_snap_open(fs); /* after recovery: see snap.c, "Ordering" */
	return r;
}

void fs_journal_close(struct fs *fs)
{
	struct fs_journal *j = fs->j;

	if (!j)
		return;
	if (j->timer_started) {
		pthread_mutex_lock(&j->tlock);
		j->stop = true;
		pthread_cond_signal(&j->tcond);
		pthread_mutex_unlock(&j->tlock);
		pthread_join(j->timer, NULL);
	}
	if (j->w && !atomic_load(&fs->failed)) {
		int r = fs_journal_checkpoint(fs, NULL);
		if (r < 0)
			log_error_errno(r, "final checkpoint of journal '%s' failed: %m", j->path);
	}
	fs_snap_close(fs);
	mfs_segw_free(j->w);
	closep(&j->dirfd);
	closep(&j->open_dirfd);
	closep(&j->closed_dirfd);
	closep(&j->lock_fd); /* releases the locks */
	closep(&j->data_lock_fd);
	free(j->path);
	free(j);
	fs->j = NULL;
}

/* ================================================================ virtual tree support */

int fs_journal_dirfd(struct fs *fs)
{
	return fs->j->dirfd;
}

int fs_journal_closed_dirfd(struct fs *fs)
{
	return fs->j->closed_dirfd;
}

int fs_journal_open_current(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	int fd;

	pthread_rwlock_rdlock(&j->seg_lock);
	fd = openat(j->open_dirfd, j->open_name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	pthread_rwlock_unlock(&j->seg_lock);
	return fd;
}

/* The open segment's writer statistics (zeros between segments). */
static struct mfs_segw_stats open_stats(struct fs_journal *j)
{
	struct mfs_segw_stats s = { 0 };

	pthread_rwlock_rdlock(&j->seg_lock);
	if (j->w)
		mfs_segw_get_stats(j->w, &s);
	pthread_rwlock_unlock(&j->seg_lock);
	return s;
}

uint64_t fs_journal_current_size(struct fs *fs)
{
	return open_stats(fs->j).size;
}

void fs_journal_gauges(struct fs *fs, struct fs_journal_gauges *ret)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s = open_stats(j);

	*ret = (struct fs_journal_gauges){
		.last_lsn = s.next_lsn ? s.next_lsn - 1 : 0,
		.checkpoint_lsn = atomic_load(&j->checkpoint_lsn),
		.open_segment_bytes = s.size,
	};
}

int fs_journal_status(struct fs *fs, char **ret)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s = { 0 };
	_cleanup_free_ struct mfs_segent *segs = NULL;
	char name[256] = "";
	size_t n = 0;
	uint64_t bytes = 0, first = 0;
	char *out, lockjson[192], jpath[2 * PATH_MAX], key_id[17] = "";
	size_t jp = 0;
	_cleanup_free_ char *snaps = NULL;
	int r;

	pthread_rwlock_rdlock(&j->seg_lock);
	if (j->w)
		mfs_segw_get_stats(j->w, &s);
	snprintf(name, sizeof(name), "%s", j->open_name);
	pthread_rwlock_unlock(&j->seg_lock);
	r = mfs_segdir_list(j->closed_dirfd, &segs, &n);
	if (r < 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		struct stat st;
		if (fstatat(j->closed_dirfd, segs[k].name, &st, 0) == 0)
			bytes += (uint64_t)st.st_size;
	}
	first = n ? segs[0].first : s.first_lsn;
	fs_lock_status(fs, lockjson, sizeof(lockjson));
	if (fs_snap_json(fs, &snaps) < 0)
		return -ENOMEM;
	/* the real closed-segments folder: a shipper can watch it with inotify
	 * (the kernel reports nothing for segments appearing on the mount) */
	for (const char *c = j->path; *c && jp < sizeof(jpath) - 8; c++) {
		if (*c == '"' || *c == '\\')
			jpath[jp++] = '\\';
		if ((unsigned char)*c >= 0x20)
			jpath[jp++] = *c;
	}
	jpath[jp] = 0;
	if (j->keys->n)
		mfs_auth_id_format(j->keys->keys[0].id, key_id);
	r = asprintf(&out,
		     "{\"dataset\":\"%s\",\"first_lsn\":%" PRIu64 ",\"last_lsn\":%" PRIu64
		     ",\"durable_lsn\":%" PRIu64 ",\"checkpoint_lsn\":%" PRIu64
		     ",\"open_segment\":\"%s\",\"open_segment_seq\":%" PRIu64
		     ",\"open_segment_first_lsn\":%" PRIu64 ",\"open_segment_size\":%" PRIu64
		     ",\"open_segment_records\":%" PRIu64 ",\"segments\":%zu,\"segments_bytes\":%" PRIu64
		     ",\"journal_syncs\":%" PRIu64 ",\"journal_sync_requests\":%" PRIu64
		     ",\"pending_bytes\":%" PRIu64
		     ",%s,\"failed\":%s,\"journal_path\":\"%s/" MFS_JDIR_CLOSED "\",\"snapshots\":%s"
		     ",\"format\":%u,\"auth_key_id\":\"%s\"}\n",
		     j->uuid_text, first, s.next_lsn ? s.next_lsn - 1 : 0, s.durable_lsn,
		     atomic_load(&j->checkpoint_lsn), name, s.seg_no, s.first_lsn, s.size,
		     s.records, n, bytes, s.syncs, s.sync_requests, fs_pending_bytes(fs), lockjson,
		     atomic_load(&fs->failed) ? "true" : "false", jpath, snaps,
		     j->keys->n || j->zstd_level ? MFS_FORMAT_VERSION_2 : MFS_FORMAT_VERSION, key_id);
	if (r < 0)
		return -ENOMEM;
	*ret = out;
	return 0;
}
