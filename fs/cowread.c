/* SPDX-License-Identifier: MIT */
/*
 * cowread.c - the read side of copy-on-write (cow.c): a regular file as
 * snapshot @s sees it, for the views (snapview.c). Its attributes and
 * extended attributes are those saved at its first change, if it changed;
 * its contents are the link (the live inode) with the preserved blocks
 * laid over it. Readers hold the entry's mutex, so a block is never read
 * half-preserved.
 */
#include "snap_i.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/xattr.h"

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
	e = fs_cow_find(S, st->st_ino);
	if (e) {
		pthread_rwlock_rdlock(&e->mu);
		c = fs_cow_state(e, s);
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
	e = fs_cow_find(S, ino);
	if (e)
		pthread_rwlock_rdlock(&e->mu);
	c = fs_cow_state(e, s);
	if (c && c->saved) {
		struct mfs_xattr_ent x;
		size_t pos = 0, total = 0;
		r = name ? -ENODATA : 0;
		while (mfs_xattr_blob_next(c->xattrs, c->xattrs_len, &pos, &x) > 0) {
			if (!name) {
				if (size && total + x.name_len + 1 <= size) {
					memcpy(buf + total, x.name, x.name_len);
					buf[total + x.name_len] = 0;
				}
				total += x.name_len + 1;
				r = size && (size_t)total > size ? -ERANGE : (ssize_t)total;
			} else if (strlen(name) == x.name_len &&
				   !memcmp(name, x.name, x.name_len)) {
				r = size && x.value_len > size ? -ERANGE : (ssize_t)x.value_len;
				if (size && x.value_len <= size)
					memcpy(buf, x.value, x.value_len);
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
	e = fs_cow_find(S, ino);
	if (e)
		pthread_rwlock_rdlock(&e->mu);
	c = fs_cow_state(e, s);
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
		if (!mfs_cowmap_test(c->map, b)) {
			b = mfs_cowmap_run_end(c->map, b, e, false);
			continue;
		}
		r = mfs_cowmap_run_end(c->map, b, e, true);
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
	e = fs_cow_find(S, ino);
	if (e)
		pthread_rwlock_rdlock(&e->mu);
	c = fs_cow_state(e, s);
	if (!c || !c->saved) {
		done = mfs_pread_all(fd, buf, size, off);
	} else if (off < c->size && c->full) { /* a whole clone */
		done = fs_cow_pread(c->data_fd, buf, MFS_MIN(size, c->size - off), off);
	} else if (off < c->size) {
		uint64_t end = MFS_MIN(off + size, c->size), eb = (end + COW_BS - 1) / COW_BS;
		/* The link whole, the preserved blocks laid over it: reads of the
		 * link stay sequential, so the kernel's read-ahead keeps up. Past
		 * the link's end (cut since), every block is preserved. */
		done = fs_cow_pread(fd, buf, end - off, off);
		read_ahead(c, off, size, ra_end);
		for (uint64_t b = off / COW_BS; done >= 0 && b < eb;) {
			uint64_t run, from, to;
			ssize_t n;
			if (!mfs_cowmap_test(c->map, b)) {
				b = mfs_cowmap_run_end(c->map, b, eb, false);
				continue;
			}
			run = mfs_cowmap_run_end(c->map, b, eb, true);
			from = MFS_MAX(b * COW_BS, off);
			to = MFS_MIN(run * COW_BS, end);
			n = fs_cow_pread(c->data_fd, buf + (from - off), to - from, from);
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
