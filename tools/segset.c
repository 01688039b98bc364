/* SPDX-License-Identifier: MIT */
/*
 * segset.c - a run of segment files applied in LSN order with the replay
 * engine, shared by `mirrorctl replay` and `mirrorctl restore`.
 *
 * Each file is read twice: a full validation first (nothing of an invalid
 * segment is ever applied), then a streaming scan that applies each record
 * after run->last, so that an --until limit can stop before a record. The
 * run keeps the invariant that the target holds every LSN up to run->last
 * and nothing after it; a file that does not start at or before
 * run->last + 1 is a gap.
 */
#include "segset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mirrorfs/format.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

/* ================================================================ applying */

struct apply_ctx {
	struct cli_segrun *run;
	int error;
	uint64_t error_lsn;
};

static bool past_until(const struct cli_segrun *run, const struct mfs_rec *rec)
{
	return rec->lsn > run->until_lsn || rec->time_ns > run->until_ns;
}

static int apply_cb(const struct mfs_rec *rec, void *arg)
{
	struct apply_ctx *c = arg;
	struct cli_segrun *run = c->run;
	int r;

	run->bytes += mfs_rec_head_size(rec) + rec->data_len;
	if (run->progress)
		run->progress(run->progress_arg, run->bytes);
	if (rec->lsn <= run->last)
		return 0;
	if (past_until(run, rec)) {
		run->done = true;
		return 1;
	}
	r = mfs_replay_apply(run->engine, rec);
	if (r < 0) {
		c->error = r;
		c->error_lsn = rec->lsn;
		return 1;
	}
	run->last = rec->lsn;
	run->records++;
	if (run->last == run->until_lsn) {
		run->done = true;
		return 1;
	}
	return 0;
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

/* Full validation of segment @fd: 0, or 1 after a message. Sets run->uuid. */
static int validate(struct cli_segrun *run, int fd, const char *path, bool last_file,
		    struct mfs_seg_info *info)
{
	char verdict[256];
	int r;

	r = mfs_seg_scan_fd(fd, run->have_uuid ? run->uuid : NULL, NULL, NULL, info);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read '%s': %m", path);
	}
	mfs_seg_verdict_format(info, verdict, sizeof(verdict));
	if (info->verdict != MFS_SEG_OK &&
	    !(info->verdict == MFS_SEG_TORN && last_file && info->header_valid))
		return cli_fail("refusing '%s': %s", path, verdict);
	if (!name_agrees(path, info))
		return cli_fail("refusing '%s': its name does not match the LSNs it holds (%" PRIu64
				"..%" PRIu64 ")",
				path, info->first_lsn, info->last_lsn);
	if (info->verdict == MFS_SEG_TORN)
		cli_warn("'%s': %s; applying up to LSN %" PRIu64, path, verdict, info->last_lsn);
	if (!run->have_uuid) {
		memcpy(run->uuid, info->uuid, 16);
		run->have_uuid = true;
	}
	return 0;
}

void cli_segrun_init(struct cli_segrun *run, struct mfs_replay *engine, uint64_t after)
{
	*run = (struct cli_segrun){
		.until_lsn = UINT64_MAX,
		.until_ns = UINT64_MAX,
		.last = after,
		.engine = engine,
	};
}

int cli_segrun_file(struct cli_segrun *run, const char *path, bool last_file)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct apply_ctx c = {.run = run};
	struct mfs_seg_info info;
	int r;

	if (fd < 0)
		return cli_fail("cannot open '%s': %m", path);
	if (validate(run, fd, path, last_file, &info))
		return 1;
	if ((run->started || run->check_start) && info.first_lsn > run->last + 1)
		return cli_fail("gap before '%s': LSN %" PRIu64 "..%" PRIu64 " missing", path,
				run->last + 1, info.first_lsn - 1);
	run->started = true;
	if (info.last_lsn <= run->last)
		return 0; /* nothing new in it */
	run->bytes += MFS_SEG_HEADER_SIZE;
	r = mfs_seg_scan_fd(fd, run->uuid, apply_cb, &c, &info);
	if (c.error) {
		errno = -c.error;
		return cli_fail("applying LSN %" PRIu64 " of '%s' failed: %m", c.error_lsn, path);
	}
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read '%s': %m", path);
	}
	if (!run->done && info.verdict != MFS_SEG_OK && !last_file)
		return cli_fail("'%s' changed while it was applied", path);
	return 0;
}

/* ================================================================ listing */

static int segfile_cmp(const void *a, const void *b)
{
	const struct cli_segfile *x = a, *y = b;

	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	return x->last < y->last ? -1 : x->last > y->last;
}

struct cli_segfile *cli_segfiles_free(struct cli_segfile *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].path);
	free(v);
	return NULL;
}

/* Append @name of @d to *v. Returns 0 or -errno. */
static int segfile_add(DIR *d, const char *dir, const char *name, struct cli_segfile **v, size_t *n,
		       size_t *cap)
{
	struct cli_segfile e = {0};
	struct stat st;

	if (!mfs_seg_name_parse(name, &e.first, &e.last))
		return 0;
	if (fstatat(dirfd(d), name, &st, 0) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	if (*n == *cap) {
		size_t ncap = *cap ? 2 * *cap : 32;
		struct cli_segfile *nv = realloc(*v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	e.size = (uint64_t)st.st_size;
	if (asprintf(&e.path, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	(*v)[(*n)++] = e;
	return 0;
}

int cli_segdir_list(const char *dir, struct cli_segfile **ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct cli_segfile *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;

	if (!d)
		return -errno;
	while (r == 0) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			r = -errno;
			break;
		}
		r = segfile_add(d, dir, de->d_name, &v, &n, &cap);
	}
	if (r < 0) {
		cli_segfiles_free(v, n);
		return r;
	}
	if (n)
		qsort(v, n, sizeof(*v), segfile_cmp);
	*ret = v;
	*ret_n = n;
	return 0;
}

bool cli_segfiles_contiguous(const struct cli_segfile *v, size_t n, uint64_t after, uint64_t until,
			     uint64_t *ret_from, uint64_t *ret_to)
{
	uint64_t next = after + 1;

	for (size_t i = 0; i < n && next <= until; i++) {
		if (v[i].last < next)
			continue;
		if (v[i].first > next) {
			*ret_from = next;
			*ret_to = v[i].first - 1;
			return false;
		}
		next = v[i].last + 1;
	}
	return true;
}
