/* SPDX-License-Identifier: MIT */
/*
 * restore.h - the pieces of `mirrorctl restore`: time parsing
 * (timeparse.c), the progress line (progress.c), the copy of a snapshot's
 * tree (treecopy.c); restore.c puts them together with a run of segments.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* The attributes a snapshot's view carries (fs/snapview.c). */
#define SNAP_XATTR_PREFIX "user.mirrorfs."
#define SNAP_XATTR_LSN SNAP_XATTR_PREFIX "lsn"
#define SNAP_XATTR_DATASET SNAP_XATTR_PREFIX "dataset"

/* ---------------------------------------------------------------- timeparse.c */

/* All digits, within 64 bits: true and the value in *@ret. */
bool cli_parse_lsn(const char *s, uint64_t *ret);

/* An ISO 8601 time or "@SECONDS[.frac]": ns since the epoch. Returns 0 or -EINVAL. */
int cli_parse_time(const char *s, uint64_t *ret);

/* @ns since the epoch as "2026-03-01T09:59:00.123456789Z". */
void cli_iso_time(uint64_t ns, char *out, size_t cap);

/* ---------------------------------------------------------------- progress.c */

/* One line on a terminal, rewritten in place at most 4 times a second. */
struct cli_progress {
	bool on; /* stderr is a terminal */
	bool shown;
	const char *phase;
	uint64_t total; /* 0: unknown */
	uint64_t t0, last_ns;
};

/* A new phase (its name, and its total in bytes, 0: unknown) starts now. */
void cli_progress_phase(struct cli_progress *p, const char *phase, uint64_t total);

/* @done bytes of the phase are done: the line, when it is due. */
void cli_progress_set(struct cli_progress *p, uint64_t done);

/* cli_progress_set() as a callback (struct mfs_segrun's progress). */
void cli_progress_cb(void *arg, uint64_t bytes);

/* Clear the line, if one was shown. */
void cli_progress_end(struct cli_progress *p);

/* ---------------------------------------------------------------- treecopy.c */

/*
 * Open @name of @dirfd in the snapshot for reading, without changing its
 * access time (O_NOATIME needs ownership or CAP_FOWNER; else without).
 * Returns the fd or -errno.
 */
int cli_open_src(int dirfd, const char *name, int flags);

/*
 * Entry names of directory @fd without "." and ".." (at the @top of a
 * snapshot also without mirrorfs's own .mirrorfs folder). Returns 0 or
 * -errno; free the names with cli_free_names().
 */
int cli_list_names(int fd, bool top, char ***ret, size_t *ret_n);
void cli_free_names(char **names, size_t n);

/* Bytes in the regular files under @fd, for the progress line (errors: what was counted). */
uint64_t cli_count_bytes(int fd, bool top);

/*
 * Copy the snapshot @src (open at @snapfd, @snap_st) into the empty folder
 * @to (@rootfd): regular files, directories, symlinks, fifos and sockets
 * with permissions, owners (as root), times, extended attributes (but the
 * snapshot's own at the top) and hard links. *@ret_bytes: the bytes
 * copied. Returns 0, or 1 after a message.
 */
int cli_copy_tree(const char *src, int snapfd, const struct stat *snap_st, const char *to,
		  int rootfd, struct cli_progress *prog, uint64_t *ret_bytes);
