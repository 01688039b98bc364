/* SPDX-License-Identifier: MIT */
/*
 * backup.h - snapshot backups in object storage (`mirrorctl backup`,
 * `restore --from`, `prune`): the key layout under PREFIX/backups/, the
 * manifest of one backup, and the retention plan. Pure formats and
 * decisions: no S3, no file system (the tools do the I/O).
 *
 * Keys (every one written once, never overwritten):
 *
 *   PREFIX/backups/ID/pack-ATTEMPT-NNNNNN  file data: extents back to back
 *   PREFIX/backups/ID/manifest             written last: a full backup exists
 *   PREFIX/backups/ID/manifest-PARENT      written last: an incremental on
 *                                          backup PARENT (an ID) exists
 *
 *   ID       LSN-TIME: the snapshot's LSN and time (ns since the epoch),
 *            20 digits each, so that key order is LSN order and a restore
 *            or prune picks a backup, and follows its chain of parents,
 *            from one LIST without reading any manifest.
 *   ATTEMPT  16 hex digits (the attempt's start time): an interrupted
 *            attempt's packs never collide with a later one's.
 *
 * Manifest (text, one item a line, fields separated by one space; paths,
 * link targets and attribute names percent-encoded: bytes <= 0x20, >= 0x7f
 * and '%' as %XX; attribute values in hex):
 *
 *   mirrorfs-backup 1
 *   snapshot NAME
 *   dataset UUID
 *   lsn N
 *   time_ns N
 *   parent ID|-                          the backup this one builds on
 *   pack NAME SIZE                       0, 1, ... in order of appearance
 *   d MODE UID GID ATIME MTIME PATH      a directory ("." the root)
 *   l MODE UID GID ATIME MTIME PATH TARGET   a symlink
 *   f MODE UID GID ATIME MTIME SIZE FROM PATH   a regular file; FROM is
 *            "-" (its data is its extents, the rest zeros) or the
 *            parent's PATH whose contents it starts from (then resized
 *            to SIZE and its extents written over)
 *   h PATH FIRST                         a hard link to the file FIRST
 *   e PACK OFFSET LENGTH FILEOFFSET      extent of the last f
 *   x NAME HEXVALUE                      extended attribute of the last d/l/f
 *   end
 *
 * Times are ns since the epoch. Entries come parents first.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MFS_BK_DIR "backups/"
#define MFS_BK_MANIFEST "manifest"
#define MFS_BK_ID_LEN 41 /* LSN(20) '-' TIME(20) */
#define MFS_BK_VERSION 1

struct mfs_bk_extent {
	uint32_t pack;
	uint64_t pack_off, len, file_off;
};

struct mfs_bk_xattr {
	char *name;
	uint8_t *value;
	size_t len;
};

struct mfs_bk_entry {
	char type; /* 'd', 'f', 'l', 'h' */
	uint32_t mode, uid, gid;
	uint64_t atime_ns, mtime_ns, size;
	char *path;
	char *other; /* l: target; h: first path; f: parent path, NULL for "-" */
	struct mfs_bk_extent *ext;
	size_t n_ext, cap_ext;
	struct mfs_bk_xattr *xa;
	size_t n_xa;
};

struct mfs_bk_manifest {
	char *snapshot, *dataset;
	uint64_t lsn, time_ns;
	char parent[MFS_BK_ID_LEN + 1]; /* "" for a full backup */
	char **packs;
	uint64_t *pack_size;
	size_t n_packs;
	struct mfs_bk_entry *v;
	size_t n, cap;
};

/* Free everything @m holds (not @m), leaving it empty. */
void mfs_bk_manifest_done(struct mfs_bk_manifest *m);

/* A new entry at the end of @m (zeroed but @type, @path copied), or NULL: ENOMEM. */
struct mfs_bk_entry *mfs_bk_entry_add(struct mfs_bk_manifest *m, char type, const char *path);
/* Append an extent to @e. 0 or -ENOMEM. */
int mfs_bk_extent_add(struct mfs_bk_entry *e, uint32_t pack, uint64_t pack_off, uint64_t len,
		      uint64_t file_off);
/* Append an extended attribute to @e (copied). 0 or -ENOMEM. */
int mfs_bk_xattr_add(struct mfs_bk_entry *e, const char *name, const void *value, size_t len);
/* Append a pack name to @m. Returns its index, or -ENOMEM. */
int mfs_bk_pack_add(struct mfs_bk_manifest *m, const char *name, uint64_t size);

/* The manifest's text (malloc'd, NUL-terminated) in *@ret, its length in
 * *@ret_len. 0 or -ENOMEM. */
int mfs_bk_manifest_encode(const struct mfs_bk_manifest *m, char **ret, size_t *ret_len);
/* Parse a manifest's text (@len bytes) into @ret (empty before). 0, or
 * -EBADMSG (malformed, truncated: no "end", an extent naming no pack or
 * before any f, a FROM in a full backup), -EPROTONOSUPPORT (another
 * version), -ENOMEM. On failure @ret is left empty. */
int mfs_bk_manifest_decode(const char *text, size_t len, struct mfs_bk_manifest *ret);

/* The ID of a backup of a snapshot at @lsn taken at @time_ns, into @out. */
void mfs_bk_id_format(uint64_t lsn, uint64_t time_ns, char out[MFS_BK_ID_LEN + 1]);
/* Parse an ID (exactly its 41 characters): true and its LSN and time. */
bool mfs_bk_id_parse(const char *id, uint64_t *ret_lsn, uint64_t *ret_time_ns);
/* A key relative to PREFIX/backups/: "ID/manifest" or "ID/manifest-PARENT"
 * (true, *@ret_manifest true, the parent's ID or "" in @ret_parent) or
 * "ID/ANYTHING" (true, false); the ID copied into @ret_id. */
bool mfs_bk_key_parse(const char *rel, char ret_id[MFS_BK_ID_LEN + 1], bool *ret_manifest,
		      char ret_parent[MFS_BK_ID_LEN + 1]);
/* The manifest's key relative to PREFIX/backups/ of backup @id on @parent
 * ("" for a full one), into @out. */
void mfs_bk_manifest_key(const char *id, const char *parent, char out[2 * MFS_BK_ID_LEN + 20]);

/* ---- retention */

struct mfs_bk_info {
	char id[MFS_BK_ID_LEN + 1];
	uint64_t lsn, time_ns;
	char parent[MFS_BK_ID_LEN + 1]; /* "" for a full backup */
	bool complete;                  /* its manifest exists */
	bool keep;                      /* out: kept */
};

/*
 * Mark what a prune keeps in @v (@n backups sorted by ID): with
 * @keep_backups > 0 the newest that many complete backups; else with
 * @keep_within_ns those taken at or after @now_ns - @keep_within_ns, and
 * the newest one before (it is where a restore to the window's start
 * begins). Then every parent of a kept one, transitively: an incremental
 * is useless without them. A chain whose parent is missing cannot be
 * restored: such backups are not counted as kept (nor their parents
 * kept for them). Incomplete backups are kept when their LSN is at or
 * after the window's start (an upload may be running), else not.
 * *@ret_window_lsn: the LSN of the oldest backup kept for itself (not as a
 * parent), 0 if none: segments that end at or before it are not needed
 * (when 0, every segment is). Returns the number of backups kept.
 */
size_t mfs_bk_plan_prune(struct mfs_bk_info *v, size_t n, unsigned keep_backups,
			 uint64_t keep_within_ns, uint64_t now_ns, uint64_t *ret_window_lsn);

/*
 * The backup a restore to @until_lsn / @until_ns (UINT64_MAX: no limit)
 * starts from: the newest complete backup of @v (sorted by ID) with an
 * LSN at or before @until_lsn and a time at or before @until_ns whose
 * chain of parents is complete in @v. Returns its index, or -ENOENT.
 */
int mfs_bk_pick(const struct mfs_bk_info *v, size_t n, uint64_t until_lsn, uint64_t until_ns);

/* The index of backup @id in @v, or -ENOENT. */
int mfs_bk_find(const struct mfs_bk_info *v, size_t n, const char *id);
