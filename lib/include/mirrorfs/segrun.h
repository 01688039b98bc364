/* SPDX-License-Identifier: MIT */
/*
 * segrun.h - a run of segment files applied in LSN order with the replay
 * engine after a given LSN: what `mirrorctl replay`, `mirrorctl restore`,
 * `mirrorctl promote`, mirrord and crash recovery on mount share.
 *
 * Whole-file mode (the default): every file is validated in full before
 * any of its records is applied.
 * All files must belong to one data set and follow each other without a
 * gap; a file holding only LSNs already applied is skipped; only the last
 * file may be an open (trailer-less) segment, applied up to its last valid
 * record. A closed segment name ("%020lu-%020lu.mfsj") must agree with the
 * LSNs the file holds.
 *
 * Stream mode (run->stream) is for callers that must not refuse a segment
 * for one bad record: crash recovery, which replays the primary's own
 * journal onto its own backing folder, and mirrord's naive mode. Each
 * record is applied as the file is read (mfs_replay_apply), with no
 * whole-file check or preflight; what happened to it goes to run->each,
 * which decides whether the run goes on. The verdict is checked after the
 * file was read.
 *
 * mirrord, which loads segments ahead on threads of its own and judges
 * them with its own quarantine, hands each loaded segment over with
 * mfs_segrun_seg().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mfs_keyring;
struct mfs_rec;
struct mfs_replay;
struct mfs_replay_seg;
struct mfs_seg_info;

/* Stream mode: @e given to run->each for a record not applied because it
 * lies past the file system's limits (mfs_replay_is_past_limits). */
#define MFS_SEGRUN_PAST_LIMITS 1

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
	/*
	 * Stream mode (see above): records are applied one by one as the file
	 * is read, into run->engine, or into nothing when it is NULL (a read
	 * pass: every record goes to @each with @e 0). The limits, gaps between
	 * files, names and run->auth are not checked; @keys are the reader's
	 * (may be NULL). A torn file is accepted only as the last one.
	 */
	bool stream;
	const struct mfs_keyring *keys;
	/*
	 * Called for each record after run->last once it was handled (may be
	 * NULL). Returns 0 to go on, or a negative value that stops the run
	 * and is returned (run->why is left empty: the hook tells). Whole-file
	 * mode: after each record applied, @e 0 (a record the preflight marked
	 * as the primary's compensated failure included). Stream mode: @e is
	 * 0 (applied; a marker needs nothing), MFS_SEGRUN_PAST_LIMITS (not
	 * applied), or the -errno applying it failed with (mfs_replay_why()
	 * says why); without a hook a failed record stops the run.
	 */
	int (*each)(void *arg, const struct mfs_rec *rec, int e);
	void *each_arg;

	/* results */
	uint64_t last; /* last LSN applied, or in stream mode handled (or the one given to
			* mfs_segrun_init) */
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

/*
 * Like mfs_segrun_file() for segment file @fd (borrowed), opened by the
 * caller; @path names it in run->why. In stream mode the errors are
 * -EBADMSG for a damaged segment ("segment 'PATH' is damaged: VERDICT"),
 * the hook's value, or -errno when it cannot be read.
 */
int mfs_segrun_fd(struct mfs_segrun *run, int fd, const char *path, bool last_file);

/*
 * Apply loaded segment @s (mfs_replay_seg_load; taken over in every case),
 * which the caller validated and preflighted itself (mirrord, whose
 * prefetch threads load segments ahead and which judges them with its own
 * quarantine): its records after run->last, each then given to run->each.
 * No limits, gaps or chain are checked. Returns 0, the hook's value, or
 * the -errno of the record that failed (mfs_replay_why() says why).
 */
int mfs_segrun_seg(struct mfs_segrun *run, struct mfs_replay_seg *s);

/* An open segment whose tags stop verifying: its authenticated prefix may be applied. */
bool mfs_seg_auth_prefix_ok(const struct mfs_seg_info *info);

/*
 * Does segment @info continue the chain (tag @chain_tag at LSN @chain_lsn,
 * when @have_chain)? NULL if it does (or starts a chain: previous tag of
 * zeros), else why not, in @buf.
 */
const char *mfs_seg_chain_check(const struct mfs_seg_info *info, bool have_chain,
				uint64_t chain_lsn, const uint8_t chain_tag[32], char *buf, size_t cap);
