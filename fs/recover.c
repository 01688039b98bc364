/* SPDX-License-Identifier: MIT */
/*
 * recover.c - opening the journal (its locks and folders, then crash
 * recovery) and closing it.
 *
 * Recovery on mount reads the state file, continues the open segment a
 * crash left (cutting its torn tail; of two, the older is sealed), checks
 * the closed segments when mirrorfs has keys (keycheck.c), replays every
 * record after the last checkpoint onto DATADIR (the redo pass, redo.c),
 * then opens the segment new records go to and marks a checkpoint. A
 * journal folder without a state file and without segments is a new data
 * set; one with segments but no state file is refused.
 */
#include "journal_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/pidlock.h"
#include "mirrorfs/segment.h"

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
			r = fs_journal_move_sealed(j, name);
			continue;
		}
		if (r == -ENOKEY)
			return log_error_errno(r, "open segment '%s/" MFS_JDIR_OPEN "/%s' is authenticated "
					       "or encrypted with a key not given: mount with -o "
					       "auth_key=FILE or encrypt_key=FILE (and auth_key_old=FILE "
					       "or encrypt_key_old=FILE while a key changes)",
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

	r = fs_journal_verify_closed(j, st.checkpoint);
	if (r < 0)
		return r;
	r = fs_journal_redo(fs, st.checkpoint, &replayed);
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
		fs_journal_start_chain(j, &st, last, chain);
		r = fs_journal_new_segment(j, seg_no + 1, last + 1, chain);
		if (r < 0)
			return log_error_errno(r, "cannot create a segment in '%s/" MFS_JDIR_OPEN "': %m",
					       j->path);
	}
	r = fs_journal_switch_auth(j);
	if (r < 0)
		return r;
	r = mfs_segw_reserve(j->w, 1u << 20);
	if (r < 0)
		return log_error_errno(r, "journal folder '%s' has no room: %m", j->path);
	if (fresh) {
		r = fs_journal_state_write(j, 0, 0);
		if (r < 0)
			return log_error_errno(r, "cannot write '%s/" MFS_JDIR_STATE "': %m", j->path);
		log_info("new data set %s in '%s'", j->uuid_text, j->path);
	}
	return fs_journal_checkpoint_locked(fs, NULL);
}

int fs_journal_open(struct fs *fs)
{
	struct fs_journal *j = calloc(1, sizeof(*j));
	char path[PATH_MAX];
	int r;

	if (!j)
		return -ENOMEM;
	j->keys = &fs->opt.keys;
	j->dec = fs->opt.keys;
	j->dec.n = 0;
	explicit_bzero(j->dec.keys, sizeof(j->dec.keys));
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
	return journal_recover(fs, j);
}

void fs_journal_stop(struct fs *fs)
{
	struct fs_journal *j = fs->j;

	if (!j)
		return;
	fs_journal_timer_stop(j);
	if (j->w && !atomic_load(&fs->failed)) {
		int r = fs_journal_checkpoint(fs, NULL);
		if (r < 0)
			log_error_errno(r, "final checkpoint of journal '%s' failed: %m", j->path);
	}
}

void fs_journal_close(struct fs *fs)
{
	struct fs_journal *j = fs->j;

	if (!j)
		return;
	if (j->w && !atomic_load(&fs->failed)) { /* a clean unmount leaves no zeroed window */
		int r = mfs_segw_trim(j->w);
		if (r < 0)
			log_warning_errno(r, "cannot cut the zeros after the last record of '%s/"
					  MFS_JDIR_OPEN "/%s', ignoring: %m", j->path, j->open_name);
	}
	mfs_segw_free(j->w);
	closep(&j->dirfd);
	closep(&j->open_dirfd);
	closep(&j->closed_dirfd);
	closep(&j->lock_fd); /* releases the locks */
	closep(&j->data_lock_fd);
	free(j->path);
	explicit_bzero(&j->dec, sizeof(j->dec));
	free(j);
	fs->j = NULL;
}
