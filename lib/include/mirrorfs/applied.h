/* SPDX-License-Identifier: MIT */
/*
 * applied.h - a mirror's applied state: the file STATE/applied that
 * mirrord, `mirrorctl promote` and `mirrorctl rejoin` read and write.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Name of the file in the state folder. */
#define MFS_APPLIED_FILE "applied"

struct mfs_applied {
	uint8_t data_set[16];      /* valid when have_data_set */
	bool have_data_set;        /* false: "data_set -", no segment applied yet */
	uint64_t applied_lsn;      /* highest LSN applied (and flushed) */
	uint64_t last_record_ns;   /* time of the last applied record */
	uint64_t segments_applied; /* segments applied so far */
	bool have_chain;           /* authenticated: the chain value at chain_lsn */
	uint64_t chain_lsn;
	uint8_t chain_tag[32];
};

/*
 * Read STATE/applied from the folder @dirfd into *@ret. The file is hostile
 * input: anything but the exact format (see applied.c) is refused, the
 * reason logged at debug level. Returns 0, -ENOENT when there is no such
 * file, -EBADMSG when it is malformed (too large, truncated, an overlong or
 * bad line, a number that does not fit in 64 bits, a key given twice,
 * data_set or applied_lsn missing), or -errno. *@ret is set only on success.
 */
int mfs_applied_read(int dirfd, struct mfs_applied *ret);

/*
 * Replace STATE/applied in @dirfd with @a durably (mfs_replace_file: temp
 * file, fsync, rename, fsync of the folder). Returns 0 or -errno.
 */
int mfs_applied_write(int dirfd, const struct mfs_applied *a);
