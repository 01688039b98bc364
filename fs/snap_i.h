/* SPDX-License-Identifier: MIT */
/*
 * snap_i.h - private interfaces of the snapshot modules.
 *
 * Store (always DATADIR/.mirrorfs/snapshots/, on the data's filesystem):
 *
 *   NAME/meta        "name=\nlsn=\ntime_ns=\ndataset=\n"; written last, so a
 *                    folder without it is an unfinished snapshot (removed
 *                    at mount)
 *   NAME/tree/       the namespace at the snapshot: directories and
 *                    symlinks are copies (modes, owners, times), special
 *                    files are recreated, and regular files are HARD LINKS
 *                    to the live inodes. Making it costs one link per file,
 *                    never a byte of data.
 *   NAME/cow/INO.map the file's attributes at the snapshot (mode, owner,
 *                    size, times) and a bitmap of preserved 4 KiB blocks
 *   NAME/cow/INO.data  the preserved blocks at their own offsets (sparse;
 *                    copied or cloned), or a whole reflink clone (flag
 *                    "full", written by earlier versions)
 *   NAME/broken      why the snapshot could not be kept (out of space...)
 *
 * Modules:
 *   snapstore.c  the store: open, load at mount, the list of snapshots
 *   snapfarm.c   the hard-link farm NAME/tree/: build, fsync, scan
 *   cow.c        copy-on-write: preserve before a change, make it durable,
 *                load the maps at mount, and the view's reads of a file
 *   snap.c       create/delete orchestration and the ctl commands
 *
 * Locks: fs->lock gate (create) -> snaps->mu (create/delete, serialised) ->
 * snaps->rw (list and hash: shared for cow and reads, exclusive to change)
 * -> entry->mu.
 */
#pragma once

#include "fs.h"

#include "mirrorfs/cowmap.h"

#define STORE_DIR "snapshots"
#define META_FILE "meta"
#define BROKEN_FILE "broken"
#define TREE_DIR "tree"
#define COW_DIR "cow"
#define COW_BS MFS_COWMAP_BS
#define COW_HDR MFS_COWMAP_HDR
#define COPY_BUF (1u << 20)
#define N_BUCKETS 16384u
#define MAX_DEPTH 1024

/* A regular file's state in one snapshot. */
struct cow_state {
	struct cow_state *next;
	struct fs_snap *snap;
	bool saved; /* the file changed since the snapshot: attributes below */
	bool full;  /* all data in data_fd (a reflink clone) */
	uint32_t mode, uid, gid;
	uint64_t size;
	struct timespec atime, mtime;
	int data_fd, map_fd;
	uint8_t *map; /* nblocks bits */
	uint64_t nblocks;
	uint32_t links;  /* names of the file in the snapshot (farm links) */
	bool data_dirty; /* preserved blocks not yet fdatasync'ed; entry mu */
	bool map_dirty;  /* bits not yet in the map file; entry mu */
	char *xattrs;    /* saved: the xattr blob (see xattr_blob()) */
	size_t xattrs_len;
};

/* Every snapshot state of one backing inode. */
struct cow_entry {
	struct cow_entry *hnext;
	ino_t ino;
	pthread_rwlock_t mu; /* preserving: exclusive; reading the state: shared */
	int src_fd; /* O_RDONLY on the inode, -1 until needed; mu */
	struct cow_state *states;
};

struct fs_snap {
	struct fs_snap *next;
	char name[FS_SNAP_NAME_MAX + 1];
	uint64_t lsn, time_ns;
	int dirfd;   /* store/NAME */
	int tree_fd; /* store/NAME/tree */
	int cow_fd; /* store/NAME/cow */
	atomic_bool broken;
	bool dead; /* deleted; kept until unmount for the view nodes */
	_Atomic uint64_t preserved;
};

struct fs_snaps {
	pthread_mutex_t mu; /* create, delete */
	pthread_rwlock_t rw;
	struct fs_snap *list;  /* live snapshots; rw */
	struct fs_snap *dead;  /* deleted ones; rw */
	atomic_uint count;
	struct cow_entry **hash; /* rw */
	int store_fd;
	atomic_int reflink;      /* -1 unknown, 0 no, 1 yes */
	_Atomic uint64_t dirty_gen; /* bumped after each preservation */
	uint64_t synced_gen;        /* sync_mu: preservations up to this one are durable */
	pthread_mutex_t sync_mu;    /* one sync_upto() at a time: later callers share it */
	atomic_bool new_files;      /* cow files created since the last sync */
};

static inline size_t fs_cow_bucket(ino_t ino)
{
	return (size_t)(((uint64_t)ino * 0x9E3779B97F4A7C15ull) >> 40) & (N_BUCKETS - 1);
}

/* ---------------------------------------------------------------- snapstore.c */

/* A snapshot object named @name (checked), no folders open; NULL: ENOMEM. */
struct fs_snap *fs_snap_new(const char *name);
void fs_snap_free(struct fs_snap *s);
/* Insert @s into the list by LSN (rw held exclusively). */
void fs_snap_insert(struct fs_snaps *S, struct fs_snap *s);
/* Open the store (@create: make it first). Returns 0, -ENOENT or -errno (logged). */
int fs_snap_store_open(struct fs *fs, bool create);

/* ---------------------------------------------------------------- snapfarm.c */

struct fs_farm {
	struct fs *fs;
	struct fs_snap *s;
	uint64_t files, dirs;
};
/* Mirror directory @src (O_RDONLY) into @dst (O_RDONLY), recursively,
 * registering every regular file with copy-on-write. */
int fs_farm_dir(struct fs_farm *fm, int src, int dst, bool top, int depth);
/* fsync every folder of a farm (after the lock window), many at once. */
int fs_farm_sync(int dirfd);
/* Register the regular files of an existing farm (mount). */
int fs_farm_scan(struct fs_snaps *S, struct fs_snap *s, int dirfd);
int fs_farm_copy_attrs(int dirfd, const char *name, const struct stat *st, bool nofollow);
/* Copy the extended attributes of @src to @dst (folders in the farm). */
void fs_farm_copy_xattrs(int src, int dst);

/* ---------------------------------------------------------------- cow.c */

/* Mark @s broken (once): logged, and the reason written to NAME/broken. */
void fs_snap_mark_broken(struct fs_snap *s, int err, const char *what);
struct cow_entry *fs_cow_find(struct fs_snaps *S, ino_t ino);
/* @e's state in @s (@e may be NULL), or NULL. */
struct cow_state *fs_cow_state(struct cow_entry *e, struct fs_snap *s);
/* Add a state of @s for inode @ino (rw held exclusively). */
int fs_cow_add(struct fs_snaps *S, struct fs_snap *s, ino_t ino, struct cow_state **ret);
/* Drop every state of @s (rw held exclusively). */
void fs_cow_drop(struct fs_snaps *S, struct fs_snap *s);
/* Load NAME/cow/INO.map files into the states of @s (mount). */
int fs_cow_load(struct fs_snaps *S, struct fs_snap *s);
/* pread of @len bytes at @off, zeros past the end of the file. */
ssize_t fs_cow_pread(int fd, char *buf, size_t len, uint64_t off);
