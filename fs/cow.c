/* SPDX-License-Identifier: MIT */
/*
 * cow.c - copy-on-write of the files snapshots hold: the write side
 * (preserve before a change), its durability, the maps' load at mount,
 * and the live link count without the snapshots' links. The read side
 * (what a snapshot view reads of a regular file) is cowread.c.
 *
 * A hard link shares the inode with the live file, so
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
 */
#include "snap_i.h"

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

#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/xattr.h"

struct cow_entry *fs_cow_find(struct fs_snaps *S, ino_t ino)
{
	for (struct cow_entry *e = S->hash[fs_cow_bucket(ino)]; e; e = e->hnext)
		if (e->ino == ino)
			return e;
	return NULL;
}

struct cow_state *fs_cow_state(struct cow_entry *e, struct fs_snap *s)
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

void fs_snap_mark_broken(struct fs_snap *s, int err, const char *what)
{
	char buf[256], desc[128];
	const char *d = strerror_r(-err, desc, sizeof(desc));
	int n;

	if (atomic_exchange(&s->broken, true))
		return;
	n = snprintf(buf, sizeof(buf), "%s: %s\n", what, d);
	log_error("snapshot '%s' is broken and no longer kept: %s: %s", s->name, what, d);
	(void)mfs_replace_file(s->dirfd, BROKEN_FILE, buf, (size_t)n, 0600);
}

/* Add a state of @s for inode @ino (rw held exclusively). */
int fs_cow_add(struct fs_snaps *S, struct fs_snap *s, ino_t ino, struct cow_state **ret)
{
	struct cow_entry *e = fs_cow_find(S, ino);
	struct cow_state *c;

	if (e && (c = fs_cow_state(e, s))) {
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
		e->hnext = S->hash[fs_cow_bucket(ino)];
		S->hash[fs_cow_bucket(ino)] = e;
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
void fs_cow_drop(struct fs_snaps *S, struct fs_snap *s)
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

static void cow_name(ino_t ino, const char *ext, char out[64])
{
	snprintf(out, 64, "%" PRIu64 ".%s", (uint64_t)ino, ext);
}

/* The file changes for the first time since @c's snapshot: save its
 * attributes (from @st) and create its cow files. */
static int state_save(struct cow_state *c, ino_t ino, const struct stat *st, int src)
{
	struct mfs_cowmap_hdr hdr = { .mode = st->st_mode, .uid = st->st_uid, .gid = st->st_gid,
				      .size = (uint64_t)st->st_size, .atime = st->st_atim,
				      .mtime = st->st_mtim, .ino = (uint64_t)ino };
	uint8_t h[COW_HDR];
	char name[64];
	int r;

	r = mfs_xattr_blob(src, &c->xattrs, &c->xattrs_len);
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
	c->nblocks = mfs_cowmap_nblocks(c->size);
	c->map = calloc(1, mfs_cowmap_bytes(c->size));
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
	mfs_cowmap_hdr_encode(&hdr, h);
	r = mfs_pwrite_all(c->map_fd, h, COW_HDR, 0);
	if (r == 0)
		r = mfs_pwrite_all(c->map_fd, c->map, mfs_cowmap_bytes(c->size), COW_HDR);
	if (r < 0)
		return r;
	c->saved = true;
	c->map_dirty = true;
	return 0;
}

/* pread of @len bytes at @off, zeros past the end of the file. */
ssize_t fs_cow_pread(int fd, char *buf, size_t len, uint64_t off)
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
	mfs_cowmap_set(c->map, b0, b1);
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
		ssize_t got = fs_cow_pread(src, buf, n, off);
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
		if (mfs_cowmap_test(c->map, b)) {
			b++;
			continue;
		}
		run = mfs_cowmap_run_end(c->map, b, b1, false);
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

void fs_snap_cow(struct fs *fs, struct fs_inode *i, uint64_t off, uint64_t len)
{
	struct fs_snaps *S = fs->snaps;
	struct copy_buf cb = { 0 };
	struct cow_entry *e;
	struct stat st;
	bool have_st = false, did = false;

	if (!S || atomic_load(&S->count) == 0 || i->vkind != FS_VK_NONE || i == &fs->root)
		return;
	pthread_rwlock_rdlock(&S->rw);
	e = fs_cow_find(S, i->ino);
	if (!e) {
		pthread_rwlock_unlock(&S->rw);
		return;
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
			fs_snap_mark_broken(c->snap, r, "cannot preserve a changed file");
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

/* Load map file @map of inode @ino into @c. Returns 0 (also when the map
 * was unfinished and dropped) or -errno. */
static int load_map(struct fs_snap *s, struct cow_state *c, uint64_t ino, const char *map)
{
	struct mfs_cowmap_hdr h;
	uint8_t raw[COW_HDR];
	char name[64];
	struct stat st;
	ssize_t n;

	c->map_fd = openat(s->cow_fd, map, O_RDWR | O_CLOEXEC);
	cow_name((ino_t)ino, "data", name);
	c->data_fd = openat(s->cow_fd, name, O_RDWR | O_CLOEXEC);
	if (c->map_fd < 0 || c->data_fd < 0 || fstat(c->map_fd, &st) < 0)
		return -errno;
	n = mfs_pread_all(c->map_fd, raw, COW_HDR, 0);
	if (n != COW_HDR || mfs_cowmap_hdr_decode(raw, &h) < 0 ||
	    (uint64_t)st.st_size < COW_HDR + mfs_cowmap_bytes(h.size)) {
		drop_unfinished(s, c, map, name);
		return 0;
	}
	if (h.ino != ino)
		return -EBADMSG;
	c->full = h.flags & MFS_COWMAP_F_FULL;
	c->mode = h.mode;
	c->uid = h.uid;
	c->gid = h.gid;
	c->size = h.size;
	c->atime = h.atime;
	c->mtime = h.mtime;
	c->nblocks = mfs_cowmap_nblocks(c->size);
	if (c->size > MFS_COWMAP_SIZE_MAX ||
	    (uint64_t)st.st_size != COW_HDR + mfs_cowmap_bytes(c->size))
		return -EBADMSG;
	c->map = malloc(mfs_cowmap_bytes(c->size));
	if (!c->map)
		return -ENOMEM;
	if (mfs_pread_all(c->map_fd, c->map, mfs_cowmap_bytes(c->size), COW_HDR) !=
	    (ssize_t)mfs_cowmap_bytes(c->size))
		return -EBADMSG;
	cow_name((ino_t)ino, "xattr", name);
	n = (ssize_t)mfs_read_file(s->cow_fd, name, 1u << 24, &c->xattrs, &c->xattrs_len);
	if (n < 0 && n != -ENOENT)
		return (int)n;
	c->saved = true;
	if (fstat(c->data_fd, &st) == 0)
		atomic_fetch_add(&s->preserved, (uint64_t)st.st_blocks * 512);
	return 0;
}

/* Load NAME/cow/INO.map files into the states of @s (mount). */
int fs_cow_load(struct fs_snaps *S, struct fs_snap *s)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r = mfs_dir_open(s->cow_fd, ".", &d);

	if (r < 0)
		return r;
	while ((de = mfs_readdir(d))) {
		char *end;
		unsigned long long ino = strtoull(de->d_name, &end, 10);
		struct cow_state *c;

		if (strcmp(end, ".map") || end == de->d_name)
			continue;
		c = fs_cow_state(fs_cow_find(S, (ino_t)ino), s);
		if (!c || c->saved)
			continue;
		r = load_map(s, c, ino, de->d_name);
		if (r < 0)
			return r;
	}
	return 0;
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
	size_t len = mfs_cowmap_bytes(c->size);

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
	int r = mfs_pwrite_all(c->map_fd, map, mfs_cowmap_bytes(c->size), COW_HDR);

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
			fs_snap_mark_broken(c->snap, r, "cannot make preserved data durable");
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
				fs_snap_mark_broken(s, -EIO,
						    "cannot make its copy-on-write folder durable");
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

void fs_snap_fix_nlink(struct fs *fs, struct stat *st)
{
	struct fs_snaps *S = fs->snaps;
	struct cow_entry *e;
	nlink_t held = 0;

	if (!S || !S_ISREG(st->st_mode) || atomic_load(&S->count) == 0)
		return;
	pthread_rwlock_rdlock(&S->rw);
	e = fs_cow_find(S, st->st_ino);
	if (e) {
		pthread_rwlock_rdlock(&e->mu);
		for (struct cow_state *c = e->states; c; c = c->next)
			held += c->links;
		pthread_rwlock_unlock(&e->mu);
	}
	pthread_rwlock_unlock(&S->rw);
	st->st_nlink = st->st_nlink > held ? st->st_nlink - held : 0;
}
