/* SPDX-License-Identifier: MIT */
/*
 * cowmap.h - the snapshot store's files (DATADIR/.mirrorfs/snapshots/NAME/,
 * written by mirrorfs's copy-on-write, fs/cow.c): a file's copy-on-write
 * map NAME/cow/INO.map, its extended attributes NAME/cow/INO.xattr, and
 * the snapshot's NAME/meta.
 *
 * INO.map: a 64-byte header, then the bitmap of the preserved blocks of
 * MFS_COWMAP_BS bytes (bit b of byte b/8 for block b; nblocks/8 + 1 bytes,
 * nblocks = ceil(size / MFS_COWMAP_BS)). Header, little endian:
 *
 *   0  8  magic "MFSCOW1\n"        32 8  atime seconds
 *   8  4  flags (1: full clone)    40 4  atime nanoseconds
 *   12 4  mode                     44 4  mtime nanoseconds
 *   16 4  uid                      48 8  mtime seconds
 *   20 4  gid                      56 8  inode number (the INO of the name)
 *   24 8  size at the snapshot
 *
 * The preserved blocks are in INO.data at their own offsets (or all of
 * it, a reflink clone, with flag "full"). A bit reaches the disk only
 * after its block; a map shorter than its header and bitmap, or without
 * the magic, was never made durable (cow.c, "Ordering").
 *
 * INO.xattr (and the blob in memory): the attribute blob of lib/xattr.c
 * (mirrorfs/xattr.h): per attribute u32 name length (1-255), u32 value
 * length, name, value, little endian; absent when the file had none.
 *
 * NAME/meta: "name=NAME\nlsn=N\ntime_ns=N\ndataset=UUID\n", written last.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MFS_COWMAP_BS 4096u
#define MFS_COWMAP_HDR 64u
#define MFS_COWMAP_MAGIC "MFSCOW1\n"
#define MFS_COWMAP_F_FULL 1u
/* The largest file size a map may describe (refused beyond: -EBADMSG). */
#define MFS_COWMAP_SIZE_MAX (UINT64_C(1) << 50)

struct mfs_cowmap_hdr {
	uint32_t flags; /* MFS_COWMAP_F_* */
	uint32_t mode, uid, gid;
	uint64_t size;
	struct timespec atime, mtime;
	uint64_t ino;
};

void mfs_cowmap_hdr_encode(const struct mfs_cowmap_hdr *h, uint8_t out[MFS_COWMAP_HDR]);
/* Decode a header. Returns 0, or -EBADMSG without the magic. Nanoseconds
 * are taken modulo 10^9. */
int mfs_cowmap_hdr_decode(const uint8_t in[MFS_COWMAP_HDR], struct mfs_cowmap_hdr *ret);

/* Blocks of a file of @size bytes. */
static inline uint64_t mfs_cowmap_nblocks(uint64_t size)
{
	return (size + MFS_COWMAP_BS - 1) / MFS_COWMAP_BS;
}

/* Bytes of the bitmap of a file of @size bytes (one more than needed). */
static inline size_t mfs_cowmap_bytes(uint64_t size)
{
	return (size_t)(mfs_cowmap_nblocks(size) / 8 + 1);
}

/* Whether block @b is preserved. */
static inline bool mfs_cowmap_test(const uint8_t *map, uint64_t b)
{
	return map[b / 8] & (1u << (b % 8));
}

/* Mark blocks [b0, b1) preserved. */
void mfs_cowmap_set(uint8_t *map, uint64_t b0, uint64_t b1);
/* The first block of [b, e) whose bit is not @set (e if none). */
uint64_t mfs_cowmap_run_end(const uint8_t *map, uint64_t b, uint64_t e, bool set);

/* A snapshot's meta file. */
struct mfs_snapmeta {
	const char *name;    /* encode only */
	uint64_t lsn, time_ns;
	const char *dataset; /* encode only: the data set's UUID as text */
};

/* The meta file's text into @buf. Returns its length (as snprintf). */
int mfs_snapmeta_encode(const struct mfs_snapmeta *m, char *buf, size_t cap);
/* Parse a meta file's text (NUL-terminated): lsn and time_ns. Returns 0
 * or -EBADMSG (not starting with "name=", lsn or time_ns missing). */
int mfs_snapmeta_decode(const char *text, struct mfs_snapmeta *ret);
