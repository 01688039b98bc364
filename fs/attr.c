/* SPDX-License-Identifier: MIT */
/*
 * attr.c - attributes: getattr, and setattr (mode, owner, size, times),
 * each change journaled durably before it is applied and compensated if
 * it fails (mutate.c); the kill of suid and sgid the kernel leaves to us
 * (killpriv.c).
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "mirrorfs/macro.h"

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_inode *i = fs_inode(req, ino);
	struct stat st;

	if (i->ops) {
		int r = i->ops->stat(fs_of(req), i, &st);
		if (r < 0)
			fuse_reply_err(req, -r);
		else
			fuse_reply_attr(req, &st, i->ops->cached ? fs_of(req)->timeout : 0);
		return;
	}
	if (fstatat(i->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fs_stat_fix(fs_of(req), i, &st);
	fuse_reply_attr(req, &st, fs_of(req)->timeout);
}

static int apply_mode(struct fs_inode *i, int fd, const struct mfs_rec *rec)
{
	char proc[64];

	fs_proc_path(i->fd, proc);
	return (fd >= 0 ? fchmod(fd, rec->mode) : chmod(proc, rec->mode)) < 0 ? -errno : 0;
}

static int set_mode(struct fs *fs, struct fs_inode *i, int fd, mode_t mode, struct mfs_rec *rec,
		    bool journaled)
{
	rec->type = MFS_REC_CHMOD;
	rec->mode = mode & 07777;
	return fs_attr_change(fs, i, rec, journaled, apply_mode, fd);
}

/* The VFS's in_group_or_capable() for @req's caller and group @gid, with
 * root taken to have CAP_FSETID (FUSE does not say). */
static bool in_group_or_root(fuse_req_t req, gid_t gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[64];
	int n;

	if (ctx->uid == 0 || ctx->gid == gid)
		return true;
	n = fuse_req_getgroups(req, (int)ARRAY_SIZE(groups), groups);
	for (int k = 0; k < MFS_MIN(n, (int)ARRAY_SIZE(groups)); k++)
		if (groups[k] == gid)
			return true;
	return false;
}

int fs_attr_kill_suidgid(struct fs *fs, struct fs_inode *i, int fd, fuse_req_t req)
{
	_cleanup_free_ struct mfs_rec *rec = NULL;
	struct stat st;
	mode_t mode;
	int jr;

	if (fstatat(i->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	mode = st.st_mode & 07777 & ~(mode_t)S_ISUID;
	/* sgid without group execute marks mandatory locking: the VFS keeps
	 * it for a caller in the file's group (setattr_should_drop_sgid) */
	if ((mode & S_ISGID) && ((mode & S_IXGRP) || !in_group_or_root(req, st.st_gid)))
		mode &= ~(mode_t)S_ISGID;
	if (!S_ISREG(st.st_mode) || mode == (st.st_mode & 07777))
		return 0;
	rec = fs_rec_new(MFS_REC_CHMOD);
	if (!rec)
		return -ENOMEM;
	jr = fs_mutate_begin(fs, i, rec->path);
	if (jr < 0)
		return jr;
	fs_snap_cow(fs, i, 0, 0); /* a snapshot keeps the old attributes */
	return set_mode(fs, i, fd, mode, rec, jr);
}

static int apply_owner(struct fs_inode *i, int fd, const struct mfs_rec *rec)
{
	return fchownat(i->fd, "", (uid_t)rec->uid, (gid_t)rec->gid,
			AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0
		       ? -errno
		       : 0;
}

static int set_owner(struct fs *fs, struct fs_inode *i, uid_t uid, gid_t gid,
		     struct mfs_rec *rec, bool journaled)
{
	rec->type = MFS_REC_CHOWN;
	rec->uid = (uint32_t)uid;
	rec->gid = (uint32_t)gid;
	return fs_attr_change(fs, i, rec, journaled, apply_owner, -1);
}

static int apply_times(struct fs_inode *i, int fd, const struct mfs_rec *rec)
{
	struct timespec tv[2] = { { rec->atime_sec, (long)rec->atime_nsec },
				  { rec->mtime_sec, (long)rec->mtime_nsec } };
	char proc[64];

	fs_proc_path(i->fd, proc);
	return utimensat(AT_FDCWD, proc, tv, 0) < 0 ? -errno : 0;
}

/* utimens with UTIME_NOW resolved here, so that replay is deterministic. */
static int set_times(struct fs *fs, struct fs_inode *i, const struct stat *attr, int valid,
		     struct mfs_rec *rec, bool journaled)
{
	struct timespec tv[2] = { { 0, UTIME_OMIT }, { 0, UTIME_OMIT } }, now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (valid & FUSE_SET_ATTR_ATIME)
		tv[0] = (valid & FUSE_SET_ATTR_ATIME_NOW) ? now : attr->st_atim;
	if (valid & FUSE_SET_ATTR_MTIME)
		tv[1] = (valid & FUSE_SET_ATTR_MTIME_NOW) ? now : attr->st_mtim;
	rec->type = MFS_REC_UTIMENS;
	rec->atime_sec = tv[0].tv_sec;
	rec->atime_nsec = (uint32_t)tv[0].tv_nsec;
	rec->mtime_sec = tv[1].tv_sec;
	rec->mtime_nsec = (uint32_t)tv[1].tv_nsec;
	return fs_attr_change(fs, i, rec, journaled, apply_times, -1);
}

static int do_setattr(fuse_req_t req, struct fs *fs, struct fs_inode *i, struct stat *attr,
		      int valid, int fd)
{
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_CHMOD);
	int r, jr;

	if (!rec)
		return -ENOMEM;
	jr = fs_mutate_begin(fs, i, rec->path);
	if (jr < 0)
		return jr;
	if (valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
		     FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))
		fs_snap_cow(fs, i, 0, 0); /* a snapshot keeps the old attributes */
	if (fs_killpriv_asked()) { /* a chown, or a truncate without CAP_FSETID (killpriv.c) */
		r = fs_attr_kill_suidgid(fs, i, fd, req);
		if (r < 0)
			return r;
	}
	if (valid & FUSE_SET_ATTR_MODE) {
		r = set_mode(fs, i, fd, attr->st_mode, rec, jr);
		if (r < 0)
			return r;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		r = set_owner(fs, i, uid, gid, rec, jr);
		if (r < 0)
			return r;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		r = fs_data_truncate(fs, i, fd, (uint64_t)attr->st_size);
		if (r < 0)
			return r;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))
		return set_times(fs, i, attr, valid, rec, jr);
	return 0;
}

void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		   struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *i = fs_inode(req, ino);
	struct fs_file *f = fi ? (struct fs_file *)(uintptr_t)fi->fh : NULL;
	int r;

	if (i->ops) {
		i->ops->setattr(req, i, valid);
		return;
	}
	pthread_rwlock_rdlock(&fs->ns_lock);
	pthread_mutex_lock(&i->lock);
	r = do_setattr(req, fs, i, attr, valid, f ? f->fd : -1);
	pthread_mutex_unlock(&i->lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fs_op_getattr(req, ino, fi);
}
