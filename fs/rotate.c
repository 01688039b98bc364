/* SPDX-License-Identifier: MIT */
/*
 * rotate.c - segment rotation: closing the open segment into journal/
 * (by size, by time, on "rotate"), the switch at a snapshot's LSN in its
 * lock window (sealed and established after the window, in parallel),
 * trims of closed segments, and the timer thread that rotates,
 * checkpoints, commits pending writes and writes the metrics file.
 */
#include "journal_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"


/* Seal a left-over open segment that already has a trailer into journal/. */
int fs_journal_move_sealed(struct fs_journal *j, const char *name)
{
	_cleanup_close_ int fd = openat(j->open_dirfd, name, O_RDONLY | O_CLOEXEC);
	struct mfs_seg_info info;
	char closed[MFS_SEG_NAME_LEN + 1];
	int r;

	if (fd < 0)
		return -errno;
	r = mfs_seg_scan_fd_opts(fd, &(struct mfs_segr_opts){ .expect_uuid = j->uuid,
							       .keys = &j->dec },
				 NULL, NULL, &info);
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
	r = ckpt ? fs_journal_checkpoint_locked(fs, NULL) : 0;
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
			(void)fs_journal_move_sealed(j, old);
	}
	if (!j->w) {
		int r2 = fs_journal_new_segment(j, s.seg_no + 1, s.next_lsn, chain);
		if (r2 < 0)
			fs_fail(fs, r2, "cannot create a new journal segment");
		r = r < 0 ? r : r2;
	}
	pthread_rwlock_unlock(&j->seg_lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (r == 0) {
		(void)fs_journal_state_write(j, s.next_lsn - 1, atomic_load(&j->checkpoint_lsn));
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
				 MFS_SEGW_LAZY, fs_journal_seg_opts(j, chain, &o), &j->w);
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
	/* No fs_journal_state_write(): its "segment" and "last" only matter to a mount
	 * that finds no open segment, and the new one is durable now. */
	if (r == 0)
		log_info("closed segment '%s'", closed);
	pthread_mutex_unlock(&j->ckpt_lock);
	return r;
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
		r = fs_journal_checkpoint_locked(fs, NULL); /* recovery must not need it any more */
	if (r == 0 && unlinkat(j->closed_dirfd, name, 0) < 0)
		r = -errno;
	pthread_mutex_unlock(&j->ckpt_lock);
	if (r == 0) {
		(void)mfs_fsync_dir(j->closed_dirfd, NULL);
		log_debug("trimmed segment '%s'", name);
	}
	return r;
}

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
		(void)fs_journal_checkpoint_locked(fs, NULL);
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
		 * -> tlock (fs_journal_append(), in a mutation that holds ns_lock).
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
		if (fs->hooks.tick)
			fs->hooks.tick(fs, false);
	}
	pthread_mutex_unlock(&j->tlock);
	return NULL;
}

int fs_journal_start(struct fs *fs)
{
	struct fs_journal *j = fs->j;
	int r;

	j->last_rotate_ns = j->last_ckpt_ns = mfs_mono_ns();
	if (fs->hooks.tick) /* before the timer thread, which owns it next */
		fs->hooks.tick(fs, true);
	r = pthread_create(&j->timer, NULL, timer_main, fs);
	if (r)
		return log_error_errno(-r, "cannot start the timer thread: %m");
	j->timer_started = true;
	return 0;
}

void fs_journal_timer_stop(struct fs_journal *j)
{
	if (!j->timer_started)
		return;
	pthread_mutex_lock(&j->tlock);
	j->stop = true;
	pthread_cond_signal(&j->tcond);
	pthread_mutex_unlock(&j->tlock);
	pthread_join(j->timer, NULL);
	j->timer_started = false;
}
