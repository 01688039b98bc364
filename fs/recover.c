/* SPDX-License-Identifier: MIT */
/*
 * recover.c - opening the journal (its locks and folders, then crash
 * recovery) and closing it.
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
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"


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
	r = mfs_seg_scan_fd_opts(fd, &(struct mfs_segr_opts){ .expect_uuid = j->uuid,
							       .keys = &j->dec },
				 replay_one, c, &info);
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
	const uint8_t *id = mfs_segw_key_id(j->w), *eid = mfs_segw_enc_key_id(j->w);
	uint8_t chain[MFS_TAG_SIZE];
	char closed[MFS_SEG_NAME_LEN + 1], old[256];
	int r;

	if ((j->keys->n ? id && !memcmp(id, j->keys->keys[0].id, MFS_AUTH_KEY_ID_SIZE) : !id) &&
	    (j->keys->n_enc ? eid && !memcmp(eid, j->keys->enc[0].id, MFS_AUTH_KEY_ID_SIZE)
			    : !eid) &&
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
	log_notice("segment '%s' closed: new segments are %s%s%s", old,
		   j->keys->n ? "authenticated with the given key" : "not authenticated",
		   j->keys->n_enc ? ", encrypted with the given key" : "",
		   j->zstd_level ? ", compressed" : "");
	r = fs_journal_new_segment(j, s.seg_no + 1, s.next_lsn, chain);
	if (r < 0)
		return log_error_errno(r, "cannot create a segment in '%s/" MFS_JDIR_OPEN "': %m",
				       j->path);
	return 0;
}

/* What verify_closed() carries from one closed segment to the next. */
struct verify_ctx {
	uint64_t after;      /* the checkpoint: segments past it are replayed */
	bool tagged;         /* a tagged segment came before */
	bool have_chain;     /* chain_tag is the chain value at chain_lsn */
	uint64_t chain_lsn;
	uint8_t chain_tag[MFS_TAG_SIZE];
	uint64_t checked, untagged, bytes;
};

/*
 * Check closed segment @name with our keys. A segment that is tagged must
 * authenticate whole and continue the chain of the one before it; an
 * untagged one (written before the primary was keyed) is accepted unless
 * a tagged one came before it and it is to be replayed; one tagged with a
 * key not given is checked only if it is to be replayed (else a notice:
 * an old key's leftovers after a key change). Returns 0 or -EBADMSG,
 * -ENOKEY (logged with the LSN, the record and the path).
 */
static int verify_one(struct fs_journal *j, const char *name, struct verify_ctx *v)
{
	struct mfs_segr_opts o = { .expect_uuid = j->uuid, .keys = j->keys };
	_cleanup_close_ int fd = openat(j->closed_dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct mfs_seg_info info;
	char why[320];
	int r;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open segment '%s/" MFS_JDIR_CLOSED "/%s': %m",
				       j->path, name);
	r = mfs_seg_scan_fd_opts(fd, &o, NULL, NULL, &info);
	if (r < 0)
		return log_error_errno(r, "cannot read segment '%s/" MFS_JDIR_CLOSED "/%s': %m", j->path,
				       name);
	v->bytes += info.file_size;
	mfs_seg_verdict_format(&info, why, sizeof(why));
	if (info.verdict == MFS_SEG_UNAUTH && info.auth_fail != MFS_AUTH_BAD_TAG &&
	    info.last_lsn <= v->after) {
		/* not replayed here: untagged history, or an old key's leftovers */
		v->untagged++;
		v->have_chain = false;
		return 0;
	}
	if (info.verdict == MFS_SEG_UNAUTH && info.auth_fail == MFS_AUTH_NO_TAGS && !v->tagged) {
		v->untagged++;
		return 0;
	}
	if (info.verdict != MFS_SEG_OK || !info.authenticated)
		return log_error_errno(info.auth_fail == MFS_AUTH_UNKNOWN_KEY ? -ENOKEY : -EBADMSG,
				       "closed segment '%s/" MFS_JDIR_CLOSED "/%s' (LSN %" PRIu64 "..) "
				       "fails its check: %s; refusing to mount", j->path, name,
				       info.first_lsn, why);
	if (v->have_chain && v->chain_lsn + 1 == info.first_lsn && !tag_zero(info.prev_tag) &&
	    !mfs_auth_tag_equal(info.prev_tag, v->chain_tag))
		return log_error_errno(-EBADMSG, "closed segment '%s/" MFS_JDIR_CLOSED "/%s' does not "
				       "continue the chain: the previous tag in its header is not "
				       "the tag of LSN %" PRIu64 " (the last record of the segment "
				       "before); refusing to mount", j->path, name, v->chain_lsn);
	v->tagged = true;
	v->have_chain = true;
	v->chain_lsn = info.last_lsn;
	memcpy(v->chain_tag, info.last_tag, MFS_TAG_SIZE);
	v->checked++;
	return 0;
}

/*
 * With keys: check the tags of every closed segment in the journal folder
 * before recovery replays any of them (and before a shipper takes them), so
 * a segment altered at rest stops the mount with its path and LSN.
 */
static int verify_closed(struct fs_journal *j, uint64_t checkpoint)
{
	struct verify_ctx v = { .after = checkpoint };
	uint64_t t0 = mfs_mono_ns();
	_cleanup_free_ struct mfs_segent *segs = NULL;
	size_t n = 0;
	int r;

	if (!j->keys->n)
		return 0;
	r = mfs_segdir_list(j->closed_dirfd, &segs, &n);
	if (r < 0)
		return log_error_errno(r, "cannot list '%s/" MFS_JDIR_CLOSED "': %m", j->path);
	for (size_t k = 0; k < n && r == 0; k++)
		r = verify_one(j, segs[k].name, &v);
	if (r == 0 && n)
		log_info("recovery: %" PRIu64 " closed segments authenticated, %" PRIu64
			 " not checked (untagged or an old key's, already applied), %.1f MiB in "
			 "%.3f s", v.checked, v.untagged, (double)v.bytes / 1048576.0,
			 (double)(mfs_mono_ns() - t0) / 1e9);
	return r;
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

	r = verify_closed(j, st.checkpoint);
	if (r < 0)
		return r;
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
		if (tag_zero(chain) && j->keys->n && st.have_chain && st.chain_lsn == last) {
			/* a promoted mirror's first segment: the chain it verified */
			memcpy(chain, st.chain_tag, MFS_TAG_SIZE);
			log_notice("the authenticated chain continues from the promoted mirror's "
				   "at LSN %" PRIu64, last);
		}
		r = fs_journal_new_segment(j, seg_no + 1, last + 1, chain);
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
