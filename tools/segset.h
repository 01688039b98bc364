/* SPDX-License-Identifier: MIT */
/*
 * segset.h - a run of segment files applied in LSN order with the replay
 * engine: what `mirrorctl replay` and `mirrorctl restore` share.
 *
 * Every file is validated in full before any of its records is applied.
 * All files must belong to one data set and follow each other without a
 * gap; a file holding only LSNs already applied is skipped; only the last
 * file may be an open (trailer-less) segment, applied up to its last valid
 * record. A closed segment name ("%020lu-%020lu.mfsj") must agree with the
 * LSNs the file holds.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mfs_replay;

struct cli_segrun {
	/* set by the caller, after cli_segrun_init() */
	bool check_start; /* the first file must hold LSN last + 1 (else it may start anywhere) */
	uint64_t until_lsn; /* stop after this LSN (UINT64_MAX: no limit) */
	uint64_t until_ns; /* stop before the first record later than this (UINT64_MAX: none) */
	bool have_uuid; /* every file must belong to data set @uuid (else: the first one's) */
	/* keys set on the engine (mfs_replay_set_keys): every file must be
	 * authenticated and continue the chain of the one before */
	bool auth;
	bool have_chain; /* chain_tag is the tag of LSN chain_lsn */
	uint64_t chain_lsn;
	uint8_t chain_tag[32];
	uint8_t uuid[16];
	/* called for each record read, with the segment bytes read so far; may be NULL */
	void (*progress)(void *arg, uint64_t bytes);
	void *progress_arg;

	/* results */
	uint64_t last; /* last LSN applied (or the one given to cli_segrun_init) */
	uint64_t last_ns; /* time of that record (0: none applied) */
	uint64_t records; /* records applied */
	uint64_t bytes; /* segment bytes read to apply them */
	bool done; /* an --until limit was reached: no later file is needed */

	/* private */
	struct mfs_replay *engine;
	bool started; /* a file was seen: later ones must follow it */
};

/*
 * Start a run applying into @engine (borrowed) the records after LSN
 * @after (the target already holds every LSN up to @after). No limits.
 */
void cli_segrun_init(struct cli_segrun *run, struct mfs_replay *engine, uint64_t after);

/*
 * Validate segment file @path, then apply its records after run->last and
 * within the limits. @last_file: it is the last of the run (it may be open).
 * Returns 0, or 1 after printing one error line (cli_fail): unreadable,
 * invalid, foreign or torn segment, a gap (naming the missing LSNs), a
 * record the engine refused.
 */
int cli_segrun_file(struct cli_segrun *run, const char *path, bool last_file);

/* An open segment whose tags stop verifying: its authenticated prefix may be applied. */
struct mfs_seg_info;
bool cli_auth_prefix_ok(const struct mfs_seg_info *info);

/*
 * Does segment @info continue the chain (tag @chain_tag at LSN @chain_lsn,
 * when @have_chain)? NULL if it does (or starts a chain: previous tag of
 * zeros), else why not, in @buf.
 */
const char *cli_chain_check(const struct mfs_seg_info *info, bool have_chain, uint64_t chain_lsn,
			    const uint8_t chain_tag[32], char *buf, size_t cap);

/* A closed segment found in a folder. */
struct cli_segfile {
	char *path; /* DIR/NAME, malloc'd */
	uint64_t first, last; /* LSN range, from the name */
	uint64_t size; /* bytes */
};

/*
 * List the closed segments of folder @dir (files named by mfs_seg_name();
 * everything else is ignored), sorted by LSN range. Returns 0 and a
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
