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
#define N_BUCKETS 16384u

/* The view nodes, keyed by (snapshot, st_ino). */
struct fs_views {
	pthread_mutex_t mu;
	struct fs_inode **hash; /* mu */
};

static struct fs_inode **bucket(struct fs *fs, const struct fs_snap *s, ino_t ino)
{
	uint64_t k = (uint64_t)ino ^ (uintptr_t)s;

	return &fs->views->hash[((k * 0x9E3779B97F4A7C15ull) >> 40) & (N_BUCKETS - 1)];
}

static void node_free(struct fs_inode *i)
{
	if (i->fd >= 0)
		close(i->fd);
	pthread_mutex_destroy(&i->lock);
	free(i->vname);
	free(i);
}

int fs_snapview_init(struct fs *fs)
{
	struct fs_views *v = calloc(1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	v->hash = calloc(N_BUCKETS, sizeof(*v->hash));
	if (!v->hash) {
		free(v);
		return -ENOMEM;
	}
	pthread_mutex_init(&v->mu, NULL);
	fs->views = v;
	return 0;
}

void fs_snapview_done(struct fs *fs)
{
	struct fs_views *v = fs->views;

	if (!v)
		return;
	for (size_t b = 0; b < N_BUCKETS; b++)
		while (v->hash[b]) {
			struct fs_inode *i = v->hash[b];
			v->hash[b] = i->hnext;
			node_free(i);
		}
	pthread_mutex_destroy(&v->mu);
	free(v->hash);
	free(v);
	fs->views = NULL;
}

static const struct fs_node_ops snapview_ops;

/* Find or make the node of entry @name in store folder @pfd of @s, with a
 * kernel lookup reference, into *@ret. Returns 0 or -errno. */
static int node_get(struct fs *fs, struct fs_snap *s, int pfd, const char *name,
		    struct fs_inode **ret)
{
	struct fs_inode **head, *i;
	struct stat st;
	int r = 0;

	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	pthread_mutex_lock(&fs->views->mu);
	head = bucket(fs, s, st.st_ino);
	for (i = *head; i; i = i->hnext)
		if (i->snap == s && i->ino == st.st_ino)
			break;
	if (!i) {
		i = calloc(1, sizeof(*i));
		r = i ? 0 : -ENOMEM;
		if (i) {
			i->fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			r = i->fd < 0 ? -errno : 0;
		}
		if (r < 0) {
			free(i);
			pthread_mutex_unlock(&fs->views->mu);
			return r;
		}
		i->vkind = FS_VK_SNAP;
		i->ops = &snapview_ops;
		i->snap = s;
		i->ino = st.st_ino;
		i->dev = st.st_dev;
		i->type = st.st_mode & S_IFMT;
		pthread_mutex_init(&i->lock, NULL);
		i->hnext = *head;
		*head = i;
	}
	i->nlookup++;
	pthread_mutex_unlock(&fs->views->mu);
	*ret = i;
	return 0;
}

int fs_snapview_child(struct fs *fs, struct fs_inode *parent, const char *name,
		      struct fs_inode **ret)
{
	struct fs_snap *s;
	struct fs_inode *i;
	int r;

	if (parent->vkind == FS_VK_SNAPS) {
		s = fs_snap_find(fs, name);
		if (!s)
			return -ENOENT;
		r = node_get(fs, s, fs_snap_tree_fd(s), ".", &i);
		if (r < 0)
			return r;
		pthread_mutex_lock(&fs->views->mu);
		if (!i->vname)
			i->vname = strdup(name);
		pthread_mutex_unlock(&fs->views->mu);
		*ret = i;
		return 0;
	}
	r = fs_snap_check(parent->snap);
	if (r < 0)
		return r;
	if (parent->type != S_IFDIR)
		return -ENOTDIR;
	return node_get(fs, parent->snap, parent->fd, name, ret);
}

static void sv_forget(struct fs *fs, struct fs_inode *i, uint64_t n)
{
	pthread_mutex_lock(&fs->views->mu);
	i->nlookup = i->nlookup > n ? i->nlookup - n : 0;
	if (i->nlookup == 0) {
		struct fs_inode **pp = bucket(fs, i->snap, i->ino);
		while (*pp && *pp != i)
			pp = &(*pp)->hnext;
		if (*pp)
			*pp = i->hnext;
		node_free(i);
	}
	pthread_mutex_unlock(&fs->views->mu);
}

static int sv_stat(struct fs *fs, struct fs_inode *i, struct stat *st)
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

static void sv_open(fuse_req_t req, struct fs_inode *i, struct fuse_file_info *fi)
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

static void sv_read(fuse_req_t req, struct fs_inode *i, size_t size, off_t off,
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

static void sv_getxattr(fuse_req_t req, struct fs_inode *i, const char *name, size_t size)
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

static void sv_listxattr(fuse_req_t req, struct fs_inode *i, size_t size)
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

/* Lookup in a snapshot folder: an entry the snapshot has not is a
 * negative entry the kernel may keep (a snapshot never changes). */
static void sv_lookup(fuse_req_t req, struct fs_inode *parent, const char *name)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e = { 0 };
	struct fs_inode *i;
	int r;

	r = fs_snapview_child(fs, parent, name, &i);
	if (r == -ENOENT) {
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = sv_stat(fs, i, &e.attr);
	if (r < 0) {
		sv_forget(fs, i, 1);
		fuse_reply_err(req, -r);
		return;
	}
	e.ino = (uintptr_t)i;
	e.attr_timeout = e.entry_timeout = fs->timeout;
	if (fuse_reply_entry(req, &e) != 0)
		sv_forget(fs, i, 1);
}

static void sv_setattr(fuse_req_t req, struct fs_inode *i, int valid)
{
	fuse_reply_err(req, EROFS);
}

static void sv_write(fuse_req_t req, struct fs_inode *i, const char *buf, size_t size,
		     struct fs_file *f)
{
	fuse_reply_err(req, EACCES);
}

static void sv_unlink(fuse_req_t req, struct fs_inode *parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static const struct fs_node_ops snapview_ops = {
	.cached = true,
	.lookup = sv_lookup,
	.forget = sv_forget,
	.stat = sv_stat,
	.setattr = sv_setattr,
	.open = sv_open,
	.read = sv_read,
	.write = sv_write,
	.unlink = sv_unlink,
	.getxattr = sv_getxattr,
	.listxattr = sv_listxattr,
};
