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

/* One extended attribute of a blob; name is not NUL-terminated. */
struct mfs_xattr_ent {
	const char *name, *value;
	size_t name_len, value_len;
};

/* Append attribute @name (1-255 bytes) = @value to the blob *@blob of
 * *@len bytes (realloc'd). Returns 0, -EINVAL (bad name) or -ENOMEM. */
int mfs_xattr_blob_add(char **blob, size_t *len, const char *name, const void *value,
		       size_t value_len);

/*
 * Iterate blob @blob of @len bytes from *@pos: the next attribute into
 * *@ret. Returns 1, 0 at the end, or -EBADMSG for a malformed blob
 * (truncated, a name of 0 or over 255 bytes).
 */
int mfs_xattr_blob_next(const char *blob, size_t len, size_t *pos, struct mfs_xattr_ent *ret);

/*
 * Copy the extended attributes of @in onto @out, but those whose name
 * starts with @skip_prefix (NULL: none skipped). Returns 0 or the first
 * -errno (the rest is still copied).
 */
int mfs_xattr_copy(int in, int out, const char *skip_prefix);
