/* SPDX-License-Identifier: MIT */
/*
 * replay.c - `mirrorctl replay --to DIR [--after LSN] [--until LSN]
 * SEGMENT...`: apply closed segments (and at most one open one, last) in
 * LSN order into DIR with the replay engine. Every segment is validated in
 * full before any of its records is applied; all must belong to one data
 * set and follow each other without a gap (segset.c); with --after, the
 * first must hold LSN after + 1 or earlier.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/replay.h"
#include "segset.h"
#include "mirrorfs/auth.h"

int cli_replay(int argc, char **argv)
{
	struct mfs_segrun run;
	struct mfs_replay *engine = NULL;
	_cleanup_close_ int root = -EBADF;
	const char *to = NULL;
	uint64_t after = 0, until = UINT64_MAX;
	bool have_after = false;
	struct mfs_keyring keys = { 0 };
	int i = 1, r, ret = 0, k;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--to") && i + 1 < argc) {
			to = argv[++i];
		} else if (!strcmp(argv[i], "--after") && i + 1 < argc) {
			after = strtoull(argv[++i], NULL, 10);
			have_after = true;
		} else if (!strcmp(argv[i], "--until") && i + 1 < argc) {
			until = strtoull(argv[++i], NULL, 10);
		} else if ((k = cli_key_opt(&keys, argc, argv, &i)) < 0) {
			return 1;
		} else if (!k) {
			break;
		}
	}
	if (!to || i >= argc) {
		fprintf(stderr,
			"usage: mirrorctl replay --to DIR [--after LSN] [--until LSN] "
			"[--auth-key FILE]... [--encrypt-key FILE]... SEGMENT...\n");
		return 2;
	}
	if (cli_probe_data_tree(to)) /* a data folder some program writes */
		return 1;
	root = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return cli_fail("cannot open '%s': %m", to);
	r = mfs_replay_new(root, 0, &engine);
	if (r < 0) {
		errno = -r;
		return cli_fail("cannot start the replay engine on '%s': %m", to);
	}
	mfs_replay_set_keys(engine, &keys);
	cli_segrun_init(&run, engine, after);
	run.auth = keys.n > 0;
	run.check_start = have_after;
	run.until_lsn = until;
	for (; i < argc && !ret && !run.done; i++)
		ret = cli_segrun_file(&run, argv[i], i == argc - 1);
	r = mfs_replay_finish(engine);
	mfs_replay_free(engine);
	if (!ret && r < 0) {
		errno = -r;
		ret = cli_fail("flushing '%s' failed: %m", to);
	}
	if (!ret)
		printf("applied up to LSN %" PRIu64 "\n", run.last);
	return ret;
}
