/* SPDX-License-Identifier: MIT */
/*
 * bkcommon.h - what `mirrorctl backup`, `restore --from` and `prune` share
 * about a destination s3://BUCKET/PREFIX/: the client, the LIST of its
 * backups, a manifest's download, and the rebuild of a backup's tree
 * (formats: mirrorfs/backup.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mirrorfs/backup.h"
#include "mirrorfs/s3.h"

struct cli_bk_dest {
	struct mfs_s3_opts opts;
	const char *url;
	char *bucket, *prefix;  /* prefix: "" or ending in '/' */
	char *bkprefix, *segprefix; /* PREFIX/backups/, PREFIX/segments/ */
	struct mfs_s3 *s3;
	struct mfs_s3_list keys; /* the last cli_bk_list(): every key under bkprefix */
	char *scratch;           /* a private folder, removed by cli_bk_dest_done() */
	bool no_scratch;         /* in: a plan only, no scratch folder */
};

/* Run @fn(@arg) on @n threads (at most 64; in this thread when none can
 * start) and wait for them all: workers that take their next download from
 * @arg until none is left. */
void cli_bk_workers(void *(*fn)(void *), void *arg, size_t n);

/* Parse d->url, make the client and (unless d->no_scratch) the scratch
 * folder. 0, or 1 after a message. */
int cli_bk_dest_open(struct cli_bk_dest *d);
void cli_bk_dest_done(struct cli_bk_dest *d);

/* A new scratch folder under $TMPDIR (or /var/tmp), malloc'd path in *@ret. 0 or 1 after a message. */
int cli_bk_scratch(char **ret);

/* The backups under PREFIX/backups/ (one LIST), sorted by ID, in *@ret
 * (malloc'd). 0, or 1 after a message. */
int cli_bk_list(struct cli_bk_dest *d, struct mfs_bk_info **ret, size_t *ret_n);

/* As cli_bk_list() from the keys already in d->keys (keys outside
 * PREFIX/backups/ are skipped): a LIST of all of PREFIX/ serves both the
 * backups and the segments. 0, or 1 after a message. */
int cli_bk_parse(struct cli_bk_dest *d, struct mfs_bk_info **ret, size_t *ret_n);

/* Download and decode the manifest of @b, checked against its ID. 0, or 1 after a message. */
int cli_bk_get_manifest(struct cli_bk_dest *d, const struct mfs_bk_info *b,
			struct mfs_bk_manifest *ret);

/*
 * Rebuild backup @v[@at] (its chain of parents first) as the folder @to
 * (missing; created), with @jobs parallel downloads: files, folders,
 * symlinks and hard links with their modes, times, extended attributes and
 * (as root) owners. *@ret_bytes: bytes downloaded. 0, or 1 after a message.
 */
int cli_bk_rebuild(struct cli_bk_dest *d, const struct mfs_bk_info *v, size_t n, size_t at,
		   const char *to, int jobs, uint64_t *ret_bytes);
