/* SPDX-License-Identifier: MIT */
/*
 * cowmap.c - the snapshot store's formats (layout in cowmap.h): a file's
 * copy-on-write map header and bitmap, the extended attributes blob, and
 * the snapshot's meta file. fs/cow.c and fs/snapstore.c own the files;
 * this module only encodes and decodes them.
 */
#include "mirrorfs/cowmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "mirrorfs/macro.h"

void mfs_cowmap_hdr_encode(const struct mfs_cowmap_hdr *h, uint8_t out[MFS_COWMAP_HDR])
{
	memset(out, 0, MFS_COWMAP_HDR);
	memcpy(out, MFS_COWMAP_MAGIC, 8);
	mfs_put_le32(out + 8, h->flags);
	mfs_put_le32(out + 12, h->mode);
	mfs_put_le32(out + 16, h->uid);
	mfs_put_le32(out + 20, h->gid);
	mfs_put_le64(out + 24, h->size);
	mfs_put_le64(out + 32, (uint64_t)h->atime.tv_sec);
	mfs_put_le32(out + 40, (uint32_t)h->atime.tv_nsec);
	mfs_put_le32(out + 44, (uint32_t)h->mtime.tv_nsec);
	mfs_put_le64(out + 48, (uint64_t)h->mtime.tv_sec);
	mfs_put_le64(out + 56, h->ino);
}

int mfs_cowmap_hdr_decode(const uint8_t in[MFS_COWMAP_HDR], struct mfs_cowmap_hdr *ret)
{
	if (memcmp(in, MFS_COWMAP_MAGIC, 8))
		return -EBADMSG;
	*ret = (struct mfs_cowmap_hdr){
		.flags = mfs_get_le32(in + 8),
		.mode = mfs_get_le32(in + 12),
		.uid = mfs_get_le32(in + 16),
		.gid = mfs_get_le32(in + 20),
		.size = mfs_get_le64(in + 24),
		.atime = { (time_t)mfs_get_le64(in + 32),
			   (long)(mfs_get_le32(in + 40) % 1000000000u) },
		.mtime = { (time_t)mfs_get_le64(in + 48),
			   (long)(mfs_get_le32(in + 44) % 1000000000u) },
		.ino = mfs_get_le64(in + 56),
	};
	return 0;
}

void mfs_cowmap_set(uint8_t *map, uint64_t b0, uint64_t b1)
{
	for (uint64_t b = b0; b < b1; b++)
		map[b / 8] |= (uint8_t)(1u << (b % 8));
}

uint64_t mfs_cowmap_run_end(const uint8_t *map, uint64_t b, uint64_t e, bool set)
{
	while (b < e && mfs_cowmap_test(map, b) == set)
		b++;
	return b;
}

int mfs_cowmap_xattr_add(char **blob, size_t *len, const char *name, const void *value,
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

int mfs_cowmap_xattr_next(const char *blob, size_t len, size_t *pos, struct mfs_cowmap_xattr *ret)
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

/* Add attribute @name of @fd to the blob; one that vanished or grew since
 * it was listed is left out. */
static int blob_add_fd(int fd, const char *name, char **blob, size_t *len)
{
	_cleanup_free_ char *val = NULL;
	ssize_t v = fgetxattr(fd, name, NULL, 0);

	if (v < 0)
		return 0;
	val = malloc((size_t)v + 1);
	if (!val)
		return -ENOMEM;
	v = fgetxattr(fd, name, val, (size_t)v);
	if (v < 0)
		return 0;
	return mfs_cowmap_xattr_add(blob, len, name, val, (size_t)v);
}

int mfs_cowmap_xattr_read(int fd, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *names = NULL;
	char *blob = NULL;
	size_t len = 0;
	ssize_t n = flistxattr(fd, NULL, 0);

	if (n < 0 && errno != ENOTSUP)
		return -errno;
	if (n > 0) {
		names = malloc((size_t)n);
		if (!names)
			return -ENOMEM;
		n = flistxattr(fd, names, (size_t)n);
		if (n < 0)
			return -errno;
	}
	for (char *nm = names; n > 0 && nm < names + n; nm += strlen(nm) + 1) {
		int r = blob_add_fd(fd, nm, &blob, &len);
		if (r < 0) {
			free(blob);
			return r;
		}
	}
	*ret = blob;
	*ret_len = len;
	return 0;
}

int mfs_snapmeta_encode(const struct mfs_snapmeta *m, char *buf, size_t cap)
{
	return snprintf(buf, cap, "name=%s\nlsn=%" PRIu64 "\ntime_ns=%" PRIu64 "\ndataset=%s\n",
			m->name, m->lsn, m->time_ns, m->dataset);
}

int mfs_snapmeta_decode(const char *text, struct mfs_snapmeta *ret)
{
	const char *p = strstr(text, "\nlsn="), *t = strstr(text, "\ntime_ns=");

	if (strncmp(text, "name=", 5) || !p || !t)
		return -EBADMSG;
	*ret = (struct mfs_snapmeta){
		.lsn = strtoull(p + 5, NULL, 10),
		.time_ns = strtoull(t + 9, NULL, 10),
	};
	return 0;
}
