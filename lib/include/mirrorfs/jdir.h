/* SPDX-License-Identifier: MIT */
/*
 * jdir.h - the journal folder of a data set (DATADIR/.mirrorfs, or
 * mirrorfs -o journal_dir=DIR) and the files in it: one reader and one
 * writer of each, for mirrorfs, `mirrorctl promote` and `mirrorctl rejoin`.
 * Formats: docs/journal-format.md, "The journal folder".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mirrorfs/format.h"

/* Names inside the journal folder. */
#define MFS_JDIR_LOCK "lock"         /* lib/pidlock.c: one mirrorfs per journal */
#define MFS_JDIR_STATE "state"       /* struct mfs_jstate */
#define MFS_JDIR_PROMOTED "promoted" /* struct mfs_jpromoted (DATADIR/.mirrorfs only) */
#define MFS_JDIR_OPEN "open"         /* the open segment(s), open-SEQ.mfsj */
#define MFS_JDIR_CLOSED "journal"    /* closed segments, FIRST-LAST.mfsj */
#define MFS_JDIR_OPEN_PREFIX "open-"

/* The state file: what a mount continues from. */
struct mfs_jstate {
	uint8_t data_set[16];
	uint64_t checkpoint; /* the backing files are durable up to this LSN */
	uint64_t last;       /* the last LSN known when the file was written */
	uint64_t segment;    /* the open segment's sequence number then */
	/* written by `mirrorctl promote` when everything up to its final LSN was
	 * authenticated: the chain value (tag) at chain_lsn, which the new
	 * primary's first segment carries as its previous tag */
	bool have_chain;
	uint64_t chain_lsn;
	uint8_t chain_tag[32];
};

/*
 * Read the state file of journal folder @jdirfd into *@ret. The file is
 * hostile input: "KEY=VALUE\n" lines only, numbers plain decimal within 64
 * bits, no key twice, dataset required (the others default to 0); unknown
 * keys on well-formed lines are skipped. Returns 0, -ENOENT when there is
 * no state file, -EBADMSG when it is malformed, or -errno. *@ret is set
 * only on success.
 */
int mfs_jstate_read(int jdirfd, struct mfs_jstate *ret);

/* Replace the state file of @jdirfd with @st durably (mfs_replace_file). Returns 0 or -errno. */
int mfs_jstate_write(int jdirfd, const struct mfs_jstate *st);

/* The promoted file: this data folder became a primary by `mirrorctl promote`. */
struct mfs_jpromoted {
	uint8_t data_set[16];
	uint64_t promoted_lsn; /* the last LSN applied before the promotion */
	uint64_t time_ns;      /* CLOCK_REALTIME of the promotion */
};

/*
 * Read the promoted file of @jdirfd (same rules as mfs_jstate_read; dataset
 * and time_ns are required). Returns 0, -ENOENT, -EBADMSG or -errno.
 */
int mfs_jpromoted_read(int jdirfd, struct mfs_jpromoted *ret);

/* Replace the promoted file of @jdirfd with @p durably. Returns 0 or -errno. */
int mfs_jpromoted_write(int jdirfd, const struct mfs_jpromoted *p);

/*
 * Open (with @create: first create, mode 0700) the journal folder @path.
 * *@ret_made: it was created (its parent folder is then fsynced). Returns
 * the folder's fd or -errno.
 */
int mfs_jdir_open(const char *path, bool create, bool *ret_made);

/*
 * Open subfolder @sub (MFS_JDIR_OPEN or MFS_JDIR_CLOSED) of @jdirfd, with
 * @create first creating it (mode 0700; *@ret_made then says so, and the
 * caller fsyncs @jdirfd). Returns the fd or -errno (-ENOENT: not there).
 */
int mfs_jdir_open_sub(int jdirfd, const char *sub, bool create, bool *ret_made);

/* Is @name an open segment's name (open-SEQ.mfsj)? */
bool mfs_jdir_is_open_name(const char *name);

/* The open segment's name for sequence number @seg_no. */
void mfs_jdir_open_name(uint64_t seg_no, char out[64]);

/* A closed segment found in a folder, by its name. */
struct mfs_segent {
	uint64_t first, last; /* LSN range, from the name */
	char name[MFS_SEG_NAME_LEN + 1];
};

/*
 * List the closed segments of folder @dirfd (names made by mfs_seg_name();
 * everything else is ignored), sorted by LSN range, which is apply order.
 * @dirfd and its offset are left alone. Returns 0 with a malloc'd array in
 * *@ret (free() it; NULL when empty) and its length in *@ret_n, or -errno.
 */
int mfs_segdir_list(int dirfd, struct mfs_segent **ret, size_t *ret_n);
