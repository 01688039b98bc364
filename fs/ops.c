/* SPDX-License-Identifier: MIT */
/*
 * ops.c - the FUSE low-level ops table, and the operations that belong to
 * no other module: init, lookup and inode lifetime, readlink, statfs.
 * Attributes are in attr.c, namespace operations in names.c, directories
 * in dir.c, xattrs in xattr.c, open files in data.c; every mutation
 * follows the write-ahead protocol (mutate.c).
 */
#include "fs.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* the kernel clears suid/sgid itself with a (journaled) setattr */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	/* every change comes through us and keeps the page cache right (or
	 * drops what it changed: data.c inval_direct), so a new mtime seen
	 * by a GETATTR after a write must not drop the whole file's pages */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_write = 1u << 20;
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ; /* we need write data in memory */
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *p = fs_inode(req, parent);
	struct fuse_entry_param e;
	int r;

	if (p->ops) {
		p->ops->lookup(req, p, name);
		return;
	}
	if (fs_is_reserved(fs, p, name)) {
		fs_vtree_lookup(req, p, name);
		return;
	}
	pthread_rwlock_rdlock(&fs->ns_lock);
	r = fs_stat_lookup(fs, p, name, &e);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (r == -ENOENT) {
		/* every namespace change goes through us: let the kernel cache
		 * the negative entry (it drops it itself when we create one) */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	fs_reply_entry_or_err(req, r, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_inode_forget(fs_of(req), fs_inode(req, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t k = 0; k < count; k++)
		fs_inode_forget(fs_of(req), fs_inode(req, forgets[k].ino), forgets[k].nlookup);
	fuse_reply_none(req);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs_inode *i = fs_inode(req, ino);
	char buf[PATH_MAX + 1];
	ssize_t n;

	if (i->vkind != FS_VK_NONE && i->vkind != FS_VK_SNAP) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	n = readlinkat(i->fd, "", buf, sizeof(buf));
	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if ((size_t)n == sizeof(buf)) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	buf[n] = 0;
	fuse_reply_readlink(req, buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	if (fstatvfs(fs_of(req)->sync_fd, &st) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &st);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = fs_op_getattr,
	.setattr = fs_op_setattr,
	.readlink = op_readlink,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_rmdir,
	.symlink = fs_op_symlink,
	.rename = fs_op_rename,
	.link = fs_op_link,
	.open = fs_op_open,
	.read = fs_op_read,
	.write_buf = fs_op_write_buf,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.create = fs_op_create,
	.fallocate = fs_op_fallocate,
	.copy_file_range = fs_op_copy_file_range,
	.lseek = fs_op_lseek,
};
