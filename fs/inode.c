/* SPDX-License-Identifier: MIT */
/*
 * inode.c - the inode table: one struct fs_inode per backing inode the
 * kernel knows, holding an O_PATH fd (as libfuse's passthrough_ll), keyed
 * by (st_dev, st_ino), plus the names each inode is known by.
 *
 * Names make journal paths: a record names a file by its path relative to
 * DATADIR, computed by walking (parent, name) links up to the root. Every
 * namespace change goes through mirrorfs under fs->ns_lock held
 * exclusively, so the links are current whenever a mutation computes a
 * path. An inode without names (unlinked while open) has no path; its
 * writes are not journaled because the file no longer exists in the tree.
 *
 * Lifetime: an inode is freed when the kernel has forgotten it (nlookup 0)
 * and nothing refers to it (refs 0: child links, open handles). A link
 * holds a reference on its parent, so a path can always be computed.
 *
 * The modules above keep state of their own in a live inode (pending.c's
 * writes): fs->hooks.inode_init and inode_done set it up and tear it down
 * as the table makes and frees one, with fs->itable_lock held.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/macro.h"

#define N_BUCKETS 65536u
#define MAX_DEPTH 2048

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t), "fuse_ino_t must hold a pointer");

void fs_proc_path(int fd, char buf[64])
{
	snprintf(buf, 64, "/proc/self/fd/%d", fd);
}

static size_t bucket(struct fs *fs, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;

	return (size_t)(h >> 16) & (fs->n_buckets - 1);
}

int fs_itable_init(struct fs *fs)
{
	fs->n_buckets = N_BUCKETS;
	fs->itable = calloc(fs->n_buckets, sizeof(*fs->itable));
	if (!fs->itable)
		return -ENOMEM;
	pthread_mutex_init(&fs->itable_lock, NULL);
	pthread_mutex_init(&fs->root.lock, NULL);
	if (fs->hooks.inode_init)
		fs->hooks.inode_init(&fs->root);
	fs->root.nlookup = 2;
	fs->root.type = S_IFDIR;
	atomic_store(&fs->root.nocaps_gen, FS_NOCAPS_UNKNOWN);
	return 0;
}

static void inode_free(struct fs *fs, struct fs_inode *i)
{
	if (i->fd >= 0)
		close(i->fd);
	pthread_mutex_destroy(&i->lock);
	if (fs->hooks.inode_done)
		fs->hooks.inode_done(i);
	free(i->vname);
	free(i);
}

void fs_itable_done(struct fs *fs)
{
	for (size_t b = 0; fs->itable && b < fs->n_buckets; b++) {
		struct fs_inode *i = fs->itable[b];
		while (i) {
			struct fs_inode *next = i->hnext;
			struct fs_link *l = i->links;
			while (l) {
				struct fs_link *ln = l->next;
				free(l);
				l = ln;
			}
			inode_free(fs, i);
			i = next;
		}
	}
	free(fs->itable);
	fs->itable = NULL;
}

struct fs_inode *fs_inode(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fuse_req_userdata(req);

	if (ino == FUSE_ROOT_ID)
		return &fs->root;
	return (struct fs_inode *)(uintptr_t)ino;
}

static struct fs_inode *find_locked(struct fs *fs, dev_t dev, ino_t ino)
{
	for (struct fs_inode *i = fs->itable[bucket(fs, dev, ino)]; i; i = i->hnext)
		if (i->ino == ino && i->dev == dev)
			return i;
	return NULL;
}

struct fs_inode *fs_inode_find(struct fs *fs, dev_t dev, ino_t ino)
{
	struct fs_inode *i;

	if (fs->root.dev == dev && fs->root.ino == ino)
		return &fs->root;
	pthread_mutex_lock(&fs->itable_lock);
	i = find_locked(fs, dev, ino);
	pthread_mutex_unlock(&fs->itable_lock);
	return i;
}

static void put_locked(struct fs *fs, struct fs_inode *i);

static void unlink_from_hash_locked(struct fs *fs, struct fs_inode *i)
{
	struct fs_inode **pp = &fs->itable[bucket(fs, i->dev, i->ino)];

	while (*pp && *pp != i)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = i->hnext;
}

/* Free @i if nothing refers to it any more. Called with itable_lock held. */
static void put_locked(struct fs *fs, struct fs_inode *i)
{
	struct fs_link *l;

	if (i == &fs->root || i->vkind != FS_VK_NONE || i->nlookup || i->refs)
		return;
	unlink_from_hash_locked(fs, i);
	l = i->links;
	i->links = NULL;
	while (l) {
		struct fs_link *next = l->next;
		struct fs_inode *p = l->parent;
		free(l);
		p->refs--;
		put_locked(fs, p);
		l = next;
	}
	inode_free(fs, i);
}

static bool has_link_locked(struct fs_inode *i, struct fs_inode *parent, const char *name)
{
	for (struct fs_link *l = i->links; l; l = l->next)
		if (l->parent == parent && !strcmp(l->name, name))
			return true;
	return false;
}

static void link_add_locked(struct fs_inode *i, struct fs_inode *parent, const char *name)
{
	size_t len = strlen(name);
	struct fs_link *l;

	if (has_link_locked(i, parent, name))
		return;
	l = malloc(sizeof(*l) + len + 1);
	if (!l)
		return; /* the name stays unknown: writes fall back to other names */
	memcpy(l->name, name, len + 1);
	l->parent = parent;
	parent->refs++;
	l->next = i->links;
	i->links = l;
}

static struct fs_link *link_take_locked(struct fs_inode *i, struct fs_inode *parent,
					const char *name)
{
	for (struct fs_link **pp = &i->links; *pp; pp = &(*pp)->next) {
		struct fs_link *l = *pp;
		if (l->parent == parent && !strcmp(l->name, name)) {
			*pp = l->next;
			return l;
		}
	}
	return NULL;
}

void fs_link_add(struct fs *fs, struct fs_inode *i, struct fs_inode *parent, const char *name)
{
	pthread_mutex_lock(&fs->itable_lock);
	link_add_locked(i, parent, name);
	pthread_mutex_unlock(&fs->itable_lock);
}

void fs_link_remove(struct fs *fs, struct fs_inode *i, struct fs_inode *parent, const char *name)
{
	struct fs_link *l;

	pthread_mutex_lock(&fs->itable_lock);
	l = link_take_locked(i, parent, name);
	if (l) {
		free(l);
		parent->refs--;
		put_locked(fs, parent);
	}
	pthread_mutex_unlock(&fs->itable_lock);
}

void fs_link_move(struct fs *fs, struct fs_inode *i, struct fs_inode *oldp, const char *oldname,
		  struct fs_inode *newp, const char *newname)
{
	struct fs_link *l;

	pthread_mutex_lock(&fs->itable_lock);
	l = link_take_locked(i, oldp, oldname);
	if (l) {
		free(l);
		link_add_locked(i, newp, newname);
		oldp->refs--;
		put_locked(fs, oldp);
	} else {
		link_add_locked(i, newp, newname);
	}
	pthread_mutex_unlock(&fs->itable_lock);
}

void fs_inode_ref(struct fs *fs, struct fs_inode *i)
{
	pthread_mutex_lock(&fs->itable_lock);
	i->refs++;
	pthread_mutex_unlock(&fs->itable_lock);
}

void fs_inode_unref(struct fs *fs, struct fs_inode *i)
{
	pthread_mutex_lock(&fs->itable_lock);
	i->refs--;
	put_locked(fs, i);
	pthread_mutex_unlock(&fs->itable_lock);
}

void fs_inode_forget(struct fs *fs, struct fs_inode *i, uint64_t n)
{
	if (i->ops) {
		i->ops->forget(fs, i, n);
		return;
	}
	pthread_mutex_lock(&fs->itable_lock);
	i->nlookup = i->nlookup >= n ? i->nlookup - n : 0;
	put_locked(fs, i);
	pthread_mutex_unlock(&fs->itable_lock);
}

static struct fs_inode *inode_new(struct fs *fs, int fd, const struct stat *st)
{
	struct fs_inode *i = calloc(1, sizeof(*i));

	if (!i)
		return NULL;
	i->fd = fd;
	i->dev = st->st_dev;
	i->ino = st->st_ino;
	i->type = st->st_mode & S_IFMT;
	atomic_store(&i->nocaps_gen, FS_NOCAPS_UNKNOWN);
	pthread_mutex_init(&i->lock, NULL);
	if (fs->hooks.inode_init)
		fs->hooks.inode_init(i);
	return i;
}

int fs_inode_lookup(struct fs *fs, struct fs_inode *parent, const char *name,
		    struct fuse_entry_param *e)
{
	_cleanup_close_ int fd = -EBADF;
	struct fs_inode *i;

	memset(e, 0, sizeof(*e));
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;

	pthread_mutex_lock(&fs->itable_lock);
	i = find_locked(fs, e->attr.st_dev, e->attr.st_ino);
	if (!i) {
		i = inode_new(fs, fd, &e->attr);
		if (!i) {
			pthread_mutex_unlock(&fs->itable_lock);
			return -ENOMEM;
		}
		fd = -EBADF;
		i->hnext = fs->itable[bucket(fs, i->dev, i->ino)];
		fs->itable[bucket(fs, i->dev, i->ino)] = i;
	}
	i->nlookup++;
	if (S_ISDIR(i->type) && i->links && !has_link_locked(i, parent, name)) {
		/* a directory has one name: an old one is stale */
		struct fs_link *l = i->links;
		i->links = NULL;
		link_add_locked(i, parent, name);
		l->parent->refs--;
		put_locked(fs, l->parent);
		free(l);
	} else {
		link_add_locked(i, parent, name);
	}
	pthread_mutex_unlock(&fs->itable_lock);
	e->ino = (uintptr_t)i;
	return 0;
}

bool fs_inode_has_name(struct fs *fs, struct fs_inode *i)
{
	bool r;

	if (i == &fs->root)
		return true;
	pthread_mutex_lock(&fs->itable_lock);
	r = i->links != NULL;
	pthread_mutex_unlock(&fs->itable_lock);
	return r;
}

int fs_inode_path(struct fs *fs, struct fs_inode *i, char *buf, size_t cap)
{
	const char *comps[MAX_DEPTH];
	size_t n = 0, pos = 0;
	int r = 0;

	pthread_mutex_lock(&fs->itable_lock);
	for (struct fs_inode *cur = i; cur != &fs->root;) {
		if (!cur->links) {
			r = -ENOENT;
			goto out;
		}
		if (n == MAX_DEPTH) {
			r = -ENAMETOOLONG;
			goto out;
		}
		comps[n++] = cur->links->name;
		cur = cur->links->parent;
	}
	while (n > 0) {
		const char *c = comps[--n];
		size_t len = strlen(c);
		/* this component, the '/' if more follow, and the NUL */
		size_t need = pos + len + (n ? 1 : 0);
		if (need + 1 > cap || need > MFS_PATH_MAX) {
			r = -ENAMETOOLONG;
			goto out;
		}
		memcpy(buf + pos, c, len);
		pos += len;
		if (n)
			buf[pos++] = '/';
	}
	buf[pos] = 0;
out:
	pthread_mutex_unlock(&fs->itable_lock);
	return r;
}

int fs_entry_path(struct fs *fs, struct fs_inode *parent, const char *name, char *buf,
		  size_t cap)
{
	size_t len, nlen = strlen(name);
	int r;

	r = fs_inode_path(fs, parent, buf, cap);
	if (r < 0)
		return r;
	len = strlen(buf);
	if (len + nlen + 2 > cap || len + nlen + 1 > MFS_PATH_MAX)
		return -ENAMETOOLONG;
	if (len)
		buf[len++] = '/';
	memcpy(buf + len, name, nlen + 1);
	return 0;
}

int fs_inode_jpath(struct fs *fs, struct fs_inode *i, char *buf)
{
	int r;

	if (i == &fs->root || i->vkind != FS_VK_NONE)
		return 0;
	r = fs_inode_path(fs, i, buf, MFS_PATH_MAX + 1);
	if (r == -ENOENT)
		return 0;
	return r < 0 ? r : 1;
}

void fs_reply_entry_or_err(fuse_req_t req, int r, struct fuse_entry_param *e)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (fuse_reply_entry(req, e) != 0)
		fs_inode_forget(fs_of(req), (struct fs_inode *)(uintptr_t)e->ino, 1);
}
