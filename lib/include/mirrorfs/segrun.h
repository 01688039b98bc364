/* SPDX-License-Identifier: MIT */
/*
 * segrun.h - a run of segment files applied in LSN order with the replay
 * engine after a given LSN: what `mirrorctl replay`, `mirrorctl restore`
 * and `mirrorctl promote` share.
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
struct mfs_seg_info;

struct mfs_segrun {
	/* set by the caller, after mfs_segrun_init() */
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
	/* called with a remark worth telling (a torn or partly authenticated
	 * segment applied in part), one line; may be NULL */
	void (*warn)(void *arg, const char *line);
	void *warn_arg;

	/* results */
	uint64_t last; /* last LSN applied (or the one given to mfs_segrun_init) */
	uint64_t last_ns; /* time of that record (0: none applied) */
	uint64_t records; /* records applied */
	uint64_t bytes; /* segment bytes read to apply them */
	uint64_t files; /* files that had records applied */
	bool done; /* an --until limit was reached: no later file is needed */
	char why[1024]; /* after a failure: what failed and why, one line */

	/* private */
	struct mfs_replay *engine;
	bool started; /* a file was seen: later ones must follow it */
};

/*
 * Start a run applying into @engine (borrowed) the records after LSN
 * @after (the target already holds every LSN up to @after). No limits.
 */
void mfs_segrun_init(struct mfs_segrun *run, struct mfs_replay *engine, uint64_t after);

/*
 * Validate segment file @path, then apply its records after run->last and
 * within the limits. @last_file: it is the last of the run (it may be open).
 * Returns 0, or -errno with run->why saying what and why: -EBADMSG for an
 * invalid, foreign, torn or unauthenticated segment, a gap (naming the
 * missing LSNs) or a record the engine refused; -EINVAL for a path that is
 * not a regular file; the engine's error for a failure while applying;
 * another -errno when it cannot be opened or read.
 */
int mfs_segrun_file(struct mfs_segrun *run, const char *path, bool last_file);

/* An open segment whose tags stop verifying: its authenticated prefix may be applied. */
bool mfs_seg_auth_prefix_ok(const struct mfs_seg_info *info);

/*
 * Does segment @info continue the chain (tag @chain_tag at LSN @chain_lsn,
 * when @have_chain)? NULL if it does (or starts a chain: previous tag of
 * zeros), else why not, in @buf.
 */
const char *mfs_seg_chain_check(const struct mfs_seg_info *info, bool have_chain,
				uint64_t chain_lsn, const uint8_t chain_tag[32], char *buf, size_t cap);
