/* SPDX-License-Identifier: MIT */
/*
 * segset.h - the CLI's side of a run of segments (lib/segrun.c): its
 * failures and remarks printed, and the closed segments of a folder with
 * their paths and sizes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mirrorfs/segrun.h"

struct mfs_replay;

/* mfs_segrun_init(), remarks printed with cli_warn(). */
void cli_segrun_init(struct mfs_segrun *run, struct mfs_replay *engine, uint64_t after);

/* mfs_segrun_file(): returns 0, or 1 after printing run->why (cli_fail). */
int cli_segrun_file(struct mfs_segrun *run, const char *path, bool last_file);

/* A closed segment found in a folder. */
struct cli_segfile {
	char *path; /* DIR/NAME, malloc'd */
	uint64_t first, last; /* LSN range, from the name */
	uint64_t size; /* bytes */
};

/*
 * List the closed segments of folder @dir (mfs_segdir_list(): files named
 * by mfs_seg_name(), everything else is ignored; only regular files),
 * sorted by LSN range. Returns 0 and a
 * malloc'd array in *ret (free with cli_segfiles_free()) and its length in
 * *ret_n, or -errno.
 */
int cli_segdir_list(const char *dir, struct cli_segfile **ret, size_t *ret_n);

struct cli_segfile *cli_segfiles_free(struct cli_segfile *v, size_t n);

/*
 * Check by their names that segments @v (sorted) hold every LSN from
 * @after + 1 on without a gap, up to their end or @until. Returns true, or
 * false and the first missing range in *ret_from..*ret_to.
 */
bool cli_segfiles_contiguous(const struct cli_segfile *v, size_t n, uint64_t after, uint64_t until,
			     uint64_t *ret_from, uint64_t *ret_to);
