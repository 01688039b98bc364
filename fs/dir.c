/* SPDX-License-Identifier: MIT */
/*
 * dir.c - directories: opendir, readdir(plus), releasedir, fsyncdir. A
 * listing is taken at offset 0 (".", "..", the entries, .mirrorfs at the
 * root; a virtual directory's names from vtree.c, a snapshot folder's
 * nodes from snapview.c) and kept in the open handle.
 */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/macro.h"

static void free_ents(struct fs_file *f)
{
	for (size_t k = 0; k < f->n_ents; k++)
		free(f->ents[k].name);
	free(f->ents);
	f->ents = NULL;
	f->n_ents = 0;
}

static int add_ent(struct fs_file *f, size_t *cap, const char *name, ino_t ino, mode_t type,
		   bool virt)
{
	if (f->n_ents == *cap) {
		struct fs_dirent *n = realloc(f->ents, (*cap = *cap ? *cap * 2 : 64) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		f->ents = n;
	}
	f->ents[f->n_ents] = (struct fs_dirent){ strdup(name), ino, type, virt };
	if (!f->ents[f->n_ents].name)
		return -ENOMEM;
	f->n_ents++;
	return 0;
}

/* Take the listing (at offset 0): ".", "..", the entries, .mirrorfs at the root. */
static int load_dir(struct fs *fs, struct fs_file *f)
{
	struct fs_inode *i = f->inode;
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	size_t cap = 0;
	int fd, r;

	free_ents(f);
	r = add_ent(f, &cap, ".", i == &fs->root ? 1 : i->ino, S_IFDIR, true);
	if (r == 0)
		r = add_ent(f, &cap, "..", 1, S_IFDIR, true);
	if (r < 0 || (i->vkind != FS_VK_NONE && i->vkind != FS_VK_SNAP)) {
		char **names = NULL;
		size_t n = 0;
		if (r == 0 && fs_vtree_list(fs, i, &names, &n) == 0) {
			for (size_t k = 0; k < n; k++) {
				if (r == 0 && names[k])
					r = add_ent(f, &cap, names[k], fs_vtree_ino(fs, i, names[k]),
						    (i->vkind == FS_VK_DIR && k <= 1) ||
								    i->vkind == FS_VK_SNAPS
							    ? S_IFDIR
							    : S_IFREG,
						    true);
				free(names[k]);
			}
			free(names);
		}
		return r;
	}
	fd = openat(i->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (r == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fs_is_reserved(fs, i, de->d_name))
			continue;
		r = add_ent(f, &cap, de->d_name, de->d_ino, (mode_t)DTTOIF(de->d_type), false);
	}
	if (r == 0 && i == &fs->root)
		r = add_ent(f, &cap, MFS_CTL_DIR, fs_vtree_ino(fs, i, MFS_CTL_DIR), S_IFDIR, true);
	return r;
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_file *f = calloc(1, sizeof(*f));

	if (!f) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	f->inode = fs_inode(req, ino);
	f->fd = -1;
	fi->fh = (uintptr_t)f;
	fuse_reply_open(req, fi);
}

static size_t add_plus(fuse_req_t req, struct fs_file *f, const struct fs_dirent *de, char *p,
		       size_t rem, off_t next)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e = { 0 };
	size_t n;

	if (!de->virt && f->inode->vkind == FS_VK_SNAP) {
		/* a snapshot folder: entries with their attributes, as below */
		struct fs_inode *c;
		if (fs_snapview_child(fs, f->inode, de->name, &c) < 0)
			return 0;
		if (c->ops->stat(fs, c, &e.attr) < 0) {
			c->ops->forget(fs, c, 1);
			return 0;
		}
		e.ino = (uintptr_t)c;
		e.attr_timeout = e.entry_timeout = fs->timeout;
		n = fuse_add_direntry_plus(req, p, rem, de->name, &e, next);
		if (n > rem)
			c->ops->forget(fs, c, 1);
		return n;
	}
	if (de->virt || f->inode->vkind != FS_VK_NONE) {
		e.attr.st_ino = de->ino;
		e.attr.st_mode = de->type;
		return fuse_add_direntry_plus(req, p, rem, de->name, &e, next);
	}
	if (fs_stat_lookup(fs, f->inode, de->name, &e) < 0)
		return 0; /* vanished: skip it */
	n = fuse_add_direntry_plus(req, p, rem, de->name, &e, next);
	if (n > rem)
		fs_inode_forget(fs, (struct fs_inode *)(uintptr_t)e.ino, 1);
	return n;
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fs_file *f, bool plus)
{
	struct fs *fs = fs_of(req);
	_cleanup_free_ char *buf = calloc(1, size);
	size_t rem = size;
	int r = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (plus)
		pthread_rwlock_rdlock(&fs->ns_lock);
	if (off == 0 || !f->ents)
		r = load_dir(fs, f);
	for (size_t k = (size_t)off; r == 0 && k < f->n_ents; k++) {
		const struct fs_dirent *de = &f->ents[k];
		char *p = buf + (size - rem);
		size_t n;

		if (plus) {
			n = add_plus(req, f, de, p, rem, (off_t)k + 1);
			if (n == 0)
				continue;
		} else {
			struct stat st = { .st_ino = de->ino, .st_mode = de->type };
			n = fuse_add_direntry(req, p, rem, de->name, &st, (off_t)k + 1);
		}
		if (n > rem)
			break;
		rem -= n;
	}
	if (plus)
		pthread_rwlock_unlock(&fs->ns_lock);
	if (r < 0 && rem == size)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, buf, size - rem);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	do_readdir(req, size, off, (struct fs_file *)(uintptr_t)fi->fh, false);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, size, off, (struct fs_file *)(uintptr_t)fi->fh, true);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;

	free_ents(f);
	free(f);
	fuse_reply_err(req, 0);
}

void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_inode *i = fs_inode(req, ino);

	if (i->vkind != FS_VK_NONE) {
		fuse_reply_err(req, 0);
		return;
	}
	fuse_reply_err(req, -fs_journal_sync(fs_of(req), 0));
}
