/* SPDX-License-Identifier: MIT */
/*
 * journal.c - the journal of a mounted data set: the segment writer
 * (append, group commit), checkpoints and fences.
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
 * Rotation, the snapshots' segment switch, trims and the timer thread are
 * in rotate.c; opening (locks, folders, crash recovery) and closing in
 * recover.c, which replays the tail through redo.c and, on a keyed mount,
 * checks the closed segments' tags through keycheck.c; the private
 * interfaces in journal_i.h.
 */
#include "journal_i.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"


void fs_fail(struct fs *fs, int r, const char *what)
{
	int expected = 0;

	if (atomic_compare_exchange_strong(&fs->failed, &expected, r ? r : -EIO))
		log_error_errno(r, "FATAL: %s: %m; the journal '%s' and the backing files in '%s' "
				   "may disagree, every further change fails with EIO; unmount and "
				   "mount again to recover",
				what, fs->j ? fs->j->path : "?", fs->opt.data_dir);
}

/* Write the state file: backing files durable up to LSN @ckpt. */
int fs_journal_state_write(struct fs_journal *j, uint64_t last, uint64_t ckpt)
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

/*
 * Options of the next segment: authenticated with the first key, if any,
 * continuing the chain from @prev (the last tag before it, or NULL).
 */
const struct mfs_segw_opts *fs_journal_seg_opts(struct fs_journal *j, const uint8_t *prev,
					    struct mfs_segw_opts *o)
{
	if (!j->keys->n && !j->keys->n_enc && !j->zstd_level)
		return NULL;
	memset(o, 0, sizeof(*o));
	o->key = j->keys->n ? &j->keys->keys[0] : NULL;
	o->enc_key = j->keys->n_enc ? &j->keys->enc[0] : NULL;
	o->zstd_level = j->zstd_level;
	if (prev && o->key)
		memcpy(o->prev_tag, prev, MFS_TAG_SIZE);
	return o;
}

int fs_journal_new_segment(struct fs_journal *j, uint64_t seg_no, uint64_t first_lsn,
		       const uint8_t *prev)
{
	struct mfs_segw_opts o;
	char name[64];
	int r;

	mfs_jdir_open_name(seg_no, name);
	r = mfs_segw_create_opts(j->open_dirfd, name, j->uuid, seg_no, first_lsn, 0,
				 fs_journal_seg_opts(j, prev, &o), &j->w);
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

static int journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn, int *ret_fd,
			  uint64_t *ret_off);

int fs_journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn)
{
	return journal_append(fs, rec, ret_lsn, NULL, NULL);
}

int fs_journal_append_at(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn, int *ret_fd,
			 uint64_t *ret_off)
{
	return journal_append(fs, rec, ret_lsn, ret_fd, ret_off);
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

/* With @ret_fd: where the data of write @rec lies, as given, in the
 * segment (an fd of it, the caller's to close), or -1 (not as given). */
static int journal_append(struct fs *fs, struct mfs_rec *rec, uint64_t *ret_lsn, int *ret_fd,
			  uint64_t *ret_off)
{
	struct fs_journal *j = fs->j;
	uint64_t lsn = 0, bytes, add, off = UINT64_MAX;
	int r, fd = -1;

	r = fs_check_failed(fs);
	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&j->seg_lock);
	r = j->w ? mfs_segw_append_at(j->w, rec, &lsn, ret_fd ? &off : NULL) : -EIO;
	if (r == 0 && off != UINT64_MAX)
		fd = fcntl(mfs_segw_fd(j->w), F_DUPFD_CLOEXEC, 3);
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
	if (ret_fd) {
		*ret_fd = fd;
		*ret_off = off;
	}
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
				if (fs->hooks.fsync)
					fs->hooks.fsync(fs, mfs_mono_ns() - t0);
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
	int r = journal_append(fs, rec, &lsn, NULL, NULL);

	if (r < 0)
		return r;
	r = fs_journal_sync(fs, lsn);
	if (r < 0)
		return r;
	*ret_lsn = lsn;
	return 0;
}

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

int fs_journal_checkpoint_locked(struct fs *fs, uint64_t *ret_lsn)
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
	r = fs_journal_state_write(j, m, m == l + 1 ? m : l);
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
	r = fs_journal_checkpoint_locked(fs, ret_lsn);
	pthread_mutex_unlock(&fs->j->ckpt_lock);
	return r;
}

void fs_journal_uuid(struct fs *fs, char out[37])
{
	memcpy(out, fs->j->uuid_text, 37);
}

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

int fs_journal_info(struct fs *fs, struct fs_journal_info *ret)
{
	struct fs_journal *j = fs->j;
	struct mfs_segw_stats s = { 0 };
	_cleanup_free_ struct mfs_segent *segs = NULL;
	struct fs_journal_info in = { .path = j->path };
	size_t n = 0;
	int r;

	pthread_rwlock_rdlock(&j->seg_lock);
	if (j->w)
		mfs_segw_get_stats(j->w, &s);
	snprintf(in.open_segment, sizeof(in.open_segment), "%s", j->open_name);
	pthread_rwlock_unlock(&j->seg_lock);
	r = mfs_segdir_list(j->closed_dirfd, &segs, &n);
	if (r < 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		struct stat st;
		if (fstatat(j->closed_dirfd, segs[k].name, &st, 0) == 0)
			in.segments_bytes += (uint64_t)st.st_size;
	}
	memcpy(in.dataset, j->uuid_text, sizeof(in.dataset));
	in.first_lsn = n ? segs[0].first : s.first_lsn;
	in.last_lsn = s.next_lsn ? s.next_lsn - 1 : 0;
	in.durable_lsn = s.durable_lsn;
	in.checkpoint_lsn = atomic_load(&j->checkpoint_lsn);
	in.open_segment_seq = s.seg_no;
	in.open_segment_first_lsn = s.first_lsn;
	in.open_segment_size = s.size;
	in.open_segment_records = s.records;
	in.segments = n;
	in.syncs = s.syncs;
	in.sync_requests = s.sync_requests;
	in.format = j->keys->n || j->keys->n_enc || j->zstd_level ? MFS_FORMAT_VERSION_2
								  : MFS_FORMAT_VERSION;
	if (j->keys->n)
		mfs_auth_id_format(j->keys->keys[0].id, in.auth_key_id);
	if (j->keys->n_enc)
		mfs_auth_id_format(j->keys->enc[0].id, in.encrypt_key_id);
	*ret = in;
	return 0;
}
