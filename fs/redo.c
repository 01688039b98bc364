/* SPDX-License-Identifier: MIT */
/*
 * redo.c - crash recovery's redo pass: every record after the last
 * checkpoint, replayed onto DATADIR on mount (recover.c opens the journal
 * and calls it).
 *
 * The pass replays every record after the last checkpoint (the state
 * file's, or a later mark in the durable journal) into DATADIR, from the
 * closed segments and the open one (whose torn tail is cut), then fsyncs
 * what it changed. That is correct whatever subset of those records had
 * reached the backing files: rmdir, rename and the unlink of a name that
 * is not a file's last run after a fence (fs_journal_fence, a checkpoint
 * mark without a state file), so such a removal can only be the first
 * record of that tail, and a rename also before a second fence. The unlink
 * of a file's last name may come anywhere: what was journaled before it
 * about that file changes nothing else (fs_remove_is_unfenced, mutate.c).
 * An unlink or rmdir replayed after later records removes what they put
 * at its name, and they put it back; a rename would not, hence its second
 * fence. Every replayed record then makes its post-condition true
 * (lib/replay.c, "Idempotency"); a data record that meets a folder or
 * symlink a later record made is done (is_replaced). One limit:
 * RENAME_EXCHANGE applied but its second mark not yet durable when the
 * power fails is exchanged again by recovery.
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
#include "mirrorfs/rectype.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"
#include "mirrorfs/segrun.h"

static int name_cmp(const void *a, const void *b);

struct replay_ctx {
	uint64_t applied, failed;
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
	touch(c, rec->path, false);
	if (mfs_rec_type_changes_names(rec->type))
		touch(c, rec->path, true);
	if (mfs_rec_type_has_path2(rec->type)) {
		touch(c, rec->path2, false);
		touch(c, rec->path2, true);
	}
}

/* The read pass's hook: find the last checkpoint mark. */
static int mark_one(void *arg, const struct mfs_rec *rec, int e)
{
	struct replay_ctx *c = arg;

	if (rec->type == MFS_REC_CHECKPOINT)
		c->mark = MFS_MAX(c->mark, rec->length);
	return 0;
}

/*
 * A data record (write, truncate, fallocate) that met a folder (EISDIR) or
 * a symlink or other non-regular object (EINVAL) at its path: the primary
 * journals one only for a regular file, so a later record of the tail put
 * that object there, after the unlink of the file's last name, which runs
 * without a fence (mutate.c). Done, as a record that meets no name is
 * (lib/replay.c, "Idempotency").
 */
static bool is_replaced(const struct mfs_rec *rec, int e)
{
	return (e == -EISDIR || e == -EINVAL) && mfs_rec_type_is_data(rec->type);
}

/* The redo pass's hook: what was applied, for the fsync after; a record
 * that failed is logged and passed over. */
static int replay_one(void *arg, const struct mfs_rec *rec, int e)
{
	struct replay_ctx *c = arg;

	if (mfs_rec_type_is_marker(rec->type))
		return 0;
	if (e == MFS_SEGRUN_PAST_LIMITS) {
		/* failed when it was made (EFBIG...): a later record compensates */
		log_debug("recovery: LSN %" PRIu64 " %s '%s' is past the file system's limits, "
			  "skipped", rec->lsn, mfs_rec_type_name(rec->type), rec->path);
		return 0;
	}
	if (e < 0 && is_replaced(rec, e)) {
		log_debug("recovery: LSN %" PRIu64 " %s '%s' met another kind of object, which a "
			  "later record made: done", rec->lsn, mfs_rec_type_name(rec->type), rec->path);
		return 0;
	}
	touch_rec(c, rec);
	if (e < 0) {
		char line[512];
		mfs_rec_format(rec, line, sizeof(line));
		log_warning_errno(e, "recovery: LSN %" PRIu64 " (%s) failed, ignoring: %m",
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

/* Segment @name, in journal/ when @closed, else in open/, through @run.
 * Errors are logged. */
static int replay_file(struct fs_journal *j, int dirfd, const char *name, bool closed,
		       struct mfs_segrun *run)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	const char *sub = closed ? MFS_JDIR_CLOSED : MFS_JDIR_OPEN;
	char path[PATH_MAX];
	int r;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open segment '%s/%s/%s': %m", j->path, sub,
				       name);
	snprintf(path, sizeof(path), "%s/%s/%s", j->path, sub, name);
	r = mfs_segrun_fd(run, fd, path, !closed);
	if (r < 0 && run->why[0])
		return log_error_errno(r, "%s", run->why);
	return r;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * One pass of a stream-mode run (lib/segrun.c) over the closed segments
 * after LSN @after, then the open one: into @engine (the redo pass), or
 * into nothing (the read pass, @engine NULL), each record to @each with
 * @c. *ret_last: the last LSN handled.
 */
static int replay_pass(struct fs_journal *j, const struct mfs_segent *segs, size_t n,
		       uint64_t after, struct mfs_replay *engine,
		       int (*each)(void *arg, const struct mfs_rec *rec, int e),
		       struct replay_ctx *c, uint64_t *ret_last)
{
	struct mfs_segrun run;
	int r = 0;

	mfs_segrun_init(&run, engine, after);
	run.stream = true;
	run.keys = &j->dec;
	run.have_uuid = true;
	memcpy(run.uuid, j->uuid, 16);
	run.each = each;
	run.each_arg = c;
	for (size_t k = 0; k < n && r == 0; k++)
		if (segs[k].last > after)
			r = replay_file(j, j->closed_dirfd, segs[k].name, true, &run);
	if (r == 0 && j->w)
		r = replay_file(j, j->open_dirfd, j->open_name, false, &run);
	*ret_last = run.last;
	return r;
}

/*
 * Replay every record after the last checkpoint: the state file's, or a
 * later checkpoint mark in the durable journal (fences write them, see
 * fs_journal_fence), onto DATADIR, then fsync what it changed. Between
 * two marks no record removes a name but the first after a mark and the
 * unlinks of files' last names, so the records apply idempotently onto a
 * tree that already has any of them.
 */
int fs_journal_redo(struct fs *fs, uint64_t after, uint64_t *ret_last)
{
	struct fs_journal *j = fs->j;
	struct replay_ctx c = { 0 };
	struct mfs_replay *engine = NULL;
	_cleanup_free_ struct mfs_segent *segs = NULL;
	uint64_t last = after;
	size_t n = 0;
	int r;

	r = mfs_segdir_list(j->closed_dirfd, &segs, &n);
	if (r < 0)
		return log_error_errno(r, "cannot list '%s/" MFS_JDIR_CLOSED "': %m", j->path);
	r = replay_pass(j, segs, n, after, NULL, mark_one, &c, &last);
	if (r == 0) {
		after = MFS_MAX(after, c.mark);
		atomic_store(&j->checkpoint_lsn, after);
		r = mfs_replay_new(fs->sync_fd, MFS_REPLAY_F_NO_SYNC, &engine);
		if (r < 0)
			log_error_errno(r, "cannot start the replay engine on '%s': %m",
					fs->opt.data_dir);
	}
	if (r == 0)
		r = replay_pass(j, segs, n, after, engine, replay_one, &c, &last);
	if (engine && r == 0) {
		int r2 = mfs_replay_finish(engine);
		if (r2 < 0)
			log_warning_errno(r2, "recovery: replay into '%s' finished with an error, "
					  "ignoring: %m", fs->opt.data_dir);
	}
	mfs_replay_free(engine);
	if (r == 0 && !fs->opt.skip_backing_sync)
		r = sync_touched(fs, &c);
	touched_free(&c);
	if (r == 0 && (c.applied || c.failed))
		log_notice("recovery: replayed %" PRIu64 " records after checkpoint LSN %" PRIu64
			   " up to LSN %" PRIu64 " (%" PRIu64 " failed)",
			   c.applied, after, last, c.failed);
	*ret_last = last;
	return r;
}
