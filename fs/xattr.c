/* SPDX-License-Identifier: MIT */
/*
 * xattr.c - extended attributes: get, list, set, remove. Changes are
 * journaled durably, then applied, and compensated if they fail
 * (mutate.c). security.capability, asked before every write, is answered
 * from a cached absence when nothing changed (xattr_gen, fs.h).
 */
#include "fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "mirrorfs/macro.h"

#define XATTR_CAPS "security.capability"

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs_inode *i = fs_inode(req, ino);
	_cleanup_free_ char *buf = NULL;
	char proc[64];
	uint64_t gen;
	bool caps;
	ssize_t n;

	if (i->ops) {
		i->ops->getxattr(req, i, name, size);
		return;
	}
	caps = strcmp(name, XATTR_CAPS) == 0;
	gen = atomic_load(&i->xattr_gen);
	if (caps && !(gen & 1) && atomic_load(&i->nocaps_gen) == gen) {
		fuse_reply_err(req, ENODATA); /* known absent: no syscall */
		return;
	}
	fs_proc_path(i->fd, proc);
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = getxattr(proc, name, buf, size);
	if (n < 0 && errno == ENODATA && caps && !(gen & 1))
		atomic_store(&i->nocaps_gen, gen); /* stale by itself if a change came since */
	if (n < 0)
		fuse_reply_err(req, errno);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)n);
	else
		fuse_reply_xattr(req, (size_t)n);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_inode *i = fs_inode(req, ino);
	_cleanup_free_ char *buf = NULL;
	char proc[64];
	ssize_t n;

	if (i->ops) {
		i->ops->listxattr(req, i, size);
		return;
	}
	fs_proc_path(i->fd, proc);
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = listxattr(proc, buf, size);
	if (n < 0)
		fuse_reply_err(req, errno);
	else if (size)
		fuse_reply_buf(req, buf, (size_t)n);
	else
		fuse_reply_xattr(req, (size_t)n);
}

/* What setxattr/removexattr would refuse for the attribute's presence. */
static int xattr_check(const char *proc, const char *name, bool set, int flags)
{
	bool exists = getxattr(proc, name, NULL, 0) >= 0;

	if (!exists && errno != ENODATA)
		return 0; /* let the call itself decide */
	if ((!set || (flags & XATTR_REPLACE)) && !exists)
		return -ENODATA;
	if (set && (flags & XATTR_CREATE) && exists)
		return -EEXIST;
	return 0;
}

/* setxattr (value != NULL) and removexattr: journaled (durably), then applied. */
static int do_xattr(struct fs *fs, struct fs_inode *i, const char *name, const char *value,
		    size_t size, int flags)
{
	_cleanup_free_ struct mfs_rec *rec =
		fs_rec_new(value ? MFS_REC_SETXATTR : MFS_REC_REMOVEXATTR);
	char proc[64];
	uint64_t lsn = 0;
	int r, jr;

	if (!rec)
		return -ENOMEM;
	if (i->vkind != FS_VK_NONE)
		return -EPERM;
	if (strlen(name) > MFS_XATTR_NAME_MAX)
		return -ERANGE;
	if (size > MFS_XATTR_VALUE_MAX)
		return -E2BIG;
	jr = fs_mutate_begin(fs, i, rec->path);
	if (jr < 0)
		return jr;
	fs_proc_path(i->fd, proc);
	r = xattr_check(proc, name, value != NULL, flags);
	if (r < 0)
		return r;
	fs_snap_cow(fs, i, 0, 0); /* a snapshot keeps the old attributes */
	snprintf(rec->path2, sizeof(rec->path2), "%s", name);
	rec->flags = (uint32_t)flags;
	rec->data = value;
	rec->data_len = value ? (uint32_t)size : 0;
	if (jr) {
		r = fs_journal_first(fs, rec, &lsn);
		if (r < 0)
			return r;
	}
	atomic_fetch_add(&i->xattr_gen, 1); /* odd: getxattr neither trusts nor records absence */
	r = value ? setxattr(proc, name, value, size, flags) : removexattr(proc, name);
	if (r < 0)
		r = -errno;
	atomic_fetch_add(&i->xattr_gen, 1);
	fs_dirty_add(fs, i);
	if (r < 0 && jr)
		fs_compensate_xattr(fs, proc, rec);
	else if (jr)
		atomic_store(&i->last_lsn, lsn);
	return r;
}

static void xattr_common(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *i = fs_inode(req, ino);
	int r;

	pthread_rwlock_rdlock(&fs->ns_lock);
	pthread_mutex_lock(&i->lock);
	r = do_xattr(fs, i, name, value, size, flags);
	pthread_mutex_unlock(&i->lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	fuse_reply_err(req, -r);
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags)
{
	xattr_common(req, ino, name, value ? value : "", size, flags);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	xattr_common(req, ino, name, NULL, 0, 0);
}
