/* SPDX-License-Identifier: MIT */
/*
 * snap.c - frozen snapshots: the store, copy-on-write, create/list/delete.
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
 * Copy-on-write. A hard link shares the inode with the live file, so
 * before anything changes an inode that a live snapshot holds,
 * fs_snap_cow() preserves what the snapshot still needs: the attributes
 * the first time, and the old contents of the blocks about to change:
 * runs of 64 KiB or more are cloned (FICLONERANGE) where the backing
 * filesystem can (XFS with reflink, btrfs: O(extents), the filesystem then
 * shares the blocks), shorter runs and everything on ext4 are copied
 * (see preserve()). Unlink, rename and rename-over
 * need nothing: the link keeps the old inode. The snapshot view reads a
 * block from INO.data when it is preserved, else from the link (the live
 * inode, whose block is then still the snapshot's).
 *
 * Ordering: preservation happens under the entry's mutex before the
 * mutation is journaled or applied, so a kill -9 anywhere leaves either
 * an unchanged block or a preserved one. Power cuts: every group commit
 * first runs fs_snap_sync_dirty(), which makes the preserved blocks
 * durable, then writes the bitmap naming them (only then: a bit must
 * never reach the disk before its block) and makes it durable, and only
 * then is the journal synced, so a durable record always has its
 * preservation durable, and the change itself reaches the backing file
 * after that (write-ahead, pending.c). Crash recovery, which replays
 * records without copy-on-write, therefore only re-applies changes whose
 * preservation is durable. The map's header and first bitmap are written
 * when a file first changes; a map that is short or has no valid header
 * after a crash was never made durable, so neither was any record of a
 * change to its file: it is dropped, the live file still holds the
 * snapshot's contents. Readers hold the entry's mutex while they look at
 * the bitmap and read, so a block is never read half-preserved.
 *
 * Failure to preserve (ENOSPC...) never fails the database's write: the
 * snapshot is marked broken (reported by list and status, its view gives
 * EIO) and the write goes on.
 *
 * Locks: fs->lock gate (create) -> snaps->mu (create/delete, serialised) ->
 * snaps->rw (list and hash: shared for cow and reads, exclusive to change)
 * -> entry->mu.
 */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

#define STORE_DIR "snapshots"
#define META_FILE "meta"
#define BROKEN_FILE "broken"
#define TREE_DIR "tree"
#define COW_DIR "cow"
#define COW_BS 4096u
#define COW_MAGIC "MFSCOW1\n"
#define COW_HDR 64u
#define COW_FULL 1u
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
	pthread_mutex_t vmu;     /* view nodes */
	struct fs_inode **vhash;
};

/* ================================================================ helpers */

bool fs_snap_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > FS_SNAP_NAME_MAX || name[0] == '.')
		return false;
	for (size_t k = 0; k < n; k++) {
		char c = name[k];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static size_t ebucket(ino_t ino)
{
	return (size_t)(((uint64_t)ino * 0x9E3779B97F4A7C15ull) >> 40) & (N_BUCKETS - 1);
}

static struct cow_entry *entry_find(struct fs_snaps *S, ino_t ino)
{
	for (struct cow_entry *e = S->hash[ebucket(ino)]; e; e = e->hnext)
		if (e->ino == ino)
			return e;
	return NULL;
}

static struct cow_state *state_of(struct cow_entry *e, struct fs_snap *s)
{
	for (struct cow_state *c = e ? e->states : NULL; c; c = c->next)
		if (c->snap == s)
			return c;
	return NULL;
}

static void state_free(struct cow_state *c)
{
	if (c->data_fd >= 0)
		close(c->data_fd);
	if (c->map_fd >= 0)
		close(c->map_fd);
	free(c->map);
	free(c->xattrs);
	free(c);
}

/* Add a state of @s for inode @ino (rw held exclusively). */
static int state_add(struct fs_snaps *S, struct fs_snap *s, ino_t ino, struct cow_state **ret)
{
	struct cow_entry *e = entry_find(S, ino);
	struct cow_state *c;

	if (e && (c = state_of(e, s))) {
		c->links++;
		*ret = c;
		return 0; /* a hard link within the snapshot */
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->ino = ino;
		e->src_fd = -1;
		pthread_rwlock_init(&e->mu, NULL);
		e->hnext = S->hash[ebucket(ino)];
		S->hash[ebucket(ino)] = e;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->snap = s;
	c->links = 1;
	c->data_fd = c->map_fd = -1;
	c->next = e->states;
	e->states = c;
	*ret = c;
	return 0;
}

/* Drop every state of @s (rw held exclusively). */
static void states_drop(struct fs_snaps *S, struct fs_snap *s)
{
	for (size_t b = 0; b < N_BUCKETS; b++) {
		struct cow_entry **pe = &S->hash[b];
		while (*pe) {
			struct cow_entry *e = *pe;
			struct cow_state **pc = &e->states;
			while (*pc) {
				struct cow_state *c = *pc;
				if (c->snap == s) {
					*pc = c->next;
					state_free(c);
				} else {
					pc = &c->next;
				}
			}
			if (!e->states) {
				*pe = e->hnext;
				if (e->src_fd >= 0)
					close(e->src_fd);
				pthread_rwlock_destroy(&e->mu);
				free(e);
			} else {
				pe = &e->hnext;
			}
		}
	}
}

static void snap_free(struct fs_snap *s)
{
	closep(&s->dirfd);
	closep(&s->tree_fd);
	closep(&s->cow_fd);
	free(s);
}

static void mark_broken(struct fs_snap *s, int err, const char *what)
{
	char buf[256];
	int n;

	if (atomic_exchange(&s->broken, true))
		return;
	errno = -err;
	n = snprintf(buf, sizeof(buf), "%s: %m\n", what);
	log_error("snapshot '%s' is broken and no longer kept: %s: %m", s->name, what);
	(void)mfs_replace_file(s->dirfd, BROKEN_FILE, buf, (size_t)n, 0600);
}

/* ================================================================ cow files */

static void hdr_encode(const struct cow_state *c, ino_t ino, uint8_t h[COW_HDR])
{
	memset(h, 0, COW_HDR);
	memcpy(h, COW_MAGIC, 8);
	mfs_put_le32(h + 8, c->full ? COW_FULL : 0);
	mfs_put_le32(h + 12, c->mode);
	mfs_put_le32(h + 16, c->uid);
	mfs_put_le32(h + 20, c->gid);
	mfs_put_le64(h + 24, c->size);
	mfs_put_le64(h + 32, (uint64_t)c->atime.tv_sec);
	mfs_put_le32(h + 40, (uint32_t)c->atime.tv_nsec);
	mfs_put_le32(h + 44, (uint32_t)c->mtime.tv_nsec);
	mfs_put_le64(h + 48, (uint64_t)c->mtime.tv_sec);
	mfs_put_le64(h + 56, (uint64_t)ino);
}

static void cow_name(ino_t ino, const char *ext, char out[64])
{
	snprintf(out, 64, "%" PRIu64 ".%s", (uint64_t)ino, ext);
}

/*
 * The extended attributes of @fd as a blob: per attribute u32 name length,
 * u32 value length, name, value (little endian). Returns 0 or -errno.
 */
static int xattr_blob(int fd, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *names = NULL;
	char *blob = NULL;
	size_t len = 0;
	ssize_t n = flistxattr(fd, NULL, 0);

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
	if (n < 0)
		return -errno;
	for (char *nm = names; nm < names + n; nm += strlen(nm) + 1) {
		ssize_t v = fgetxattr(fd, nm, NULL, 0);
		size_t nl = strlen(nm);
		char *nb;
		if (v < 0)
			continue;
		nb = realloc(blob, len + 8 + nl + (size_t)v);
		if (!nb) {
			free(blob);
			return -ENOMEM;
		}
		blob = nb;
		v = fgetxattr(fd, nm, blob + len + 8 + nl, (size_t)v);
		if (v < 0)
			continue;
		mfs_put_le32(blob + len, (uint32_t)nl);
		mfs_put_le32(blob + len + 4, (uint32_t)v);
		memcpy(blob + len + 8, nm, nl);
		len += 8 + nl + (size_t)v;
	}
	*ret = blob;
	*ret_len = len;
	return 0;
}

/* Iterate a blob: the next attribute at *pos, 0 at the end, -EBADMSG. */
static int blob_next(const char *blob, size_t len, size_t *pos, const char **name, size_t *nl,
		     const char **val, size_t *vl)
{
	if (*pos >= len)
		return 0;
	if (len - *pos < 8)
		return -EBADMSG;
	*nl = mfs_get_le32(blob + *pos);
	*vl = mfs_get_le32(blob + *pos + 4);
	if (*nl == 0 || *nl > 255 || *vl > len || len - *pos - 8 < *nl + *vl)
		return -EBADMSG;
	*name = blob + *pos + 8;
	*val = *name + *nl;
	*pos += 8 + *nl + *vl;
	return 1;
}

/* Copy the extended attributes of @src to @dst (folders in the farm). */
static void copy_xattrs(int src, int dst)
{
	_cleanup_free_ char *blob = NULL;
	const char *name, *val;
	size_t len, pos = 0, nl, vl;

	if (xattr_blob(src, &blob, &len) < 0)
		return;
	while (blob_next(blob, len, &pos, &name, &nl, &val, &vl) > 0) {
		char n0[256];
		memcpy(n0, name, nl);
		n0[nl] = 0;
		(void)fsetxattr(dst, n0, val, vl, 0);
	}
}

/* The file changes for the first time since @c's snapshot: save its
 * attributes (from @st) and create its cow files. */
static int state_save(struct cow_state *c, ino_t ino, const struct stat *st, int src)
{
	uint8_t h[COW_HDR];
	char name[64];
	int r;

	r = xattr_blob(src, &c->xattrs, &c->xattrs_len);
	if (r < 0)
		return r;
	if (c->xattrs_len) {
		cow_name(ino, "xattr", name);
		r = mfs_replace_file(c->snap->cow_fd, name, c->xattrs, c->xattrs_len, 0600);
		if (r < 0)
			return r;
	}

	c->mode = st->st_mode;
	c->uid = st->st_uid;
	c->gid = st->st_gid;
	c->size = (uint64_t)st->st_size;
	c->atime = st->st_atim;
	c->mtime = st->st_mtim;
	c->nblocks = (c->size + COW_BS - 1) / COW_BS;
	c->map = calloc(1, c->nblocks / 8 + 1);
	if (!c->map)
		return -ENOMEM;
	cow_name(ino, "data", name);
	c->data_fd = openat(c->snap->cow_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c->data_fd < 0)
		return -errno;
	cow_name(ino, "map", name);
	c->map_fd = openat(c->snap->cow_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (c->map_fd < 0)
		return -errno;
	hdr_encode(c, ino, h);
	r = mfs_pwrite_all(c->map_fd, h, COW_HDR, 0);
	if (r == 0)
		r = mfs_pwrite_all(c->map_fd, c->map, c->nblocks / 8 + 1, COW_HDR);
	if (r < 0)
		return r;
	c->saved = true;
	c->map_dirty = true;
	return 0;
}

static bool bit(const uint8_t *m, uint64_t b)
{
	return m[b / 8] & (1u << (b % 8));
}

/* The first block of [b, e) whose bit is not @set (e if none). */
static uint64_t run_end(const uint8_t *m, uint64_t b, uint64_t e, bool set)
{
	while (b < e && bit(m, b) == set)
		b++;
	return b;
}

/* pread of @len bytes at @off, zeros past the end of the file. */
static ssize_t pread_zeros(int fd, char *buf, size_t len, uint64_t off)
{
	ssize_t n = mfs_pread_all(fd, buf, len, off);

	if (n >= 0 && (size_t)n < len)
		memset(buf + n, 0, len - (size_t)n);
	return n < 0 ? n : (ssize_t)len;
}

/* Mark blocks [b0, b1) preserved, in memory; fs_snap_sync_dirty() writes
 * the map file once the blocks are durable. */
static int mark_blocks(struct cow_state *c, uint64_t b0, uint64_t b1)
{
	for (uint64_t b = b0; b < b1; b++)
		c->map[b / 8] |= (uint8_t)(1u << (b % 8));
	c->data_dirty = c->map_dirty = true;
	return 0;
}

/* A copy buffer, grown on demand up to COPY_BUF: most copies are one 4 KiB
 * block, and a 1 MiB malloc per write is an mmap and an munmap each time. */
struct copy_buf {
	char *p;
	size_t len;
};

/* Copy blocks [b0, b1) of the inode (@src) into @c, mark them. */
static int copy_blocks(struct cow_state *c, int src, uint64_t b0, uint64_t b1,
		       struct copy_buf *cb)
{
	uint64_t off = b0 * COW_BS, end = MFS_MIN(b1 * COW_BS, c->size);
	size_t want = (size_t)MFS_MIN(end - MFS_MIN(off, end), (uint64_t)COPY_BUF);
	char *buf;

	if (cb->len < want) {
		char *p = realloc(cb->p, want);
		if (!p)
			return -ENOMEM;
		cb->p = p;
		cb->len = want;
	}
	buf = cb->p;
	while (off < end) {
		size_t n = (size_t)MFS_MIN(end - off, (uint64_t)cb->len);
		/* the inode may be shorter than the snapshot: zeros */
		ssize_t got = pread_zeros(src, buf, n, off);
		int r;
		if (got < 0)
			return (int)got;
		r = mfs_pwrite_all(c->data_fd, buf, n, off);
		if (r < 0)
			return r;
		off += n;
	}
	atomic_fetch_add(&c->snap->preserved, end - b0 * COW_BS);
	return mark_blocks(c, b0, b1);
}

/*
 * Clone the whole blocks of [b0, b1) that the inode (@src, @src_size
 * bytes) holds into @c
 * (FICLONERANGE: the filesystem shares them). Returns the first block not
 * cloned (b0 when nothing was), or -errno.
 */
static int64_t clone_blocks(struct fs_snaps *S, struct cow_state *c, int src, uint64_t src_size,
			    uint64_t b0, uint64_t b1)
{
	struct file_clone_range fcr = { .src_fd = src, .src_offset = b0 * COW_BS };
	uint64_t end;
	int r;

	if (atomic_load(&S->reflink) == 0)
		return (int64_t)b0;
	/* whole blocks only, within both the snapshot's size and the inode */
	end = MFS_MIN(MFS_MIN(b1 * COW_BS, c->size), src_size) / COW_BS * COW_BS;
	if (end <= b0 * COW_BS)
		return (int64_t)b0;
	fcr.src_length = end - b0 * COW_BS;
	fcr.dest_offset = b0 * COW_BS;
	if (ioctl(c->data_fd, FICLONERANGE, &fcr) < 0) {
		int err = errno;
		if (err == EINVAL) /* e.g. blocks larger than ours: copy this run */
			return (int64_t)b0;
		if (err == EOPNOTSUPP || err == EXDEV || err == ENOTTY || err == ENOSYS) {
			if (atomic_exchange(&S->reflink, 0) != 0)
				log_info("snapshots: no reflink here (%s), copying blocks before "
					 "writes",
					 strerror(err));
			return (int64_t)b0;
		}
		return -err;
	}
	if (atomic_exchange(&S->reflink, 1) != 1)
		log_info("snapshots: reflink clones (FICLONERANGE) preserve large changes");
	atomic_fetch_add(&c->snap->preserved, fcr.src_length);
	r = mark_blocks(c, b0, end / COW_BS);
	return r < 0 ? r : (int64_t)(end / COW_BS);
}

/*
 * Preserve [off, off+len) of @c (clipped to the snapshot's size), run by
 * run of blocks not yet preserved. A run of CLONE_MIN or more is cloned
 * where the filesystem can (O(1) in data); shorter ones are copied. On
 * XFS a cloned block makes the next write to it a copy-on-write in the
 * filesystem itself (allocation, remap, a log force at fdatasync): 4 KiB
 * random writes with fdatasync ran at 0.84x with whole-file clones, while
 * copying 4 KiB costs about nothing next to the write.
 */
#define CLONE_MIN (64u * 1024 / COW_BS)

static int preserve(struct fs_snaps *S, struct cow_state *c, int src, uint64_t src_size,
		    uint64_t off, uint64_t len, struct copy_buf *cb)
{
	uint64_t end = len > c->size - MFS_MIN(off, c->size) ? c->size : off + len;
	uint64_t b, b1;
	int r;

	if (c->full || off >= end)
		return 0;
	b = off / COW_BS;
	b1 = (end + COW_BS - 1) / COW_BS;
	while (b < b1) {
		uint64_t run;
		if (bit(c->map, b)) {
			b++;
			continue;
		}
		run = run_end(c->map, b, b1, false);
		if (run - b >= CLONE_MIN) {
			int64_t done = clone_blocks(S, c, src, src_size, b, run);
			if (done < 0)
				return (int)done;
			b = (uint64_t)done;
		}
		if (b < run) {
			r = copy_blocks(c, src, b, run, cb);
			if (r < 0)
				return r;
		}
		b = run;
	}
	return 0;
}

static void sync_upto(struct fs_snaps *S, uint64_t gen);

int fs_snap_cow(struct fs *fs, struct fs_inode *i, uint64_t off, uint64_t len)
{
	struct fs_snaps *S = fs->snaps;
	struct copy_buf cb = { 0 };
	struct cow_entry *e;
	struct stat st;
	bool have_st = false, did = false;

	if (!S || atomic_load(&S->count) == 0 || i->vkind != FS_VK_NONE || i == &fs->root)
		return 0;
	pthread_rwlock_rdlock(&S->rw);
	e = entry_find(S, i->ino);
	if (!e) {
		pthread_rwlock_unlock(&S->rw);
		return 0;
	}
	pthread_rwlock_wrlock(&e->mu);
	for (struct cow_state *c = e->states; c; c = c->next) {
		int r = 0;
		if (atomic_load(&c->snap->broken) || (c->saved && (c->full || len == 0)))
			continue;
		if (e->src_fd < 0) {
			char proc[64];
			fs_proc_path(i->fd, proc);
			e->src_fd = open(proc, O_RDONLY | O_CLOEXEC);
			if (e->src_fd < 0)
				r = -errno;
		}
		if (r == 0 && !have_st) {
			r = fstat(e->src_fd, &st) < 0 ? -errno : 0;
			have_st = r == 0;
		}
		if (r == 0 && !c->saved) {
			r = state_save(c, i->ino, &st, e->src_fd);
			/* after the files exist: a sync that sees this state's
			 * flags also sees this, and fsyncs their folder */
			atomic_store(&S->new_files, true);
		}
		if (r == 0 && len)
			r = preserve(S, c, e->src_fd, (uint64_t)st.st_size, off, len, &cb);
		if (r < 0)
			mark_broken(c->snap, r, "cannot preserve a changed file");
		did |= c->map_dirty;
	}
	pthread_rwlock_unlock(&e->mu);
	pthread_rwlock_unlock(&S->rw);
	free(cb.p);
	/* durable before the change is even journaled: the kernel may write
	 * the record's page of the segment out at any time, and recovery
	 * replays any valid record without copy-on-write */
	if (did)
		sync_upto(S, atomic_fetch_add(&S->dirty_gen, 1) + 1);
	return 0;
}

/* ================================================================ the farm */

static int copy_attrs(int dirfd, const char *name, const struct stat *st, bool nofollow)
{
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	int fl = nofollow ? AT_SYMLINK_NOFOLLOW : 0;

	if (fchownat(dirfd, name, st->st_uid, st->st_gid, fl) < 0 && errno != EPERM)
		return -errno;
	if (!S_ISLNK(st->st_mode) && fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
		return -errno;
	if (utimensat(dirfd, name, ts, fl) < 0)
		return -errno;
	return 0;
}

struct farm {
	struct fs *fs;
	struct fs_snap *s;
	uint64_t files, dirs;
};

/* Mirror directory @src (O_RDONLY) into @dst (O_RDONLY), recursively. */
static int farm_dir(struct farm *fm, int src, int dst, bool top, int depth)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r = 0;

	if (depth > MAX_DEPTH)
		return -ELOOP;
	d = mfs_opendir_at(src, ".");
	if (!d)
		return -errno;
	while (r == 0 && (de = mfs_readdir(d))) {
		const char *n = de->d_name;
		struct stat st;

		if (top && !strcmp(n, MFS_CTL_DIR))
			continue;
		if (de->d_type == DT_REG) {
			struct cow_state *c;
			if (linkat(src, n, dst, n, 0) < 0) {
				r = -errno;
				break;
			}
			r = state_add(fm->fs->snaps, fm->s, (ino_t)de->d_ino, &c);
			fm->files++;
			continue;
		}
		if (fstatat(src, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (S_ISREG(st.st_mode)) { /* d_type unknown */
			struct cow_state *c;
			r = linkat(src, n, dst, n, 0) < 0 ? -errno
							  : state_add(fm->fs->snaps, fm->s, st.st_ino, &c);
			fm->files++;
		} else if (S_ISDIR(st.st_mode)) {
			_cleanup_close_ int s2 = -EBADF, d2 = -EBADF;
			if (mkdirat(dst, n, 0700) < 0)
				r = -errno;
			s2 = r ? -EBADF : openat(src, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			d2 = s2 < 0 ? -EBADF : openat(dst, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (r == 0 && (s2 < 0 || d2 < 0))
				r = -errno;
			if (r == 0)
				r = farm_dir(fm, s2, d2, false, depth + 1);
			if (r == 0) {
				copy_xattrs(s2, d2);
				r = copy_attrs(dst, n, &st, false);
			}
			fm->dirs++;
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX + 1];
			ssize_t len = readlinkat(src, n, target, sizeof(target) - 1);
			if (len < 0) {
				r = -errno;
				break;
			}
			target[len] = 0;
			r = symlinkat(target, dst, n) < 0 ? -errno : copy_attrs(dst, n, &st, true);
		} else {
			if (mknodat(dst, n, st.st_mode, st.st_rdev) < 0) {
				if (errno == EPERM) {
					log_warning("snapshot '%s': cannot recreate device '%s'",
						    fm->s->name, n);
					continue;
				}
				r = -errno;
				break;
			}
			r = copy_attrs(dst, n, &st, true);
		}
	}
	return r;
}

/* A walk of a farm: @dir_fn on every folder (the top one included),
 * @reg_fn on every regular file. */
struct walk {
	int (*dir_fn)(int fd, void *arg);
	int (*reg_fn)(int dirfd, const struct dirent *de, void *arg);
	void *arg;
};

static int walk_tree(const struct walk *w, int dirfd, int depth)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r = w->dir_fn ? w->dir_fn(dirfd, w->arg) : 0;

	if (r < 0)
		return r;
	if (depth > MAX_DEPTH)
		return -ELOOP;
	d = mfs_opendir_at(dirfd, ".");
	if (!d)
		return -errno;
	while (r == 0 && (de = mfs_readdir(d))) {
		unsigned char t = de->d_type;
		if (t == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return -errno;
			t = (unsigned char)IFTODT(st.st_mode);
		}
		if (t == DT_REG && w->reg_fn) {
			r = w->reg_fn(dirfd, de, w->arg);
		} else if (t == DT_DIR) {
			_cleanup_close_ int c =
				openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			r = c < 0 ? -errno : walk_tree(w, c, depth + 1);
		}
	}
	return r;
}

/* Folders of a farm to fsync, in batches (each batch at once). */
#define SYNC_BATCH 256
struct dir_batch {
	int fds[SYNC_BATCH];
	size_t n;
};

static int batch_flush(struct dir_batch *b)
{
	int r = mfs_fsync_dirs(b->fds, b->n);

	while (b->n > 0)
		close(b->fds[--b->n]);
	return r;
}

static int batch_add(int fd, void *arg)
{
	struct dir_batch *b = arg;
	int c = fcntl(fd, F_DUPFD_CLOEXEC, 3);

	if (c < 0)
		return -errno;
	b->fds[b->n++] = c;
	return b->n == SYNC_BATCH ? batch_flush(b) : 0;
}

/* fsync every folder of a farm (after the lock window), many at once. */
static int sync_tree(int dirfd)
{
	_cleanup_free_ struct dir_batch *b = calloc(1, sizeof(*b));
	const struct walk w = { .dir_fn = batch_add, .arg = b };
	int r, r2;

	if (!b)
		return -ENOMEM;
	r = walk_tree(&w, dirfd, 0);
	r2 = batch_flush(b);
	return r < 0 ? r : r2;
}

struct scan_arg {
	struct fs_snaps *S;
	struct fs_snap *s;
};

static int scan_reg(int dirfd, const struct dirent *de, void *arg)
{
	struct scan_arg *a = arg;
	struct cow_state *c;

	return state_add(a->S, a->s, (ino_t)de->d_ino, &c);
}

/* Register the regular files of an existing farm (mount). */
static int scan_tree(struct fs_snaps *S, struct fs_snap *s, int dirfd)
{
	struct scan_arg a = { S, s };
	const struct walk w = { .reg_fn = scan_reg, .arg = &a };

	return walk_tree(&w, dirfd, 0);
}

/* A map that is short or has no valid header was never made durable, nor
 * any change of its file (see "Ordering"): the live file still holds the
 * snapshot's contents. Remove it and its data. */
static void drop_unfinished(struct fs_snap *s, struct cow_state *c, const char *map,
			    const char *data)
{
	log_notice("snapshot '%s': dropping '%s', left unfinished by a crash", s->name, map);
	closep(&c->map_fd);
	closep(&c->data_fd);
	c->map_fd = c->data_fd = -1;
	(void)unlinkat(s->cow_fd, map, 0);
	(void)unlinkat(s->cow_fd, data, 0);
}

/* Load NAME/cow/INO.map files into the states of @s (mount). */
static int load_cow(struct fs_snaps *S, struct fs_snap *s)
{
	_cleanup_closedir_ DIR *d = mfs_opendir_at(s->cow_fd, ".");
	struct dirent *de;

	if (!d)
		return -errno;
	while ((de = mfs_readdir(d))) {
		uint8_t h[COW_HDR];
		char name[64], *end;
		unsigned long long ino = strtoull(de->d_name, &end, 10);
		struct cow_state *c;
		struct stat st;
		ssize_t n;

		if (strcmp(end, ".map") || end == de->d_name)
			continue;
		c = state_of(entry_find(S, (ino_t)ino), s);
		if (!c || c->saved)
			continue;
		c->map_fd = openat(s->cow_fd, de->d_name, O_RDWR | O_CLOEXEC);
		cow_name((ino_t)ino, "data", name);
		c->data_fd = openat(s->cow_fd, name, O_RDWR | O_CLOEXEC);
		if (c->map_fd < 0 || c->data_fd < 0 || fstat(c->map_fd, &st) < 0)
			return -errno;
		n = mfs_pread_all(c->map_fd, h, COW_HDR, 0);
		if (n != COW_HDR || memcmp(h, COW_MAGIC, 8) ||
		    (uint64_t)st.st_size < COW_HDR + (mfs_get_le64(h + 24) + COW_BS - 1) / COW_BS / 8 + 1) {
			drop_unfinished(s, c, de->d_name, name);
			continue;
		}
		if (mfs_get_le64(h + 56) != ino)
			return -EBADMSG;
		c->full = mfs_get_le32(h + 8) & COW_FULL;
		c->mode = mfs_get_le32(h + 12);
		c->uid = mfs_get_le32(h + 16);
		c->gid = mfs_get_le32(h + 20);
		c->size = mfs_get_le64(h + 24);
		c->atime.tv_sec = (time_t)mfs_get_le64(h + 32);
		c->atime.tv_nsec = (long)(mfs_get_le32(h + 40) % 1000000000u);
		c->mtime.tv_nsec = (long)(mfs_get_le32(h + 44) % 1000000000u);
		c->mtime.tv_sec = (time_t)mfs_get_le64(h + 48);
		c->nblocks = (c->size + COW_BS - 1) / COW_BS;
		if (c->size > (UINT64_C(1) << 50) ||
		    (uint64_t)st.st_size != COW_HDR + c->nblocks / 8 + 1)
			return -EBADMSG;
		c->map = malloc(c->nblocks / 8 + 1);
		if (!c->map)
			return -ENOMEM;
		if (mfs_pread_all(c->map_fd, c->map, c->nblocks / 8 + 1, COW_HDR) !=
		    (ssize_t)(c->nblocks / 8 + 1))
			return -EBADMSG;
		cow_name((ino_t)ino, "xattr", name);
		n = (ssize_t)mfs_read_file(s->cow_fd, name, 1u << 24, &c->xattrs, &c->xattrs_len);
		if (n < 0 && n != -ENOENT)
			return (int)n;
		c->saved = true;
		if (fstat(c->data_fd, &st) == 0)
			atomic_fetch_add(&s->preserved, (uint64_t)st.st_blocks * 512);
	}
	return 0;
}

/* ================================================================ store */

static int snap_open_dirs(struct fs_snaps *S, struct fs_snap *s)
{
	s->dirfd = openat(S->store_fd, s->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (s->dirfd < 0)
		return -errno;
	s->tree_fd = openat(s->dirfd, TREE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	s->cow_fd = openat(s->dirfd, COW_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return s->tree_fd < 0 || s->cow_fd < 0 ? -errno : 0;
}

static struct fs_snap *snap_new(const char *name)
{
	struct fs_snap *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	memcpy(s->name, name, strnlen(name, FS_SNAP_NAME_MAX)); /* names are checked */
	s->dirfd = s->tree_fd = s->cow_fd = -1;
	return s;
}

static int meta_parse(const char *text, struct fs_snap *s)
{
	const char *p = strstr(text, "\nlsn="), *t = strstr(text, "\ntime_ns=");

	if (strncmp(text, "name=", 5) || !p || !t)
		return -EBADMSG;
	s->lsn = strtoull(p + 5, NULL, 10);
	s->time_ns = strtoull(t + 9, NULL, 10);
	return 0;
}

static void list_insert(struct fs_snaps *S, struct fs_snap *s)
{
	struct fs_snap **pp = &S->list;

	while (*pp && (*pp)->lsn <= s->lsn)
		pp = &(*pp)->next;
	s->next = *pp;
	*pp = s;
	atomic_fetch_add(&S->count, 1);
}

/*
 * A snapshot older than the data folder's last promotion (mirrorctl
 * promote's .mirrorfs/promoted) was in a mirror's data folder in between,
 * where mirrord writes in place into the inodes its tree links: it may hold
 * later rows. rejoin and promote remove such snapshots; this catches a
 * store that came through by another way (an older rejoin).
 */
static int load_one(struct fs_snaps *S, const char *name, uint64_t promoted_ns)
{
	_cleanup_free_ char *meta = NULL;
	struct fs_snap *s;
	struct stat st;
	size_t len;
	int r;

	s = snap_new(name);
	if (!s)
		return -ENOMEM;
	r = snap_open_dirs(S, s);
	if (r == 0)
		r = mfs_read_file(s->dirfd, META_FILE, 4096, &meta, &len);
	if (r == -ENOENT) {
		snap_free(s);
		log_warning("removing unfinished snapshot '%s'", name);
		return mfs_rm_tree(S->store_fd, name);
	}
	if (r == 0)
		r = meta_parse(meta, s);
	if (r == 0)
		r = scan_tree(S, s, s->tree_fd);
	if (r == 0)
		r = load_cow(S, s);
	if (r < 0) {
		log_error_errno(r, "snapshot '%s' cannot be loaded, it is marked broken: %m", name);
		mark_broken(s, r, "cannot load");
	}
	if (fstatat(s->dirfd, BROKEN_FILE, &st, 0) == 0)
		atomic_store(&s->broken, true);
	else if (r == 0 && promoted_ns > s->time_ns)
		mark_broken(s, -ESTALE, "the data folder was a mirror after it was taken (replay wrote "
					"into the files it shares) and promoted since");
	list_insert(S, s);
	log_info("snapshot '%s' at LSN %" PRIu64 "%s", name, s->lsn,
		 atomic_load(&s->broken) ? " (broken)" : "");
	return 0;
}

/*
 * Open the store (@create: make it first): JOURNAL_DIR/snapshots when the
 * journal folder is on the data's filesystem (the default, DATADIR/.mirrorfs,
 * is), else DATADIR/.mirrorfs/snapshots - hard links need one filesystem.
 */
static int store_open(struct fs *fs, bool create)
{
	struct fs_snaps *S = fs->snaps;
	struct stat jst;
	int base, r = 0;

	if (S->store_fd >= 0)
		return 0;
	if (fstat(fs_journal_dirfd(fs), &jst) == 0 && jst.st_dev == fs->root.dev) {
		base = fcntl(fs_journal_dirfd(fs), F_DUPFD_CLOEXEC, 3);
	} else {
		if (create && mkdirat(fs->data_fd, MFS_CTL_DIR, 0700) < 0 && errno != EEXIST)
			return log_error_errno(-errno, "cannot create '%s/%s': %m", fs->opt.data_dir,
					       MFS_CTL_DIR);
		base = openat(fs->data_fd, MFS_CTL_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (base < 0)
		return errno == ENOENT ? -ENOENT
				       : log_error_errno(-errno, "cannot open '%s/%s': %m",
							 fs->opt.data_dir, MFS_CTL_DIR);
	if (create && mkdirat(base, STORE_DIR, 0700) < 0 && errno != EEXIST)
		r = -errno;
	if (r == 0) {
		S->store_fd = openat(base, STORE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		r = S->store_fd < 0 ? -errno : 0;
	}
	close(base);
	if (r < 0 && r != -ENOENT)
		log_error_errno(r, "cannot open the snapshot store '%s/%s/%s': %m", fs->opt.data_dir,
				MFS_CTL_DIR, STORE_DIR);
	return r;
}

/* time_ns of DATADIR/.mirrorfs/promoted (mirrorctl promote), 0 if none. */
static uint64_t promoted_time(struct fs *fs)
{
	_cleanup_free_ char *text = NULL;
	const char *p;

	if (mfs_read_file(fs->data_fd, MFS_CTL_DIR "/promoted", 4096, &text, NULL) < 0)
		return 0;
	p = strstr(text, "\ntime_ns=");
	return p ? strtoull(p + 9, NULL, 10) : 0;
}

int fs_snap_open(struct fs *fs)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct fs_snaps *S = calloc(1, sizeof(*S));
	struct dirent *de;
	uint64_t promoted_ns = 0;
	int r = 0;

	if (!S)
		return -ENOMEM;
	fs->snaps = S;
	pthread_mutex_init(&S->mu, NULL);
	pthread_mutex_init(&S->sync_mu, NULL);
	pthread_mutex_init(&S->vmu, NULL);
	pthread_rwlock_init(&S->rw, NULL);
	atomic_store(&S->reflink, -1);
	S->store_fd = -1;
	S->hash = calloc(N_BUCKETS, sizeof(*S->hash));
	S->vhash = calloc(N_BUCKETS, sizeof(*S->vhash));
	if (!S->hash || !S->vhash)
		return -ENOMEM;
	r = store_open(fs, false);
	if (r == -ENOENT)
		return 0; /* no snapshot was ever taken */
	if (r < 0)
		return r;
	promoted_ns = promoted_time(fs);
	d = mfs_opendir_at(S->store_fd, ".");
	if (!d)
		return -errno;
	while ((de = mfs_readdir(d))) {
		if (de->d_name[0] == '.') {
			if (!strncmp(de->d_name, ".del-", 5) || !strncmp(de->d_name, ".new-", 5))
				(void)mfs_rm_tree(S->store_fd, de->d_name);
			continue;
		}
		if (!fs_snap_name_ok(de->d_name))
			continue;
		r = load_one(S, de->d_name, promoted_ns);
		if (r < 0)
			return r;
	}
	return 0;
}

void fs_snap_close(struct fs *fs)
{
	struct fs_snaps *S = fs->snaps;

	if (!S)
		return;
	(void)fs_snap_sync(fs);
	if (S->hash) {
		for (struct fs_snap *s = S->list; s; s = s->next)
			states_drop(S, s);
	}
	while (S->list) {
		struct fs_snap *s = S->list;
		S->list = s->next;
		snap_free(s);
	}
	while (S->dead) {
		struct fs_snap *s = S->dead;
		S->dead = s->next;
		snap_free(s);
	}
	for (size_t b = 0; S->vhash && b < N_BUCKETS; b++)
		while (S->vhash[b]) {
			struct fs_inode *i = S->vhash[b];
			S->vhash[b] = i->hnext;
			fs_snapview_free(i);
		}
	free(S->hash);
	free(S->vhash);
	closep(&S->store_fd);
	free(S);
	fs->snaps = NULL;
}

int fs_snap_sync(struct fs *fs)
{
	struct fs_snaps *S = fs->snaps;

	if (!S || atomic_load(&S->count) == 0)
		return 0;
	atomic_store(&S->new_files, true);
	sync_upto(S, atomic_fetch_add(&S->dirty_gen, 1) + 1);
	return 0;
}

/*
 * One state's part of fs_snap_sync_dirty(), under its entry's mutex (no
 * preservation meanwhile): its blocks durable, then a copy of the bits
 * that name them into *ret_map (malloc'd; NULL if the map is clean).
 */
static int sync_state_data(struct cow_state *c, uint8_t **ret_map)
{
	size_t len = (size_t)(c->nblocks / 8 + 1);

	*ret_map = NULL;
	if (c->data_dirty && c->data_fd >= 0 && fdatasync(c->data_fd) < 0)
		return -errno;
	c->data_dirty = false;
	if (!c->map_dirty || c->map_fd < 0)
		return 0;
	*ret_map = malloc(len);
	if (!*ret_map)
		return -ENOMEM;
	memcpy(*ret_map, c->map, len);
	c->map_dirty = false;
	return 0;
}

/* Write @map (from sync_state_data()) into @c's map file, durably. */
static int sync_state_map(struct cow_state *c, const uint8_t *map)
{
	int r = mfs_pwrite_all(c->map_fd, map, (size_t)(c->nblocks / 8 + 1), COW_HDR);

	if (r == 0 && fdatasync(c->map_fd) < 0)
		r = -errno;
	return r;
}

/* Both steps for every state of @e that needs them. */
static void sync_entry(struct cow_entry *e)
{
	for (struct cow_state *c = e->states; c; c = c->next) {
		_cleanup_free_ uint8_t *map = NULL;
		int r;

		pthread_rwlock_rdlock(&e->mu);
		r = sync_state_data(c, &map);
		pthread_rwlock_unlock(&e->mu);
		/* the bits only name durable blocks; a later preservation
		 * marks the map dirty again and waits for the next sync */
		if (r == 0 && map)
			r = sync_state_map(c, map);
		if (r < 0)
			mark_broken(c->snap, r, "cannot make preserved data durable");
	}
}

/*
 * Make every preservation up to generation @gen durable (blocks, then the
 * bits naming them). One sync at a time: a caller that waited finds its
 * preservation covered by the sync before it, as in a group commit. A
 * snapshot that cannot be kept is marked broken; the change goes on.
 */
static void sync_upto(struct fs_snaps *S, uint64_t gen)
{
	uint64_t g;

	pthread_mutex_lock(&S->sync_mu);
	if (S->synced_gen >= gen) {
		pthread_mutex_unlock(&S->sync_mu);
		return;
	}
	g = atomic_load(&S->dirty_gen); /* before the scan: all up to g flagged their state */
	pthread_rwlock_rdlock(&S->rw);
	for (size_t b = 0; b < N_BUCKETS; b++)
		for (struct cow_entry *e = S->hash[b]; e; e = e->hnext)
			sync_entry(e);
	if (atomic_exchange(&S->new_files, false))
		for (struct fs_snap *s = S->list; s; s = s->next)
			if (mfs_fsync_dir(s->cow_fd, NULL) < 0)
				mark_broken(s, -EIO, "cannot make its copy-on-write folder durable");
	pthread_rwlock_unlock(&S->rw);
	S->synced_gen = g;
	pthread_mutex_unlock(&S->sync_mu);
}

int fs_snap_sync_dirty(struct fs *fs)
{
	struct fs_snaps *S = fs->snaps;

	if (S)
		sync_upto(S, atomic_load(&S->dirty_gen));
	return 0;
}

/* ================================================================ create */

struct create_ctx {
	struct fs *fs;
	struct fs_snap *s;
	struct mfs_segw *old; /* the segment to seal after the window */
	uint64_t window_ns;
};

struct durable_job {
	struct fs *fs;
	struct create_ctx *x;
	int meta_fd;
	const char *tmp;
};

static int journal_sync_job(void *arg)
{
	struct durable_job *d = arg;

	return fs_journal_snapshot_sync(d->fs, d->x->old);
}

static int farm_sync_job(void *arg)
{
	return sync_tree(((struct durable_job *)arg)->x->s->tree_fd);
}

static int meta_sync_job(void *arg)
{
	return fsync(((struct durable_job *)arg)->meta_fd) < 0 ? -errno : 0;
}

/* The files the farm links hold changes not yet on disk (applied, never
 * fsynced): made durable now, with a mark at the snapshot's LSN. Else a
 * power cut could leave the snapshot's links on inodes whose contents were
 * lost, while recovery rebuilt the live files as new inodes (the replay of
 * a creation replaces what it finds): the snapshot showed empty files. */
static int mark_job(void *arg)
{
	struct durable_job *d = arg;

	return fs_journal_mark(d->fs, d->x->s->lsn);
}

static int folder_sync_job(void *arg)
{
	return fsync(((struct durable_job *)arg)->x->s->dirfd) < 0 ? -errno : 0;
}

static int journal_end_job(void *arg)
{
	struct durable_job *d = arg;

	return fs_journal_snapshot_end(d->fs, d->x->old);
}

static int publish_job(void *arg)
{
	struct durable_job *d = arg;
	int store_fd = d->fs->snaps->store_fd;

	int r;

	if (renameat(store_fd, d->tmp, store_fd, d->x->s->name) < 0)
		return -errno;
	r = mfs_fsync_dir(store_fd, NULL);
	if (r < 0) /* back to .new-NAME, which the failure removes */
		(void)renameat(store_fd, d->x->s->name, store_fd, d->tmp);
	return r;
}

/*
 * After the lock window (@r: how it went), make the snapshot durable and
 * publish it as NAME, in two rounds of fsyncs run at once (mfs_run_jobs:
 * their disk cache flushes merge; in turn, each one stalled the writers'
 * copy-on-write reads of blocks not in the page cache for as long as the
 * disk took to flush, 8 times per snapshot):
 *   1. the old segment's seal and the new one's header, the farm's
 *      folders, the meta file (written now), the snapshot's folder, and
 *      the backing files changed since the last checkpoint (mark_job);
 *   2. the sealed segment's move to closed/, and the rename of .new-NAME
 *      to NAME (only if round 1 all went well) with the store's fsync.
 * A crash at any point leaves .new-NAME, removed at mount, or NAME whole.
 * The journal's part runs in every case: it releases the checkpoint lock.
 */
static int create_durable(struct fs *fs, struct create_ctx *x, int r, const char *tmp,
			  const char *meta, size_t meta_len, bool crash)
{
	_cleanup_close_ int mfd = -EBADF;
	struct durable_job d = { fs, x, -1, tmp };
	struct mfs_job round1[] = { { journal_sync_job, &d, 0 },
				    { farm_sync_job, &d, 0 },
				    { meta_sync_job, &d, 0 },
				    { folder_sync_job, &d, 0 },
				    { mark_job, &d, 0 } };
	struct mfs_job round2[] = { { journal_end_job, &d, 0 }, { publish_job, &d, 0 } };
	int r2;

	if (r == 0) {
		mfd = openat(x->s->dirfd, META_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		r = mfd < 0 ? -errno : mfs_write_all(mfd, meta, meta_len);
		d.meta_fd = mfd;
	}
	/* a failed window: only the journal's part */
	r2 = mfs_run_jobs(round1, r == 0 ? ARRAY_SIZE(round1) : 1);
	r = r < 0 ? r : r2;
	if (crash) { /* MFS_FAULT_CRASH_IN_SNAPSHOT=sealed */
		log_warning("fault injection: crashing between a snapshot's two rounds of fsyncs");
		_exit(9);
	}
	r2 = mfs_run_jobs(round2, r == 0 ? ARRAY_SIZE(round2) : 1);
	return r < 0 ? r : r2;
}

/* Runs with every mutation held (fs_lock_quiesce): rotate, build the farm. */
static int create_locked(struct fs *fs, void *arg)
{
	struct create_ctx *x = arg;
	struct fs_snaps *S = fs->snaps;
	struct fs_snap *s = x->s;
	struct farm fm = { .fs = fs, .s = s };
	_cleanup_close_ int src = -EBADF, dst = -EBADF;
	int r;

	/* writes still pending belong to the snapshot: apply them before the
	 * farm links their files (a flush only if some came in since the one
	 * before the window) */
	r = fs_journal_sync(fs, 0);
	if (r < 0)
		return r;
	r = fs_journal_snapshot_begin(fs, s->name, &s->lsn, &x->old);
	if (r < 0)
		return r;
	s->time_ns = mfs_now_ns();
	src = openat(fs->data_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dst = openat(s->tree_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src < 0 || dst < 0)
		return -errno;
	pthread_rwlock_wrlock(&S->rw);
	r = farm_dir(&fm, src, dst, true, 0);
	if (r == 0) {
		struct stat st;
		copy_xattrs(src, dst);
		r = fstat(src, &st) < 0 ? -errno : copy_attrs(s->tree_fd, ".", &st, false);
	}
	if (r == 0)
		list_insert(S, s);
	else
		states_drop(S, s);
	pthread_rwlock_unlock(&S->rw);
	log_debug("snapshot '%s': %" PRIu64 " files, %" PRIu64 " folders linked", s->name,
		  fm.files, fm.dirs);
	return r;
}

static int snap_create(struct fs *fs, const char *name, char **ret)
{
	struct fs_snaps *S = fs->snaps;
	struct create_ctx x = { .fs = fs };
	char tmp[FS_SNAP_NAME_MAX + 8], meta[512], uuid[37];
	_cleanup_close_ int tdir = -EBADF;
	struct fs_snap *s;
	struct stat st;
	const char *crash;
	bool listed;
	int r, n;

	if (!fs_snap_name_ok(name))
		return asprintf(ret, "err %d bad snapshot name '%s' (1-%d of A-Z a-z 0-9 . _ -, "
				     "not starting with '.')\n",
				EINVAL, name, FS_SNAP_NAME_MAX);
	pthread_mutex_lock(&S->mu);
	r = store_open(fs, true);
	if (r < 0) {
		pthread_mutex_unlock(&S->mu);
		errno = -r;
		return asprintf(ret, "err %d cannot open the snapshot store: %m\n", -r);
	}
	if (fstatat(S->store_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		pthread_mutex_unlock(&S->mu);
		return asprintf(ret, "err %d snapshot '%s' exists\n", EEXIST, name);
	}
	snprintf(tmp, sizeof(tmp), ".new-%s", name);
	(void)mfs_rm_tree(S->store_fd, tmp);
	s = snap_new(name);
	r = s ? 0 : -ENOMEM;
	if (r == 0 && mkdirat(S->store_fd, tmp, 0700) < 0)
		r = -errno;
	if (r == 0 && (tdir = openat(S->store_fd, tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = -errno;
	if (r == 0 && (mkdirat(tdir, TREE_DIR, 0700) < 0 || mkdirat(tdir, COW_DIR, 0700) < 0))
		r = -errno;
	/* the unfinished snapshot's folders are durable before any link is
	 * made in them: after a power cut the mount finds .new-NAME and
	 * removes it, links and all (none left counted in a lost folder) */
	if (r == 0)
		r = mfs_fsync_dir(tdir, NULL);
	if (r == 0)
		r = mfs_fsync_dir(S->store_fd, NULL);
	if (r == 0) {
		s->dirfd = TAKE_FD(tdir);
		s->tree_fd = openat(s->dirfd, TREE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		s->cow_fd = openat(s->dirfd, COW_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (s->tree_fd < 0 || s->cow_fd < 0)
			r = -errno;
	}
	x.s = s;
	if (r == 0)
		r = fs_journal_sync(fs, 0); /* pending writes applied outside the window */
	if (r == 0)
		r = fs_lock_quiesce(fs, create_locked, &x, &x.window_ns);
	listed = r == 0;
	crash = x.old ? getenv("MFS_FAULT_CRASH_IN_SNAPSHOT") : NULL;
	if (crash && strcmp(crash, "sealed")) {
		log_warning("fault injection: crashing between segment switch and seal");
		_exit(9);
	}
	if (x.old) {
		fs_journal_uuid(fs, uuid);
		n = snprintf(meta, sizeof(meta),
			     "name=%s\nlsn=%" PRIu64 "\ntime_ns=%" PRIu64 "\ndataset=%s\n", name,
			     s->lsn, s->time_ns, uuid);
		r = create_durable(fs, &x, r, tmp, meta, (size_t)n, crash != NULL);
	}
	if (r < 0 && listed) {
		pthread_rwlock_wrlock(&S->rw);
		for (struct fs_snap **pp = &S->list; *pp; pp = &(*pp)->next)
			if (*pp == s) {
				*pp = s->next;
				atomic_fetch_sub(&S->count, 1);
				break;
			}
		states_drop(S, s);
		pthread_rwlock_unlock(&S->rw);
	}
	if (r < 0) {
		(void)mfs_rm_tree(S->store_fd, tmp);
		if (s)
			snap_free(s);
		pthread_mutex_unlock(&S->mu);
		errno = -r;
		return asprintf(ret, "err %d cannot create snapshot '%s': %m\n", -r, name);
	}
	pthread_mutex_unlock(&S->mu);
	log_info("snapshot '%s' at LSN %" PRIu64 ", writers held %" PRIu64 " us", name, s->lsn,
		 x.window_ns / 1000);
	return asprintf(ret, "ok %s %" PRIu64 " %" PRIu64 "\n", name, s->lsn, x.window_ns / 1000);
}

static int snap_delete(struct fs *fs, const char *name, char **ret)
{
	struct fs_snaps *S = fs->snaps;
	char tmp[FS_SNAP_NAME_MAX + 8];
	struct fs_snap *s = NULL;
	int r = 0;

	pthread_mutex_lock(&S->mu);
	pthread_rwlock_wrlock(&S->rw);
	for (struct fs_snap **pp = &S->list; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->name, name)) {
			s = *pp;
			*pp = s->next;
			atomic_fetch_sub(&S->count, 1);
			break;
		}
	if (s) {
		states_drop(S, s);
		s->dead = true;
		s->next = S->dead;
		S->dead = s;
	}
	pthread_rwlock_unlock(&S->rw);
	if (!s) {
		pthread_mutex_unlock(&S->mu);
		return asprintf(ret, "err %d no snapshot '%s'\n", ENOENT, name);
	}
	snprintf(tmp, sizeof(tmp), ".del-%s", name);
	if (renameat(S->store_fd, name, S->store_fd, tmp) < 0)
		r = -errno;
	if (r == 0)
		r = mfs_rm_tree(S->store_fd, tmp);
	if (r == 0)
		r = mfs_fsync_dir(S->store_fd, NULL);
	pthread_mutex_unlock(&S->mu);
	if (r < 0) {
		errno = -r;
		return asprintf(ret, "err %d snapshot '%s' is gone but its store was not removed: "
				     "%m\n",
				-r, name);
	}
	log_info("snapshot '%s' deleted", name);
	if (fs->se) /* the kernel forgets .mirrorfs/snapshots/NAME now */
		(void)fuse_lowlevel_notify_inval_entry(
			fs->se, (fuse_ino_t)(uintptr_t)fs->vnodes[FS_VK_SNAPS], name, strlen(name));
	return asprintf(ret, "ok\n");
}

/* The snapshots as a JSON array (malloc'd). */
int fs_snap_json(struct fs *fs, char **ret)
{
	struct fs_snaps *S = fs->snaps;
	size_t cap = 64, len = 0;
	char *out = malloc(cap);

	if (!out)
		return -ENOMEM;
	out[len++] = '[';
	if (S)
		pthread_rwlock_rdlock(&S->rw);
	for (struct fs_snap *s = S ? S->list : NULL; s; s = s->next) {
		char item[FS_SNAP_NAME_MAX + 160];
		int n = snprintf(item, sizeof(item),
				 "%s{\"name\":\"%s\",\"lsn\":%" PRIu64 ",\"time_ns\":%" PRIu64
				 ",\"preserved_bytes\":%" PRIu64 ",\"state\":\"%s\"}",
				 s == S->list ? "" : ",", s->name, s->lsn, s->time_ns,
				 atomic_load(&s->preserved),
				 atomic_load(&s->broken) ? "broken" : "ok");
		if (len + (size_t)n + 2 > cap) {
			char *nn = realloc(out, cap = (cap + (size_t)n) * 2);
			if (!nn) {
				free(out);
				out = NULL;
				break;
			}
			out = nn;
		}
		memcpy(out + len, item, (size_t)n);
		len += (size_t)n;
	}
	if (S)
		pthread_rwlock_unlock(&S->rw);
	if (!out)
		return -ENOMEM;
	out[len++] = ']';
	out[len] = 0;
	*ret = out;
	return 0;
}

int fs_snap_ctl(struct fs *fs, const char *cmd, char **ret)
{
	const char *arg = cmd + strlen("snapshot");

	if (!fs->snaps)
		return asprintf(ret, "err %d snapshots are unavailable\n", ENOTSUP);
	while (*arg == ' ')
		arg++;
	if (!strncmp(arg, "create ", 7)) {
		uint64_t t0 = mfs_mono_ns();
		int r = snap_create(fs, arg + 7, ret);

		atomic_store(&fs->metrics.snap_ns, mfs_mono_ns() - t0);
		return r;
	}
	if (!strncmp(arg, "delete ", 7))
		return snap_delete(fs, arg + 7, ret);
	if (!strcmp(arg, "list")) {
		_cleanup_free_ char *json = NULL;
		if (fs_snap_json(fs, &json) < 0)
			return asprintf(ret, "err %d out of memory\n", ENOMEM);
		return asprintf(ret, "ok %s\n", json);
	}
	return asprintf(ret, "err %d usage: snapshot create|delete NAME, snapshot list\n", EINVAL);
}

/* ================================================================ view support */

struct fs_snap *fs_snap_find(struct fs *fs, const char *name)
{
	struct fs_snaps *S = fs->snaps;
	struct fs_snap *s;

	if (!S)
		return NULL;
	pthread_rwlock_rdlock(&S->rw);
	for (s = S->list; s; s = s->next)
		if (!strcmp(s->name, name))
			break;
	pthread_rwlock_unlock(&S->rw);
	return s;
}

int fs_snap_names(struct fs *fs, char ***ret, size_t *ret_n)
{
	struct fs_snaps *S = fs->snaps;
	size_t n = 0, cap = S ? atomic_load(&S->count) + 1 : 1;
	char **names = calloc(cap, sizeof(*names));

	if (!names)
		return -ENOMEM;
	if (S) {
		pthread_rwlock_rdlock(&S->rw);
		for (struct fs_snap *s = S->list; s && n < cap; s = s->next)
			names[n++] = strdup(s->name);
		pthread_rwlock_unlock(&S->rw);
	}
	*ret = names;
	*ret_n = n;
	return 0;
}

int fs_snap_tree_fd(struct fs_snap *s)
{
	return s->tree_fd;
}

uint64_t fs_snap_lsn(struct fs_snap *s)
{
	return s->lsn;
}

int fs_snap_check(struct fs_snap *s)
{
	if (s->dead)
		return -ESTALE;
	return atomic_load(&s->broken) ? -EIO : 0;
}

void fs_snap_vlock(struct fs *fs, bool lock)
{
	if (lock)
		pthread_mutex_lock(&fs->snaps->vmu);
	else
		pthread_mutex_unlock(&fs->snaps->vmu);
}

struct fs_inode **fs_snap_vbucket(struct fs *fs, const struct fs_snap *s, ino_t ino)
{
	return &fs->snaps->vhash[ebucket((ino_t)((uint64_t)ino ^ (uintptr_t)s))];
}

/*
 * A regular file's attributes in snapshot @s: those saved at its first
 * change if it changed, else the link's (@st, from fstat of the link).
 */
int fs_snap_file_stat(struct fs *fs, struct fs_snap *s, struct stat *st)
{
	struct fs_snaps *S = fs->snaps;
	struct cow_entry *e;
	struct cow_state *c;
	int r = fs_snap_check(s);

	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&S->rw);
	e = entry_find(S, st->st_ino);
	if (e) {
		pthread_rwlock_rdlock(&e->mu);
		c = state_of(e, s);
		if (c && c->saved) {
			st->st_mode = c->mode;
			st->st_uid = c->uid;
			st->st_gid = c->gid;
			st->st_size = (off_t)c->size;
			st->st_atim = c->atime;
			st->st_mtim = c->mtime;
			st->st_ctim = c->mtime;
			st->st_blocks = (blkcnt_t)((c->size + 511) / 512);
		}
		st->st_nlink = c ? c->links : 1;
		pthread_rwlock_unlock(&e->mu);
	} else {
		st->st_nlink = 1;
	}
	pthread_rwlock_unlock(&S->rw);
	return 0;
}

void fs_snap_fix_nlink(struct fs *fs, struct stat *st)
{
	struct fs_snaps *S = fs->snaps;
	struct cow_entry *e;
	nlink_t held = 0;

	if (!S || !S_ISREG(st->st_mode) || atomic_load(&S->count) == 0)
		return;
	pthread_rwlock_rdlock(&S->rw);
	e = entry_find(S, st->st_ino);
	if (e) {
		pthread_rwlock_rdlock(&e->mu);
		for (struct cow_state *c = e->states; c; c = c->next)
			held += c->links;
		pthread_rwlock_unlock(&e->mu);
	}
	pthread_rwlock_unlock(&S->rw);
	st->st_nlink = st->st_nlink > held ? st->st_nlink - held : 0;
}

/*
 * getxattr (@name) or listxattr (@name NULL) of regular file @ino in @s:
 * from the saved blob if it changed, else -EAGAIN (read the link).
 * Returns the size, -ENODATA, -ERANGE.
 */
ssize_t fs_snap_file_xattr(struct fs *fs, struct fs_snap *s, ino_t ino, const char *name,
			   char *buf, size_t size)
{
	struct fs_snaps *S = fs->snaps;
	struct cow_entry *e;
	struct cow_state *c;
	ssize_t r = -EAGAIN;

	pthread_rwlock_rdlock(&S->rw);
	e = entry_find(S, ino);
	if (e)
		pthread_rwlock_rdlock(&e->mu);
	c = state_of(e, s);
	if (c && c->saved) {
		const char *n, *v;
		size_t pos = 0, nl, vl, total = 0;
		r = name ? -ENODATA : 0;
		while (blob_next(c->xattrs, c->xattrs_len, &pos, &n, &nl, &v, &vl) > 0) {
			if (!name) {
				if (size && total + nl + 1 <= size) {
					memcpy(buf + total, n, nl);
					buf[total + nl] = 0;
				}
				total += nl + 1;
				r = size && (size_t)total > size ? -ERANGE : (ssize_t)total;
			} else if (strlen(name) == nl && !memcmp(name, n, nl)) {
				r = size && vl > size ? -ERANGE : (ssize_t)vl;
				if (size && vl <= size)
					memcpy(buf, v, vl);
				break;
			}
		}
	}
	if (e)
		pthread_rwlock_unlock(&e->mu);
	pthread_rwlock_unlock(&S->rw);
	return r;
}

/*
 * Read of an unchanged file: reply straight from the link (spliced, as
 * live reads are) while holding the entry's mutex, so no preservation and
 * change of a block can come in between. Returns 1 if it replied, 0 if
 * the file changed since the snapshot (use fs_snap_file_read()).
 */
int fs_snap_file_reply(struct fs *fs, struct fs_snap *s, ino_t ino, int fd, fuse_req_t req,
		       size_t size, off_t off)
{
	struct fs_snaps *S = fs->snaps;
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	struct cow_entry *e;
	struct cow_state *c;
	int done = 0;

	if (fs_snap_check(s) < 0)
		return 0;
	pthread_rwlock_rdlock(&S->rw);
	e = entry_find(S, ino);
	if (e)
		pthread_rwlock_rdlock(&e->mu);
	c = state_of(e, s);
	if (!c || !c->saved) {
		buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		buf.buf[0].fd = fd;
		buf.buf[0].pos = off;
		fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
		done = 1;
	}
	if (e)
		pthread_rwlock_unlock(&e->mu);
	pthread_rwlock_unlock(&S->rw);
	return done;
}

/*
 * A changed file is read from two files: the link whole (sequential, so
 * the kernel reads ahead of it) and the preserved blocks laid over it.
 * Those are scattered runs, each a synchronous read from disk when it is
 * needed: a cold copy of a file with 10% of it preserved ran at 0.6x the
 * live file. A reader going forward gets the preserved runs of the next
 * RA_WINDOW announced to the kernel (POSIX_FADV_WILLNEED) half a window
 * before it gets there; a reader that jumps announces nothing.
 */
#define RA_WINDOW (16u << 20)

static void read_ahead(struct cow_state *c, uint64_t off, size_t size, _Atomic uint64_t *ra_end)
{
	uint64_t mark, from, to;

	if (!ra_end || c->data_fd < 0)
		return;
	mark = atomic_load(ra_end);
	if (off > mark) { /* a jump: no stream to read ahead of yet */
		(void)atomic_compare_exchange_strong(ra_end, &mark, off + size);
		return;
	}
	if (off + size + RA_WINDOW / 2 <= mark || mark >= c->size)
		return;
	from = mark;
	to = MFS_MIN(from + RA_WINDOW, c->size);
	if (!atomic_compare_exchange_strong(ra_end, &mark, to))
		return; /* another reader of this file announced it */
	/* run by run: announcing the holes would fill the cache with zeros */
	for (uint64_t b = from / COW_BS, e = (to + COW_BS - 1) / COW_BS; b < e;) {
		uint64_t r;
		if (!bit(c->map, b)) {
			b = run_end(c->map, b, e, false);
			continue;
		}
		r = run_end(c->map, b, e, true);
		(void)posix_fadvise(c->data_fd, (off_t)(b * COW_BS), (off_t)((r - b) * COW_BS),
				    POSIX_FADV_WILLNEED);
		b = r;
	}
}

ssize_t fs_snap_file_read(struct fs *fs, struct fs_snap *s, ino_t ino, int fd, char *buf,
			  size_t size, uint64_t off, _Atomic uint64_t *ra_end)
{
	struct fs_snaps *S = fs->snaps;
	struct cow_entry *e;
	struct cow_state *c;
	ssize_t done = 0;
	int r = fs_snap_check(s);

	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&S->rw);
	e = entry_find(S, ino);
	if (e)
		pthread_rwlock_rdlock(&e->mu);
	c = state_of(e, s);
	if (!c || !c->saved) {
		done = mfs_pread_all(fd, buf, size, off);
	} else if (off < c->size && c->full) { /* a whole clone */
		done = pread_zeros(c->data_fd, buf, MFS_MIN(size, c->size - off), off);
	} else if (off < c->size) {
		uint64_t end = MFS_MIN(off + size, c->size), eb = (end + COW_BS - 1) / COW_BS;
		/* The link whole, the preserved blocks laid over it: reads of the
		 * link stay sequential, so the kernel's read-ahead keeps up. Past
		 * the link's end (cut since), every block is preserved. */
		done = pread_zeros(fd, buf, end - off, off);
		read_ahead(c, off, size, ra_end);
		for (uint64_t b = off / COW_BS; done >= 0 && b < eb;) {
			uint64_t run, from, to;
			ssize_t n;
			if (!bit(c->map, b)) {
				b = run_end(c->map, b, eb, false);
				continue;
			}
			run = run_end(c->map, b, eb, true);
			from = MFS_MAX(b * COW_BS, off);
			to = MFS_MIN(run * COW_BS, end);
			n = pread_zeros(c->data_fd, buf + (from - off), to - from, from);
			if (n < 0)
				done = n;
			b = run;
		}
	}
	if (e)
		pthread_rwlock_unlock(&e->mu);
	pthread_rwlock_unlock(&S->rw);
	return done;
}
