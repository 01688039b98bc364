/* SPDX-License-Identifier: MIT */
/*
 * vtree.c - the virtual .mirrorfs/ tree at the mount root.
 *
 *   .mirrorfs/journal/NAME   closed segments, read-only; unlink trims one
 *   .mirrorfs/current        the open segment, read-only
 *   .mirrorfs/status         JSON status, generated at open
 *   .mirrorfs/ctl            control file (mirrorfs/ctl.h): write a command,
 *                            read the reply; mount owner and root only
 *
 * The name is reserved: nothing in it is backed by DATADIR or journaled,
 * and the real DATADIR/.mirrorfs (the default journal folder) is never
 * visible. Virtual files use direct_io and zero cache timeouts, so sizes
 * and contents are never stale. Static nodes live as long as the mount;
 * segment nodes are created by lookup and freed by forget.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/segment.h"

#define VINO_BASE (1ull << 62)
#define VINO_SEGMENT (VINO_BASE + 0x1000)

static const char *const vnames[FS_VK_COUNT] = {
	[FS_VK_DIR] = MFS_CTL_DIR,   [FS_VK_JOURNAL] = "journal", [FS_VK_SNAPS] = "snapshots",
	[FS_VK_CURRENT] = "current",
	[FS_VK_STATUS] = "status", [FS_VK_CTL] = "ctl",
};

static const struct fs_node_ops vtree_ops;

int fs_vtree_init(struct fs *fs)
{
	pthread_mutex_init(&fs->vlock, NULL);
	for (int k = FS_VK_DIR; k <= FS_VK_CTL; k++) {
		struct fs_inode *i = calloc(1, sizeof(*i));
		if (!i)
			return -ENOMEM;
		i->fd = -1;
		i->vkind = (enum fs_vkind)k;
		i->ops = &vtree_ops;
		i->type = (k == FS_VK_DIR || k == FS_VK_JOURNAL || k == FS_VK_SNAPS) ? S_IFDIR
										     : S_IFREG;
		i->ino = (ino_t)(VINO_BASE + (uint64_t)k);
		pthread_mutex_init(&i->lock, NULL);
		fs->vnodes[k] = i;
	}
	return fs_snapview_init(fs);
}

void fs_vtree_done(struct fs *fs)
{
	for (int k = 0; k < FS_VK_COUNT; k++)
		free(fs->vnodes[k]);
	while (fs->segnodes) {
		struct fs_inode *i = fs->segnodes;
		fs->segnodes = i->hnext;
		free(i->vname);
		free(i);
	}
	fs_snapview_done(fs);
}

bool fs_is_reserved(struct fs *fs, struct fs_inode *parent, const char *name)
{
	return parent == &fs->root && !strcmp(name, MFS_CTL_DIR);
}

/* ================================================================ attributes */

static int vt_stat(struct fs *fs, struct fs_inode *i, struct stat *st)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	memset(st, 0, sizeof(*st));
	st->st_ino = i->ino;
	st->st_uid = fs->owner;
	st->st_gid = getgid();
	st->st_nlink = 1;
	st->st_blksize = 4096;
	st->st_atim = st->st_mtim = st->st_ctim = now;
	switch (i->vkind) {
	case FS_VK_DIR:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 3;
		break;
	case FS_VK_JOURNAL: {
		struct stat real;
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		if (fstat(fs_journal_closed_dirfd(fs), &real) == 0)
			st->st_mtim = st->st_ctim = real.st_mtim;
		break;
	}
	case FS_VK_SNAPS:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		break;
	case FS_VK_CURRENT:
		st->st_mode = S_IFREG | 0400;
		st->st_size = (off_t)fs_journal_current_size(fs);
		break;
	case FS_VK_STATUS: {
		_cleanup_free_ char *json = NULL;
		st->st_mode = S_IFREG | 0444;
		if (fs_status_json(fs, &json) == 0)
			st->st_size = (off_t)strlen(json);
		break;
	}
	case FS_VK_CTL:
		st->st_mode = S_IFREG | 0666;
		break;
	case FS_VK_SEGMENT: {
		struct stat real;
		if (fstatat(fs_journal_closed_dirfd(fs), i->vname, &real, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		st->st_mode = S_IFREG | 0400;
		st->st_size = real.st_size;
		st->st_blocks = real.st_blocks;
		st->st_atim = real.st_atim;
		st->st_mtim = real.st_mtim;
		st->st_ctim = real.st_ctim;
		break;
	}
	default:
		return -EIO;
	}
	st->st_blocks = st->st_blocks ? st->st_blocks : (st->st_size + 511) / 512;
	return 0;
}

static void vt_getattr(fuse_req_t req, struct fs_inode *i)
{
	struct fs *fs = fuse_req_userdata(req);
	struct stat st;
	int r = vt_stat(fs, i, &st);

	if (r < 0)
		fuse_reply_err(req, -r);
	else /* the virtual files change */
		fuse_reply_attr(req, &st, 0);
}

/* ================================================================ lookup */

static struct fs_inode *segnode_get(struct fs *fs, const char *name, uint64_t first)
{
	struct fs_inode *i;

	pthread_mutex_lock(&fs->vlock);
	for (i = fs->segnodes; i; i = i->hnext)
		if (!strcmp(i->vname, name))
			break;
	if (!i) {
		i = calloc(1, sizeof(*i));
		if (i)
			i->vname = strdup(name);
		if (i && !i->vname) {
			free(i);
			i = NULL;
		}
		if (i) {
			i->fd = -1;
			i->vkind = FS_VK_SEGMENT;
			i->ops = &vtree_ops;
			i->type = S_IFREG;
			i->ino = (ino_t)(VINO_SEGMENT + first);
			pthread_mutex_init(&i->lock, NULL);
			i->hnext = fs->segnodes;
			fs->segnodes = i;
		}
	}
	if (i)
		i->nlookup++;
	pthread_mutex_unlock(&fs->vlock);
	return i;
}

static void vt_forget(struct fs *fs, struct fs_inode *i, uint64_t n)
{
	if (i->vkind != FS_VK_SEGMENT)
		return;
	pthread_mutex_lock(&fs->vlock);
	i->nlookup = i->nlookup > n ? i->nlookup - n : 0;
	if (i->nlookup == 0) {
		struct fs_inode **pp = &fs->segnodes;
		while (*pp && *pp != i)
			pp = &(*pp)->hnext;
		if (*pp)
			*pp = i->hnext;
		pthread_mutex_destroy(&i->lock);
		free(i->vname);
		free(i);
	}
	pthread_mutex_unlock(&fs->vlock);
}

/* The node of virtual entry @name in @parent, with a kernel lookup
 * reference, into *@ret. Returns 0 or -errno (-ENOENT: no such entry). */
static int vchild(struct fs *fs, struct fs_inode *parent, const char *name, struct fs_inode **ret)
{
	uint64_t first, last;
	struct stat st;

	if (parent == &fs->root) {
		if (strcmp(name, MFS_CTL_DIR))
			return -ENOENT;
		*ret = fs->vnodes[FS_VK_DIR];
		return 0;
	}
	if (parent->vkind == FS_VK_SNAPS)
		return fs_snapview_child(fs, parent, name, ret);
	if (parent->vkind == FS_VK_DIR) {
		for (int k = FS_VK_JOURNAL; k <= FS_VK_CTL; k++)
			if (!strcmp(name, vnames[k])) {
				*ret = fs->vnodes[k];
				return 0;
			}
		return -ENOENT;
	}
	if (parent->vkind != FS_VK_JOURNAL || !mfs_seg_name_parse(name, &first, &last))
		return -ENOENT;
	if (fstatat(fs_journal_closed_dirfd(fs), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	*ret = segnode_get(fs, name, first);
	return *ret ? 0 : -ENOMEM;
}

void fs_vtree_lookup(fuse_req_t req, struct fs_inode *parent, const char *name)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e = { 0 };
	struct fs_inode *i;
	int r;

	r = vchild(fs, parent, name, &i);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = i->ops->stat(fs, i, &e.attr); /* a snapshot's root: snapview.c's */
	if (r < 0) {
		i->ops->forget(fs, i, 1);
		fuse_reply_err(req, -r);
		return;
	}
	e.ino = (uintptr_t)i;
	if (i->ops->cached)
		e.attr_timeout = e.entry_timeout = fs->timeout;
	if (fuse_reply_entry(req, &e) != 0)
		i->ops->forget(fs, i, 1);
}

ino_t fs_vtree_ino(struct fs *fs, struct fs_inode *dir, const char *name)
{
	uint64_t first, last;

	if (dir == &fs->root)
		return fs->vnodes[FS_VK_DIR]->ino;
	for (int k = FS_VK_JOURNAL; dir->vkind == FS_VK_DIR && k <= FS_VK_CTL; k++)
		if (!strcmp(name, vnames[k]))
			return fs->vnodes[k]->ino;
	if (dir->vkind == FS_VK_JOURNAL && mfs_seg_name_parse(name, &first, &last))
		return (ino_t)(VINO_SEGMENT + first);
	if (dir->vkind == FS_VK_SNAPS) {
		struct fs_snap *s = fs_snap_find(fs, name);
		struct stat st;
		if (s && fstat(fs_snap_tree_fd(s), &st) == 0)
			return st.st_ino;
	}
	return (ino_t)VINO_BASE;
}

int fs_vtree_list(struct fs *fs, struct fs_inode *i, char ***ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = NULL;
	char **names = NULL;
	size_t n = 0, cap = 8;
	struct dirent *de;
	int fd;

	names = calloc(cap, sizeof(*names));
	if (!names)
		return -ENOMEM;
	if (i->vkind == FS_VK_DIR) {
		for (int k = FS_VK_JOURNAL; k <= FS_VK_CTL; k++)
			names[n++] = strdup(vnames[k]);
		goto out;
	}
	if (i->vkind == FS_VK_SNAPS) {
		free(names);
		return fs_snap_names(fs, ret, ret_n);
	}
	fd = openat(fs_journal_closed_dirfd(fs), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		goto out;
	}
	while ((de = readdir(d))) {
		uint64_t a, b;
		if (!mfs_seg_name_parse(de->d_name, &a, &b))
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap *= 2) * sizeof(*names));
			if (!nn)
				break;
			names = nn;
		}
		names[n++] = strdup(de->d_name);
	}
out:
	*ret = names;
	*ret_n = n;
	return 0;
}

/* ================================================================ files */

static void vt_open(fuse_req_t req, struct fs_inode *i, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fs_file *f;
	int acc = fi->flags & O_ACCMODE;

	if (i->vkind == FS_VK_CTL && ctx->uid != 0 && ctx->uid != fs->owner) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (i->vkind != FS_VK_CTL && acc != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	f->inode = i;
	f->fd = -1;
	if (i->vkind == FS_VK_CURRENT)
		f->fd = fs_journal_open_current(fs);
	else if (i->vkind == FS_VK_SEGMENT)
		f->fd = openat(fs_journal_closed_dirfd(fs), i->vname, O_RDONLY | O_CLOEXEC);
	else if (i->vkind == FS_VK_STATUS && fs_status_json(fs, &f->buf) == 0)
		f->len = strlen(f->buf);
	if ((i->vkind == FS_VK_CURRENT || i->vkind == FS_VK_SEGMENT) && f->fd < 0) {
		int err = f->fd == -1 ? errno : -f->fd;
		free(f);
		fuse_reply_err(req, err ? err : EIO);
		return;
	}
	fi->fh = (uintptr_t)f;
	fi->direct_io = 1;
	fi->nonseekable = 0;
	fuse_reply_open(req, fi);
}

static void vt_read(fuse_req_t req, struct fs_inode *i, size_t size, off_t off,
		    struct fs_file *f)
{
	_cleanup_free_ char *buf = NULL;
	ssize_t n;

	if (f->fd < 0) {
		/* reply from a copy: once the kernel has the reply, the reader may
		 * close and release() free f->buf while writev() still returns
		 * (ASan/TSan check writev's buffers after the call) */
		size_t len = (size_t)off >= f->len ? 0 : MFS_MIN(size, f->len - (size_t)off);

		buf = len ? malloc(len) : NULL;
		if (len && !buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		if (len)
			memcpy(buf, f->buf + off, len);
		fuse_reply_buf(req, buf, len);
		return;
	}
	if (i->vkind == FS_VK_CURRENT) { /* its records, not the zeroed window after them */
		uint64_t end = fs_journal_current_size((struct fs *)fuse_req_userdata(req));
		size = (uint64_t)off >= end ? 0 : (size_t)MFS_MIN((uint64_t)size, end - (uint64_t)off);
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = mfs_pread_all(f->fd, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void vt_write(fuse_req_t req, struct fs_inode *i, const char *buf, size_t size,
		     struct fs_file *f)
{
	struct fs *fs = fuse_req_userdata(req);
	char cmd[512];
	size_t len = MFS_MIN(size, sizeof(cmd) - 1);
	char *reply = NULL;

	if (i->vkind != FS_VK_CTL) {
		fuse_reply_err(req, EACCES);
		return;
	}
	memcpy(cmd, buf, len);
	cmd[len] = 0;
	while (len && (cmd[len - 1] == '\n' || cmd[len - 1] == ' ' || cmd[len - 1] == '\r'))
		cmd[--len] = 0;
	if (fs_ctl_exec(fs, f, cmd, &reply) < 0) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	free(f->buf);
	f->buf = reply;
	f->len = strlen(reply);
	fuse_reply_write(req, size);
}

static void vt_unlink(fuse_req_t req, struct fs_inode *parent, const char *name)
{
	struct fs *fs = fuse_req_userdata(req);
	int r = parent->vkind == FS_VK_SNAPS ? -EROFS : -EPERM;

	if (parent->vkind == FS_VK_JOURNAL)
		r = fs_journal_trim(fs, name);
	fuse_reply_err(req, -r);
}

static void vt_setattr(fuse_req_t req, struct fs_inode *i, int valid)
{
	/* `echo cmd > ctl` truncates first: accept that, refuse the rest */
	if (i->vkind == FS_VK_CTL && !(valid & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
						 FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
						 FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))) {
		vt_getattr(req, i);
		return;
	}
	fuse_reply_err(req, i->vkind == FS_VK_SNAPS ? EROFS : EPERM);
}

static void vt_getxattr(fuse_req_t req, struct fs_inode *i, const char *name, size_t size)
{
	fuse_reply_err(req, ENODATA);
}

static void vt_listxattr(fuse_req_t req, struct fs_inode *i, size_t size)
{
	if (size)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_xattr(req, 0);
}

static const struct fs_node_ops vtree_ops = {
	.lookup = fs_vtree_lookup,
	.forget = vt_forget,
	.stat = vt_stat,
	.setattr = vt_setattr,
	.open = vt_open,
	.read = vt_read,
	.write = vt_write,
	.unlink = vt_unlink,
	.getxattr = vt_getxattr,
	.listxattr = vt_listxattr,
};
