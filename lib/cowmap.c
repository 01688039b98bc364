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
