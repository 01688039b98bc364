/* SPDX-License-Identifier: MIT */
/*
 * xattr.c - extended attributes as one blob, and copied from file to file,
 * with one error policy (see xattr.h).
 */
#include "mirrorfs/xattr.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

/* The names of @fd's attributes ("a\0b\0"), malloc'd; *@ret NULL when none. Returns 0 or -errno. */
static int list_names(int fd, char **ret, size_t *ret_len)
{
	for (int tries = 0; tries < 4; tries++) {
		ssize_t n = flistxattr(fd, NULL, 0);
		char *names;

		*ret = NULL;
		*ret_len = 0;
		if (n < 0)
			return errno == ENOTSUP ? 0 : -errno;
		if (n == 0)
			return 0;
		names = malloc((size_t)n);
		if (!names)
			return -ENOMEM;
		n = flistxattr(fd, names, (size_t)n);
		if (n >= 0) {
			*ret = names;
			*ret_len = (size_t)n;
			return 0;
		}
		free(names);
		if (errno != ERANGE) /* ERANGE: one was added meanwhile */
			return -errno;
	}
	return -ERANGE;
}

/* Append attribute @name of @fd to the blob. Returns 0 (also when it is gone) or -errno. */
static int blob_add(int fd, const char *name, char **blob, size_t *len)
{
	size_t nl = strlen(name);

	for (int tries = 0; tries < 4; tries++) {
		ssize_t v = fgetxattr(fd, name, NULL, 0);
		char *nb;

		if (v < 0)
			return errno == ENODATA ? 0 : -errno;
		nb = realloc(*blob, *len + 8 + nl + (size_t)v);
		if (!nb)
			return -ENOMEM;
		*blob = nb;
		v = fgetxattr(fd, name, nb + *len + 8 + nl, (size_t)v);
		if (v < 0 && errno == ERANGE) /* it grew meanwhile */
			continue;
		if (v < 0)
			return errno == ENODATA ? 0 : -errno;
		mfs_put_le32(nb + *len, (uint32_t)nl);
		mfs_put_le32(nb + *len + 4, (uint32_t)v);
		memcpy(nb + *len + 8, name, nl);
		*len += 8 + nl + (size_t)v;
		return 0;
	}
	return -ERANGE;
}

int mfs_xattr_blob(int fd, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *names = NULL;
	char *blob = NULL;
	size_t n, len = 0;
	int r;

	r = list_names(fd, &names, &n);
	if (r < 0)
		return r;
	for (char *nm = names; nm && nm < names + n && r == 0; nm += strlen(nm) + 1)
		r = blob_add(fd, nm, &blob, &len);
	if (r < 0) {
		free(blob);
		return r;
	}
	*ret = blob;
	*ret_len = len;
	return 0;
}

int mfs_xattr_blob_add(char **blob, size_t *len, const char *name, const void *value,
		       size_t value_len)
{
	size_t nl = strlen(name);
	char *nb;

	if (nl == 0 || nl > 255 || value_len > UINT32_MAX)
		return -EINVAL;
	nb = realloc(*blob, *len + 8 + nl + value_len);
	if (!nb)
		return -ENOMEM;
	mfs_put_le32(nb + *len, (uint32_t)nl);
	mfs_put_le32(nb + *len + 4, (uint32_t)value_len);
	memcpy(nb + *len + 8, name, nl);
	if (value_len)
		memcpy(nb + *len + 8 + nl, value, value_len);
	*blob = nb;
	*len += 8 + nl + value_len;
	return 0;
}

int mfs_xattr_blob_next(const char *blob, size_t len, size_t *pos, struct mfs_xattr_ent *ret)
{
	size_t nl, vl;

	if (*pos >= len)
		return 0;
	if (len - *pos < 8)
		return -EBADMSG;
	nl = mfs_get_le32(blob + *pos);
	vl = mfs_get_le32(blob + *pos + 4);
	if (nl == 0 || nl > 255 || vl > len || len - *pos - 8 < nl + vl)
		return -EBADMSG;
	ret->name = blob + *pos + 8;
	ret->name_len = nl;
	ret->value = ret->name + nl;
	ret->value_len = vl;
	*pos += 8 + nl + vl;
	return 1;
}

int mfs_xattr_copy(int in, int out, const char *skip_prefix)
{
	_cleanup_free_ char *blob = NULL;
	struct mfs_xattr_ent x;
	size_t len = 0, pos = 0;
	int r, first = 0;

	r = mfs_xattr_blob(in, &blob, &len);
	if (r < 0)
		return r;
	while ((r = mfs_xattr_blob_next(blob, len, &pos, &x)) > 0) {
		char n0[256];

		memcpy(n0, x.name, x.name_len);
		n0[x.name_len] = 0;
		if (skip_prefix && !strncmp(n0, skip_prefix, strlen(skip_prefix)))
			continue;
		if (fsetxattr(out, n0, x.value, x.value_len, 0) < 0 && first == 0)
			first = -errno;
	}
	return first;
}
