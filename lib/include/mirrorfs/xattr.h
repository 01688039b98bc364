/* SPDX-License-Identifier: MIT */
/*
 * xattr.h - extended attributes of a file as one blob (a snapshot's
 * cow/INO.xattr, docs/journal-format.md), and the one xattr copier.
 *
 * One error policy for both: a file system without extended attributes
 * (ENOTSUP) has none; an attribute removed between the listing and its
 * read (ENODATA) is skipped; any other error is returned, and the caller
 * decides whether it matters.
 */
#pragma once

#include <stddef.h>

/*
 * The extended attributes of @fd as a blob: per attribute u32 name length,
 * u32 value length, name, value (little endian). Returns 0 with a malloc'd
 * blob in *@ret (NULL when there is none) and its length in *@ret_len, or
 * -errno.
 */
int mfs_xattr_blob(int fd, char **ret, size_t *ret_len);

/*
 * Iterate blob @blob of @len bytes from *@pos: the next attribute's name
 * (@name, *@nl bytes, not NUL-terminated) and value. Returns 1, 0 at the
 * end, or -EBADMSG for a malformed blob.
 */
int mfs_xattr_blob_next(const char *blob, size_t len, size_t *pos, const char **name, size_t *nl,
			const char **val, size_t *vl);

/*
 * Copy the extended attributes of @in onto @out, but those whose name
 * starts with @skip_prefix (NULL: none skipped). Returns 0 or the first
 * -errno (the rest is still copied).
 */
int mfs_xattr_copy(int in, int out, const char *skip_prefix);
