/* SPDX-License-Identifier: MIT */
/*
 * segrun.c - a run of segment files applied in LSN order with the replay
 * engine, shared by `mirrorctl replay`, `mirrorctl restore`, `mirrorctl
 * promote` and crash recovery on mount (fs/redo.c).
 *
 * Each file is loaded once (mfs_replay_seg_load) and validated in full:
 * the reader's verdict, every record's checks, then the engine's preflight
 * against the target (symlinks, sizes past the file system's limits,
 * fallocate totals, device nodes), all before its first record is applied,
 * so that nothing of a refused segment is applied; records past an
 * --until limit are neither checked nor applied. The run keeps the
 * invariant that the target holds every LSN up to run->last and nothing
 * after it; a file that does not start at or before run->last + 1 is a gap.
 *
 * Stream mode, for crash recovery and mirrord's naive mode, applies each
 * record as the file is read and hands what happened to it to the
 * caller's hook, which decides whether a failed record stops the run;
 * the file's verdict is judged once it was read.
 */
#include "mirrorfs/segrun.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/auth.h"
#include "mirrorfs/format.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

/* Say why the run stops in run->why; returns @r. */
static int fail(struct mfs_segrun *run, int r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct mfs_segrun *run, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(run->why, sizeof(run->why), fmt, ap);
	va_end(ap);
	return r;
}

static void warn(struct mfs_segrun *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct mfs_segrun *run, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!run->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	run->warn(run->warn_arg, line);
}

/* ================================================================ applying */

struct apply_ctx {
	struct mfs_segrun *run;
};

/* After each record applied: progress and the run's position. */
static int apply_cb(const struct mfs_rec *rec, void *arg)
{
	struct apply_ctx *c = arg;
	struct mfs_segrun *run = c->run;

	run->bytes += mfs_rec_head_size(rec) + rec->data_len;
	if (run->progress)
		run->progress(run->progress_arg, run->bytes);
	run->last = rec->lsn;
	run->last_ns = rec->time_ns;
	run->records++;
	return run->each ? run->each(run->each_arg, rec, 0) : 0;
}

/* Does the closed-segment name of @path (if it is one) agree with its content? */
static bool name_agrees(const char *path, const struct mfs_seg_info *info)
{
	const char *base = strrchr(path, '/');
	uint64_t first, last;

	if (!mfs_seg_name_parse(base ? base + 1 : path, &first, &last))
		return true;
	if (info->verdict == MFS_SEG_OK)
		return info->first_lsn == first && info->last_lsn == last;
	return info->first_lsn == first && info->last_lsn <= last; /* torn: a prefix */
}

static bool is_closed_name(const char *path)
{
	const char *base = strrchr(path, '/');
	uint64_t first, last;

	return mfs_seg_name_parse(base ? base + 1 : path, &first, &last);
}

/*
 * Full validation of loaded segment @s, every record included (the
 * engine's checks): 0, or -EBADMSG with run->why. Sets run->uuid.
 */
static int validate(struct mfs_segrun *run, struct mfs_replay_seg *s, const char *path,
		    bool last_file)
{
	const struct mfs_seg_info *info = mfs_replay_seg_info(s);
	char verdict[256];
	uint64_t bad;

	mfs_seg_verdict_format(info, verdict, sizeof(verdict));
	if (info->verdict != MFS_SEG_OK &&
	    !(info->verdict == MFS_SEG_TORN && last_file && info->header_valid) &&
	    !(mfs_seg_auth_prefix_ok(info) && last_file && !is_closed_name(path)))
		return fail(run, -EBADMSG, "refusing '%s': %s", path, verdict);
	if (run->auth && mfs_seg_chain_check(info, run->have_chain, run->chain_lsn, run->chain_tag,
					 verdict, sizeof(verdict)))
		return fail(run, -EBADMSG, "refusing '%s': %s", path, verdict);
	if (info->verdict == MFS_SEG_UNAUTH)
		warn(run, "'%s': %s; applying its authenticated part, up to LSN %" PRIu64, path,
			 verdict, info->last_lsn);
	if (!name_agrees(path, info))
		return fail(run, -EBADMSG, "refusing '%s': its name does not match the LSNs it holds (%" PRIu64
				"..%" PRIu64 ")",
				path, info->first_lsn, info->last_lsn);
	if (mfs_replay_seg_refused(s, &bad, NULL) && bad > run->last && bad <= run->until_lsn)
		return fail(run, -EBADMSG, "refusing '%s': %s", path,
			    mfs_replay_seg_why(s, NULL) ?: "?");
	if (info->verdict == MFS_SEG_TORN)
		warn(run, "'%s': %s; applying up to LSN %" PRIu64, path, verdict, info->last_lsn);
	if (!run->have_uuid) {
		memcpy(run->uuid, info->uuid, 16);
		run->have_uuid = true;
	}
	return 0;
}

bool mfs_seg_auth_prefix_ok(const struct mfs_seg_info *info)
{
	return info->verdict == MFS_SEG_UNAUTH && info->auth_fail == MFS_AUTH_BAD_TAG &&
	       info->header_valid;
}

const char *mfs_seg_chain_check(const struct mfs_seg_info *info, bool have_chain, uint64_t chain_lsn,
			    const uint8_t chain_tag[32], char *buf, size_t cap)
{
	static const uint8_t zero[32];

	if (!have_chain || info->first_lsn != chain_lsn + 1 || !memcmp(info->prev_tag, zero, 32) ||
	    mfs_auth_tag_equal(info->prev_tag, chain_tag))
		return NULL;
	snprintf(buf, cap, "not authenticated: chain broken at LSN %" PRIu64 ": its previous tag "
		 "is not the tag of LSN %" PRIu64 " (a segment dropped, reordered, replayed, or "
		 "from another history)", info->first_lsn, chain_lsn);
	return buf;
}

void mfs_segrun_init(struct mfs_segrun *run, struct mfs_replay *engine, uint64_t after)
{
	*run = (struct mfs_segrun){
		.until_lsn = UINT64_MAX,
		.until_ns = UINT64_MAX,
		.last = after,
		.engine = engine,
	};
}

/* Open @path for reading without blocking on a FIFO; it must be a regular file. */
static int open_regular(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		(void)close(fd);
		return -EINVAL;
	}
	return fd;
}

int mfs_segrun_file(struct mfs_segrun *run, const char *path, bool last_file)
{
	_cleanup_close_ int fd = -EBADF;

	run->why[0] = 0;
	fd = open_regular(path);
	if (fd == -EINVAL)
		return fail(run, fd, "refusing '%s': not a regular file", path);
	if (fd < 0)
		return fail(run, fd, "cannot open '%s': %s", path, strerror(-fd));
	return mfs_segrun_fd(run, fd, path, last_file);
}

/* Whole-file mode: validate all of @fd, preflight it, then apply it. */
static int run_whole(struct mfs_segrun *run, int fd, const char *path, bool last_file)
{
	struct apply_ctx c = { .run = run };
	struct mfs_replay_seg *s = NULL;
	struct mfs_seg_info info;
	int r;

	r = mfs_replay_seg_load(run->engine, fd, run->have_uuid ? run->uuid : NULL, UINT64_MAX, &s);
	if (r < 0)
		return fail(run, r, "cannot read '%s': %s", path, strerror(-r));
	r = validate(run, s, path, last_file);
	if (r < 0) {
		mfs_replay_seg_free(s);
		return r;
	}
	info = *mfs_replay_seg_info(s);
	if ((run->started || run->check_start) && info.first_lsn > run->last + 1) {
		mfs_replay_seg_free(s);
		return fail(run, -EBADMSG, "gap before '%s': LSN %" PRIu64 "..%" PRIu64 " missing",
			    path, run->last + 1, info.first_lsn - 1);
	}
	run->started = true;
	if (run->auth) { /* the chain at the end of what this file holds */
		run->have_chain = true;
		run->chain_lsn = info.last_lsn;
		memcpy(run->chain_tag, info.last_tag, 32);
	}
	if (info.last_lsn <= run->last) {
		mfs_replay_seg_free(s);
		return 0; /* nothing new in it */
	}
	mfs_replay_seg_limit(s, run->until_lsn, run->until_ns);
	r = mfs_replay_seg_preflight(run->engine, s, run->last);
	if (r < 0) {
		bool local;
		const char *why = mfs_replay_seg_why(s, &local);

		fail(run, r, "%s '%s', nothing of it applied: %s", local ? "cannot apply" : "refusing",
		     path, why ?: strerror(-r));
		mfs_replay_seg_free(s);
		return r;
	}
	run->bytes += MFS_SEG_HEADER_SIZE;
	r = mfs_replay_seg_apply(run->engine, s, run->last, apply_cb, &c); /* takes @s */
	if (r < 0) {
		const char *why = mfs_replay_why(run->engine);

		return fail(run, r, "applying '%s' failed after LSN %" PRIu64 ": %s", path,
			    run->last, why ?: strerror(-r));
	}
	run->files++;
	/* records left unapplied are past an --until limit: no later file is needed */
	run->done = run->last == run->until_lsn || run->last < info.last_lsn;
	return 0;
}

int mfs_segrun_seg(struct mfs_segrun *run, struct mfs_replay_seg *s)
{
	struct apply_ctx c = { .run = run };
	const struct mfs_seg_info *info = mfs_replay_seg_info(s);
	int r;

	run->why[0] = 0;
	if (!run->have_uuid) {
		memcpy(run->uuid, info->uuid, 16);
		run->have_uuid = true;
	}
	run->started = true;
	run->bytes += MFS_SEG_HEADER_SIZE;
	r = mfs_replay_seg_apply(run->engine, s, run->last, apply_cb, &c); /* takes @s */
	if (r == 0)
		run->files++;
	return r;
}

/* ================================================================ stream mode */

struct stream_ctx {
	struct mfs_segrun *run;
	int stopped; /* the hook's value, or a failed record's error without a hook */
};

/* Apply @rec (stream mode): 0, MFS_SEGRUN_PAST_LIMITS or -errno. */
static int stream_apply(struct mfs_segrun *run, const struct mfs_rec *rec)
{
	if (!run->engine || mfs_rec_type_is_marker(rec->type))
		return 0;
	if (mfs_replay_is_past_limits(run->engine, rec))
		return MFS_SEGRUN_PAST_LIMITS;
	return mfs_replay_apply(run->engine, rec);
}

static int stream_cb(const struct mfs_rec *rec, void *arg)
{
	struct stream_ctx *c = arg;
	struct mfs_segrun *run = c->run;
	int e, r;

	if (rec->lsn <= run->last)
		return 0;
	e = stream_apply(run, rec);
	r = run->each ? run->each(run->each_arg, rec, e) : MFS_MIN(e, 0);
	if (r < 0) {
		c->stopped = r;
		return r;
	}
	run->bytes += mfs_rec_head_size(rec) + rec->data_len;
	if (run->progress)
		run->progress(run->progress_arg, run->bytes);
	run->last = rec->lsn;
	if (e == 0) {
		run->last_ns = rec->time_ns;
		run->records++;
	}
	return 0;
}

/* Stream mode: apply @fd's records as they are read, then judge its verdict. */
static int run_stream(struct mfs_segrun *run, int fd, const char *path, bool last_file)
{
	struct mfs_segr_opts o = { .expect_uuid = run->have_uuid ? run->uuid : NULL,
				   .keys = run->keys };
	struct stream_ctx c = { .run = run };
	uint64_t records = run->records;
	struct mfs_seg_info info;
	char verdict[256];
	int r;

	r = mfs_seg_scan_fd_opts(fd, &o, stream_cb, &c, &info);
	if (c.stopped && run->each)
		return c.stopped; /* the hook said why */
	if (c.stopped)
		return fail(run, c.stopped, "applying '%s' failed at LSN %" PRIu64 ": %s", path,
			    run->last + 1, mfs_replay_why(run->engine) ?: strerror(-c.stopped));
	if (r < 0)
		return fail(run, r, "cannot read segment '%s': %s", path, strerror(-r));
	if (info.verdict != MFS_SEG_OK && (!last_file || info.verdict != MFS_SEG_TORN)) {
		mfs_seg_verdict_format(&info, verdict, sizeof(verdict));
		return fail(run, -EBADMSG, "segment '%s' is damaged: %s", path, verdict);
	}
	if (!run->have_uuid && info.header_valid) {
		memcpy(run->uuid, info.uuid, 16);
		run->have_uuid = true;
	}
	run->started = true;
	if (run->records > records)
		run->files++;
	return 0;
}

int mfs_segrun_fd(struct mfs_segrun *run, int fd, const char *path, bool last_file)
{
	run->why[0] = 0;
	return run->stream ? run_stream(run, fd, path, last_file) : run_whole(run, fd, path, last_file);
}
