/* SPDX-License-Identifier: MIT */
/*
 * snapview.c - the read-only views .mirrorfs/snapshots/NAME/.
 *
 * A view node (FS_VK_SNAP) holds an O_PATH fd on its entry in the
 * snapshot's store tree (snap_i.h) and is keyed by (snapshot, st_ino), so a
 * file hard-linked within the snapshot is one node, and a view node is
 * never the live file's node although both share the backing inode.
 * Directories, symlinks and special files are read from the store as they
 * are; regular files through cowread.c, which knows what was preserved.
 * Nothing here ever writes: every change gets EROFS.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirrorfs/macro.h"

#define XATTR_LSN "user.mirrorfs.lsn"
#define XATTR_DATASET "user.mirrorfs.dataset"

/* Find or make the node of entry @name in store folder @pfd of @s. */
static struct fs_inode *node_get(struct fs *fs, struct fs_snap *s, int pfd, const char *name)
{
	struct fs_inode **head, *i;
	struct stat st;

	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return NULL;
	fs_snap_vlock(fs, true);
	head = fs_snap_vbucket(fs, s, st.st_ino);
	for (i = *head; i; i = i->hnext)
		if (i->snap == s && i->ino == st.st_ino)
			break;
	if (!i) {
		i = calloc(1, sizeof(*i));
		if (i) {
			i->fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			if (i->fd < 0) {
				int err = errno;
				free(i);
				fs_snap_vlock(fs, false);
				errno = err;
				return NULL;
			}
			i->vkind = FS_VK_SNAP;
			i->snap = s;
			i->ino = st.st_ino;
			i->dev = st.st_dev;
			i->type = st.st_mode & S_IFMT;
			pthread_mutex_init(&i->lock, NULL);
			i->hnext = *head;
			*head = i;
		} else {
			errno = ENOMEM;
		}
	}
	if (i)
		i->nlookup++;
	fs_snap_vlock(fs, false);
	return i;
}

static void node_free(struct fs_inode *i)
{
	if (i->fd >= 0)
		close(i->fd);
	pthread_mutex_destroy(&i->lock);
	free(i->vname);
	free(i);
}

struct fs_inode *fs_snapview_child(struct fs *fs, struct fs_inode *parent, const char *name)
{
	struct fs_snap *s;
	struct fs_inode *i;
	int r;

	if (parent->vkind == FS_VK_SNAPS) {
		s = fs_snap_find(fs, name);
		if (!s) {
			errno = ENOENT;
			return NULL;
		}
		i = node_get(fs, s, fs_snap_tree_fd(s), ".");
		fs_snap_vlock(fs, true);
		if (i && !i->vname)
			i->vname = strdup(name);
		fs_snap_vlock(fs, false);
		return i;
	}
	r = fs_snap_check(parent->snap);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	if (parent->type != S_IFDIR) {
		errno = ENOTDIR;
		return NULL;
	}
	return node_get(fs, parent->snap, parent->fd, name);
}

void fs_snapview_forget(struct fs *fs, struct fs_inode *i, uint64_t n)
{
	fs_snap_vlock(fs, true);
	i->nlookup = i->nlookup > n ? i->nlookup - n : 0;
	if (i->nlookup == 0) {
		struct fs_inode **pp = fs_snap_vbucket(fs, i->snap, i->ino);
		while (*pp && *pp != i)
			pp = &(*pp)->hnext;
		if (*pp)
			*pp = i->hnext;
		node_free(i);
	}
	fs_snap_vlock(fs, false);
}

void fs_snapview_free(struct fs_inode *i)
{
	node_free(i);
}

int fs_snapview_stat(struct fs *fs, struct fs_inode *i, struct stat *st)
{
	int r = fs_snap_check(i->snap);

	if (r < 0)
		return r;
	if (fstatat(i->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISREG(st->st_mode))
		return fs_snap_file_stat(fs, i->snap, st);
	return 0;
}

void fs_snapview_open(fuse_req_t req, struct fs_inode *i, struct fuse_file_info *fi)
{
	struct fs_file *f;
	char proc[64];
	int r = fs_snap_check(i->snap);

	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (i->type != S_IFREG) {
		fuse_reply_err(req, i->type == S_IFDIR ? EISDIR : EACCES);
		return;
	}
	f = calloc(1, sizeof(*f));
	if (!f) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fs_proc_path(i->fd, proc);
	f->inode = i;
	f->fd = open(proc, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		r = errno;
		free(f);
		fuse_reply_err(req, r);
		return;
	}
	fi->fh = (uintptr_t)f;
	fi->keep_cache = 1; /* a snapshot never changes */
	fuse_reply_open(req, fi);
}

void fs_snapview_read(fuse_req_t req, struct fs_inode *i, size_t size, off_t off,
		      struct fs_file *f)
{
	struct fs *fs = fuse_req_userdata(req);
	_cleanup_free_ char *buf = NULL;
	ssize_t n;

	if (fs_snap_file_reply(fs, i->snap, i->ino, f->fd, req, size, off))
		return;
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = fs_snap_file_read(fs, i->snap, i->ino, f->fd, buf, size, (uint64_t)off,
			      &f->ra_end);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static int root_xattr(struct fs *fs, struct fs_inode *i, const char *name, char out[64])
{
	if (!i->vname)
		return -ENODATA;
	if (!strcmp(name, XATTR_LSN))
		return snprintf(out, 64, "%" PRIu64, fs_snap_lsn(i->snap));
	if (!strcmp(name, XATTR_DATASET)) {
		fs_journal_uuid(fs, out);
		return (int)strlen(out);
	}
	return -ENODATA;
}

/* Real xattrs of a view node: saved ones of a changed file, else the store
 * entry's (folders: copied at the snapshot; files: the unchanged inode). */
static ssize_t node_xattr(struct fs *fs, struct fs_inode *i, const char *name, char *buf,
			  size_t size)
{
	char proc[64];
	ssize_t n = -EAGAIN;
	int r = fs_snap_check(i->snap);

	if (r < 0)
		return r;
	if (i->type == S_IFREG)
		n = fs_snap_file_xattr(fs, i->snap, i->ino, name, buf, size);
	if (n != -EAGAIN)
		return n;
	if (i->type != S_IFREG && i->type != S_IFDIR)
		return name ? -ENODATA : 0;
	fs_proc_path(i->fd, proc);
	n = name ? getxattr(proc, name, buf, size) : listxattr(proc, buf, size);
	return n < 0 ? -errno : n;
}

void fs_snapview_getxattr(fuse_req_t req, struct fs_inode *i, const char *name, size_t size)
{
	struct fs *fs = fuse_req_userdata(req);
	_cleanup_free_ char *buf = NULL;
	char v[64];
	ssize_t n = root_xattr(fs, i, name, v);

	if (n >= 0) {
		if (!size)
			fuse_reply_xattr(req, (size_t)n);
		else if (size < (size_t)n)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, v, (size_t)n);
		return;
	}
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = node_xattr(fs, i, name, buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (!size)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

void fs_snapview_listxattr(fuse_req_t req, struct fs_inode *i, size_t size)
{
	static const char extra[] = XATTR_LSN "\0" XATTR_DATASET;
	struct fs *fs = fuse_req_userdata(req);
	size_t xl = i->vname ? sizeof(extra) : 0;
	_cleanup_free_ char *buf = malloc(size + xl + 1);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = node_xattr(fs, i, NULL, size ? buf : NULL, size ? size : 0);
	if (n == -ERANGE || (size && n >= 0 && (size_t)n + xl > size)) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	if (!size) {
		fuse_reply_xattr(req, (size_t)n + xl);
		return;
	}
	memcpy(buf + n, extra, xl);
	fuse_reply_buf(req, buf, (size_t)n + xl);
}
