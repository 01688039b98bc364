/* SPDX-License-Identifier: MIT */
/*
 * replay.c - `mirrorctl replay --to DIR [--after LSN] [--until LSN]
 * SEGMENT...`: apply closed segments (and at most one open one, last) in
 * LSN order into DIR with the replay engine. Every segment is validated in
 * full before any of its records is applied; all must belong to one data
 * set and follow each other without a gap.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"

struct replay_arg {
	struct mfs_replay *engine;
	uint64_t after, until, last;
	int error;
	uint64_t error_lsn;
};

static int apply_one(const struct mfs_rec *rec, void *arg)
{
	struct replay_arg *a = arg;
	int r;

	if (rec->lsn <= a->after)
		return 0;
	if (rec->lsn > a->until)
		return 1; /* stop */
	r = mfs_replay_apply(a->engine, rec);
	if (r < 0) {
		a->error = r;
		a->error_lsn = rec->lsn;
		return 1;
	}
	a->last = rec->lsn;
	return 0;
}

static int replay_file(const char *path, bool last_file, uint8_t uuid[16], bool *have_uuid,
		       struct replay_arg *a)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct mfs_seg_info info;
	char verdict[256];
	int r;

	if (fd < 0)
		return cli_fail("cannot open '%s': %m", path);
	r = mfs_seg_scan_fd(fd, *have_uuid ? uuid : NULL, NULL, NULL, &info);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot read '%s': %m", path);
	}
	mfs_seg_verdict_format(&info, verdict, sizeof(verdict));
	if (info.verdict != MFS_SEG_OK && !(info.verdict == MFS_SEG_TORN && last_file &&
					    info.header_valid))
		return cli_fail("refusing '%s': %s", path, verdict);
	if (info.verdict == MFS_SEG_TORN)
		fprintf(stderr, "mirrorctl: '%s': %s; applying up to LSN %" PRIu64 "\n", path,
			verdict, info.last_lsn);
	if (!*have_uuid) {
		memcpy(uuid, info.uuid, 16);
		*have_uuid = true;
	}
	if (a->last && info.first_lsn > a->last + 1 && info.first_lsn > a->after + 1)
		return cli_fail("gap before '%s': LSN %" PRIu64 "..%" PRIu64 " missing", path,
				a->last + 1, info.first_lsn - 1);
	r = mfs_seg_scan_fd(fd, uuid, apply_one, a, &info);
	if (r < 0 && !a->error) {
		errno = -r;
		return cli_fail("cannot read '%s': %m", path);
	}
	if (a->error) {
		errno = -a->error;
		return cli_fail("applying LSN %" PRIu64 " of '%s' failed: %m", a->error_lsn, path);
	}
	return 0;
}

int cli_replay(int argc, char **argv)
{
	struct replay_arg a = { .until = UINT64_MAX };
	_cleanup_close_ int root = -EBADF;
	const char *to = NULL;
	uint8_t uuid[16];
	bool have_uuid = false;
	int i = 1, r, ret = 0;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to = argv[++i];
		else if (!strcmp(argv[i], "--after") && i + 1 < argc)
			a.after = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--until") && i + 1 < argc)
			a.until = strtoull(argv[++i], NULL, 10);
		else
			break;
	}
	if (!to || i >= argc) {
		fprintf(stderr, "usage: mirrorctl replay --to DIR [--after LSN] [--until LSN] SEGMENT...\n");
		return 2;
	}
	root = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return cli_fail("cannot open '%s': %m", to);
	r = mfs_replay_new(root, 0, &a.engine);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot start the replay engine: %m");
	}
	for (; i < argc && !ret; i++)
		ret = replay_file(argv[i], i == argc - 1, uuid, &have_uuid, &a);
	r = mfs_replay_finish(a.engine);
	mfs_replay_free(a.engine);
	if (!ret && r < 0) {
		errno = -r;
		ret = cli_fail("flushing '%s' failed: %m", to);
	}
	if (!ret)
		printf("applied up to LSN %" PRIu64 "\n", a.last);
	return ret;
}
