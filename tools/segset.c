/* SPDX-License-Identifier: MIT */
/*
 * segset.c - the CLI's side of a run of segments (lib/segrun.c) and the
 * listing of a folder's closed segments with their paths and sizes, for
 * `mirrorctl replay`, `restore` and `promote`.
 */
#include "segset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mirrorfs/jdir.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

/* ================================================================ applying */

static void warn_cb(void *arg, const char *line)
{
	cli_warn("%s", line);
}

void cli_segrun_init(struct mfs_segrun *run, struct mfs_replay *engine, uint64_t after)
{
	mfs_segrun_init(run, engine, after);
	run->warn = warn_cb;
}

int cli_segrun_file(struct mfs_segrun *run, const char *path, bool last_file)
{
	return mfs_segrun_file(run, path, last_file) < 0 ? cli_fail("%s", run->why) : 0;
}

/* ================================================================ listing */

struct cli_segfile *cli_segfiles_free(struct cli_segfile *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].path);
	free(v);
	return NULL;
}

int cli_segdir_list(const char *dir, struct cli_segfile **ret, size_t *ret_n)
{
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ struct mfs_segent *segs = NULL;
	struct cli_segfile *v;
	size_t n_segs, n = 0;
	int r;

	if (dfd < 0)
		return -errno;
	r = mfs_segdir_list(dfd, &segs, &n_segs);
	if (r < 0)
		return r;
	v = calloc(n_segs ? n_segs : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n_segs; i++) {
		struct stat st;

		if (fstatat(dfd, segs[i].name, &st, 0) < 0) {
			r = -errno;
			cli_segfiles_free(v, n);
			return r;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		v[n] = (struct cli_segfile){ .first = segs[i].first, .last = segs[i].last,
					     .size = (uint64_t)st.st_size };
		if (asprintf(&v[n].path, "%s/%s", dir, segs[i].name) < 0) {
			cli_segfiles_free(v, n);
			return -ENOMEM;
		}
		n++;
	}
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
