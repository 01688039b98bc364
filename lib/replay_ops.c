/* SPDX-License-Identifier: MIT */
/*
 * replay_ops.c - what applying each record means (see replay.c,
 * "Idempotency"); the checks come first (replay_check.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>

#include <liburing.h>

#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/path.h"
#include "mirrorfs/segment.h"
#include "mirrorfs/sigbus.h"
#include "replay_i.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

/* ================================================================ namespace helpers */

/* chmod without following a symlink (a symlink's mode means nothing: done). */
int replay_chmod_nofollow(int dirfd, const char *name, mode_t mode)
{
	struct stat st;

	if (syscall(SYS_fchmodat2, dirfd, name, mode, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno == EOPNOTSUPP)
		return 0; /* a symlink */
	if (errno != ENOSYS)
		return -errno;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode))
		return 0;
	return fchmodat(dirfd, name, mode, 0) < 0 ? -errno : 0;
}

int replay_chown_nofollow(int dirfd, const char *name, uint32_t uid, uint32_t gid)
{
	if (uid == UINT32_MAX && gid == UINT32_MAX)
		return 0;
	if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno == EPERM && geteuid() != 0)
		return 0;
	return -errno;
}

/* Owner, then mode (chown clears set-id bits). */
int replay_set_attrs(int dirfd, const char *name, uint32_t uid, uint32_t gid, uint32_t mode)
{
	int e = replay_chown_nofollow(dirfd, name, uid, gid);

	return e < 0 ? e : replay_chmod_nofollow(dirfd, name, mode & 07777);
}

/* ================================================================ operations */

static int op_write(struct mfs_replay *r, const struct mfs_rec *rec)
{
	const char *src;
	struct rfile *f;
	int e;

	r->st.writes++;
	r->st.write_bytes += rec->data_len;
	e = replay_file_get(r, rec->path, &f);
	if (replay_is_gone(e))
		return replay_skipped(r, rec, e);
	if (e < 0)
		return e;
	f->touched = true;
	if (rec->data_len == 0)
		return 0;
	if (r->naive || (!r->ref && rec->data_len >= DIRECT_MIN && !replay_file_busy(f))) {
		/* one pwrite per record (naive), or large and the file idle: no copy */
		r->st.io_writes++;
		r->st.io_bytes += rec->data_len;
		return mfs_pwrite_all(f->fd, rec->data, rec->data_len, rec->offset);
	}
	src = r->ref ? rec->data : replay_arena_copy(r, rec->data, rec->data_len);
	if (!src)
		return -ENOMEM;
	e = replay_log_add(r, f, rec->offset, src, rec->data_len);
	if (e < 0)
		return e;
	if (r->pending_writes >= BATCH_WRITES || (!r->applying && replay_hold_full(r)))
		return replay_drain(r);
	return 0;
}

/*
 * fallocate @rec on @fd. An allocation that fails (ENOSPC halfway) is
 * removed: the size is set back, which frees what was allocated past it
 * (what a failed call allocated inside the old size reads as zeros, as
 * before, only its space stays taken).
 */
int replay_falloc(int fd, const struct mfs_rec *rec)
{
	struct stat st;
	int e;

	if ((rec->mode & FALLOC_FL_PUNCH_HOLE) || fstat(fd, &st) < 0)
		return fallocate(fd, (int)rec->mode, (off_t)rec->offset, (off_t)rec->length) < 0 ?
			       -errno : 0;
	if (fallocate(fd, (int)rec->mode, (off_t)rec->offset, (off_t)rec->length) == 0)
		return 0;
	e = -errno;
	if (ftruncate(fd, st.st_size) < 0)
		log_debug_errno(-errno, "replay: removing a failed allocation: %m");
	return e;
}

/* Truncate and fallocate: the file's pending writes land first. */
static int op_resize(struct mfs_replay *r, const struct mfs_rec *rec)
{
	struct rfile *f;
	int e;

	e = replay_file_get(r, rec->path, &f);
	if (replay_is_gone(e))
		return replay_skipped(r, rec, e);
	if (e < 0)
		return e;
	if (replay_file_busy(f) && (e = replay_drain(r)) < 0)
		return e;
	f->touched = true;
	if (rec->type == MFS_REC_TRUNCATE)
		return ftruncate(f->fd, (off_t)rec->length) < 0 ? -errno : 0;
	return replay_falloc(f->fd, rec);
}

/* Drain if the object at @dirfd/@name is a file with writes pending. */
static int order_after_writes(struct mfs_replay *r, int dirfd, const char *name)
{
	struct stat st;
	struct rfile *f;

	if (!r->queue)
		return 0;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	f = replay_inode_find(r, st.st_dev, st.st_ino);
	return f && replay_file_busy(f) ? replay_drain(r) : 0;
}

static int xattr_apply(int fd, const struct mfs_rec *rec)
{
	int e;

	if (rec->type == MFS_REC_SETXATTR)
		e = fsetxattr(fd, rec->path2, rec->data, rec->data_len, 0);
	else
		e = fremovexattr(fd, rec->path2);
	return e < 0 ? -errno : 0;
}

/* xattrs on an O_PATH fd go through its /proc magic link. */
static int xattr_apply_path(int pfd, const struct mfs_rec *rec)
{
	char proc[64];
	int e;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	if (rec->type == MFS_REC_SETXATTR)
		e = setxattr(proc, rec->path2, rec->data, rec->data_len, 0);
	else
		e = removexattr(proc, rec->path2);
	return e < 0 ? -errno : 0;
}

static int op_xattr(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int pfd = -EBADF, fd = -EBADF;
	struct stat st, st2;
	int e;

	pfd = mfs_path_open(r->rootfd, rec->path, O_PATH, 0);
	if (replay_is_gone(pfd))
		return replay_skipped(r, rec, pfd);
	if (pfd < 0)
		return pfd;
	if (fstat(pfd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		fd = mfs_path_open(r->rootfd, rec->path, O_RDONLY | O_NOCTTY, 0);
		if (fd >= 0 && (fstat(fd, &st2) < 0 || st2.st_ino != st.st_ino))
			return -ESTALE;
	}
	e = fd >= 0 ? xattr_apply(fd, rec) : xattr_apply_path(pfd, rec);
	if (e == -ENODATA && rec->type == MFS_REC_REMOVEXATTR)
		return replay_skipped(r, rec, e);
	if (!e && S_ISREG(st.st_mode)) {
		struct rfile *f = replay_inode_find(r, st.st_dev, st.st_ino);

		if (f)
			f->touched = true;
	}
	return e;
}

/* CHMOD, CHOWN, UTIMENS: by name, never following the last component. */
static int op_attr(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int dfd = -EBADF;
	struct timespec ts[2];
	const char *base;
	int e;

	dfd = mfs_path_open_parent(r->rootfd, rec->path, &base);
	if (replay_is_gone(dfd))
		return replay_skipped(r, rec, dfd);
	if (dfd < 0)
		return dfd;
	switch (rec->type) {
	case MFS_REC_CHMOD:
		e = replay_chmod_nofollow(dfd, base, rec->mode & 07777);
		break;
	case MFS_REC_CHOWN:
		e = replay_chown_nofollow(dfd, base, rec->uid, rec->gid);
		break;
	default:
		e = order_after_writes(r, dfd, base);
		if (e < 0)
			break;
		ts[0] = (struct timespec){ .tv_sec = rec->atime_sec, .tv_nsec = rec->atime_nsec };
		ts[1] = (struct timespec){ .tv_sec = rec->mtime_sec, .tv_nsec = rec->mtime_nsec };
		e = utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
		break;
	}
	if (replay_is_gone(e))
		return replay_skipped(r, rec, e);
	return e;
}

/* A fresh regular file: goes straight into the file cache. */
static int create_regular(struct mfs_replay *r, int dfd, const char *base, const struct mfs_rec *rec)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	struct rfile *f;

	fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    rec->mode & 07777);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (r->n_files >= r->max_files || replay_inode_find(r, st.st_dev, st.st_ino))
		return 0; /* (a stale inode entry cannot exist while its fd is open) */
	f = calloc(1, sizeof(*f));
	if (!f)
		return 0;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->fd = TAKE_FD(fd);
	f->touched = true;
	f->inext = r->itab[replay_inode_slot(f->dev, f->ino)];
	r->itab[replay_inode_slot(f->dev, f->ino)] = f;
	r->n_files++;
	return replay_path_add(r, rec->path, f);
}

/* Make the object of MKNOD / MKDIR / SYMLINK once, @retry after removing what is there. */
static int make_object(struct mfs_replay *r, int dfd, const char *base, const struct mfs_rec *rec)
{
	uint32_t type = rec->mode & S_IFMT;
	struct stat st;
	char buf[MFS_PATH_MAX + 1];
	ssize_t n;
	dev_t dev;

	switch (rec->type) {
	case MFS_REC_MKDIR:
		if (mkdirat(dfd, base, rec->mode & 07777) == 0)
			return 0;
		if (errno == EEXIST && fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode))
			return 0;
		return -errno;
	case MFS_REC_SYMLINK:
		if (symlinkat(rec->path2, dfd, base) == 0)
			return 0;
		if (errno != EEXIST)
			return -errno;
		n = readlinkat(dfd, base, buf, sizeof(buf) - 1);
		if (n >= 0 && (size_t)n == strlen(rec->path2) && !memcmp(buf, rec->path2, (size_t)n))
			return 0;
		return -EEXIST;
	default:
		if (type == 0 || type == S_IFREG)
			return create_regular(r, dfd, base, rec);
		dev = type == S_IFCHR || type == S_IFBLK ? (dev_t)rec->rdev : 0;
		return mknodat(dfd, base, type | (rec->mode & 07777), dev) < 0 ? -errno : 0;
	}
}

static int op_create(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int dfd = -EBADF;
	const char *base;
	int e;

	dfd = mfs_path_open_parent(r->rootfd, rec->path, &base);
	if (replay_is_gone(dfd))
		return replay_skipped(r, rec, dfd);
	if (dfd < 0)
		return dfd;
	replay_path_invalidate(r, rec->path);
	e = make_object(r, dfd, base, rec);
	if (e == -EEXIST) { /* re-applied: the name holds a later object */
		r->st.skipped++;
		e = mfs_dir_remove_tree(dfd, base);
		if (e == 0)
			e = make_object(r, dfd, base, rec);
	}
	if (e < 0)
		return e;
	replay_dir_touch(r, rec->path);
	if (rec->type == MFS_REC_SYMLINK)
		return replay_chown_nofollow(dfd, base, rec->uid, rec->gid);
	return replay_set_attrs(dfd, base, rec->uid, rec->gid, rec->mode);
}

static int op_remove(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int dfd = -EBADF;
	const char *base;
	int e;

	dfd = mfs_path_open_parent(r->rootfd, rec->path, &base);
	if (replay_is_gone(dfd))
		return replay_skipped(r, rec, dfd);
	if (dfd < 0)
		return dfd;
	replay_path_invalidate(r, rec->path);
	e = unlinkat(dfd, base, rec->type == MFS_REC_RMDIR ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
	if (e == -ENOENT)
		return replay_skipped(r, rec, e);
	if (e == -EISDIR || e == -ENOTEMPTY || e == -EEXIST || e == -ENOTDIR) {
		r->st.skipped++;
		e = mfs_dir_remove_tree(dfd, base);
	}
	if (e == 0)
		replay_dir_touch(r, rec->path);
	return e;
}

/* RENAME and LINK: two names, each beneath the root. */
static int op_two(struct mfs_replay *r, const struct mfs_rec *rec)
{
	_cleanup_close_ int d1 = -EBADF, d2 = -EBADF;
	const char *b1, *b2;
	struct stat s1, s2;
	char tmp[64];
	int e;

	d1 = mfs_path_open_parent(r->rootfd, rec->path, &b1);
	if (d1 >= 0)
		d2 = mfs_path_open_parent(r->rootfd, rec->path2, &b2);
	e = d1 < 0 ? d1 : d2 < 0 ? d2 : 0;
	if (replay_is_gone(e))
		return replay_skipped(r, rec, e);
	if (e < 0)
		return e;
	replay_path_invalidate(r, rec->path);
	replay_path_invalidate(r, rec->path2);
	replay_dir_touch(r, rec->path);
	replay_dir_touch(r, rec->path2);
	if (rec->type == MFS_REC_LINK) {
		if (linkat(d1, b1, d2, b2, 0) == 0)
			return 0;
		e = -errno;
		if (e != -EEXIST)
			return replay_is_gone(e) ? replay_skipped(r, rec, e) : e;
		if (fstatat(d1, b1, &s1, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fstatat(d2, b2, &s2, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		r->st.skipped++;
		if (s1.st_dev == s2.st_dev && s1.st_ino == s2.st_ino)
			return 0;
		snprintf(tmp, sizeof(tmp), ".mfs-link.%d.%" PRIu64, getpid(), rec->lsn);
		if (linkat(d1, b1, d2, tmp, 0) < 0)
			return -errno;
		if (S_ISDIR(s2.st_mode))
			(void)mfs_dir_remove_tree(d2, b2);
		if (renameat(d2, tmp, d2, b2) < 0) {
			e = -errno;
			(void)unlinkat(d2, tmp, 0);
			return e;
		}
		return 0;
	}
	if (renameat2(d1, b1, d2, b2, rec->flags) == 0)
		return 0;
	e = -errno;
	if (replay_is_gone(e) && fstatat(d1, b1, &s1, AT_SYMLINK_NOFOLLOW) < 0)
		return replay_skipped(r, rec, e); /* the source is gone: done */
	if (e == -EEXIST || e == -ENOTEMPTY || e == -EISDIR || e == -ENOTDIR) {
		r->st.skipped++;
		e = mfs_dir_remove_tree(d2, b2);
		if (e == 0 && renameat2(d1, b1, d2, b2, rec->flags & ~RENAME_NOREPLACE) < 0)
			e = -errno;
	}
	return e;
}

/* Apply a checked record: what each type means. */
int replay_apply_rec(struct mfs_replay *r, const struct mfs_rec *rec)
{
	if (r->error)
		return r->error;
	r->st.records++;
	switch (rec->type) {
	case MFS_REC_WRITE:
		return op_write(r, rec);
	case MFS_REC_TRUNCATE:
	case MFS_REC_FALLOCATE:
		return op_resize(r, rec);
	case MFS_REC_MKNOD:
	case MFS_REC_MKDIR:
	case MFS_REC_SYMLINK:
		return op_create(r, rec);
	case MFS_REC_UNLINK:
	case MFS_REC_RMDIR:
		return op_remove(r, rec);
	case MFS_REC_RENAME:
	case MFS_REC_LINK:
		return op_two(r, rec);
	case MFS_REC_CHMOD:
	case MFS_REC_CHOWN:
	case MFS_REC_UTIMENS:
		return op_attr(r, rec);
	case MFS_REC_SETXATTR:
	case MFS_REC_REMOVEXATTR:
		return op_xattr(r, rec);
	default:
		return 0; /* markers */
	}
}
