/* SPDX-License-Identifier: MIT */
/*
 * names.c - namespace operations: mknod, mkdir, symlink, unlink, rmdir,
 * rename, link. Each holds fs->ns_lock exclusively from its checks to the
 * end: it checks what the backing call would refuse (the name exists, is
 * missing, the directory is not empty...), journals, then applies
 * (mutate.c). Removals (rmdir, rename, unlink of a name that is not a
 * file's last) and link run after a fence, and a rename also before a
 * second one (mutate.c).
 */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mirrorfs/macro.h"

static int name_check(struct fs *fs, struct fs_inode *p, const char *name)
{
	if (p->vkind == FS_VK_SNAP || p->vkind == FS_VK_SNAPS)
		return -EROFS;
	if (p->vkind != FS_VK_NONE || fs_is_reserved(fs, p, name))
		return -EPERM;
	if (strlen(name) > MFS_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* The name must not exist (creation). */
static int must_be_absent(struct fs_inode *p, const char *name)
{
	struct stat st;

	if (fstatat(p->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	return errno == ENOENT ? 0 : -errno;
}

static bool dir_is_empty(int pfd, const char *name)
{
	int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;

	if (fd < 0)
		return true; /* let the backing call decide */
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return true;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			return false;
	return true;
}

/* Owner of a new node: the caller, the parent's group if it is setgid. */
static void new_owner(fuse_req_t req, struct fs_inode *p, uint32_t *uid, uint32_t *gid)
{
	struct fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;

	*uid = fs->is_root ? ctx->uid : getuid();
	*gid = fs->is_root ? ctx->gid : getgid();
	if (fstatat(p->fd, "", &st, AT_EMPTY_PATH) == 0 && (st.st_mode & S_ISGID))
		*gid = st.st_gid;
}

static int apply_new(struct fs_inode *p, const char *name, const struct mfs_rec *rec,
		     const char *link)
{
	int r;

	if (rec->type == MFS_REC_MKDIR)
		r = mkdirat(p->fd, name, rec->mode);
	else if (rec->type == MFS_REC_SYMLINK)
		r = symlinkat(link, p->fd, name);
	else
		r = mknodat(p->fd, name, rec->mode, (dev_t)rec->rdev);
	return r < 0 ? -errno : 0;
}

/* mknod, mkdir, symlink: check, journal, apply, compensate on failure. */
static int make_node(fuse_req_t req, struct fs_inode *p, const char *name, mode_t mode,
		     dev_t rdev, const char *link, struct fuse_entry_param *e)
{
	struct fs *fs = fs_of(req);
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_MKNOD);
	_cleanup_free_ struct mfs_rec *undo = fs_rec_new(MFS_REC_UNLINK);
	uint64_t lsn;
	int r;

	if (!rec || !undo)
		return -ENOMEM;
	r = name_check(fs, p, name);
	if (r == 0)
		r = must_be_absent(p, name);
	if (r == 0)
		r = fs_entry_path(fs, p, name, rec->path, sizeof(rec->path));
	if (r < 0)
		return r;
	if (link && strlen(link) > MFS_PATH_MAX)
		return -ENAMETOOLONG;
	new_owner(req, p, &rec->uid, &rec->gid);
	if (S_ISDIR(mode)) {
		rec->type = MFS_REC_MKDIR;
		rec->mode = mode & 07777;
		undo->type = MFS_REC_RMDIR;
	} else if (link) {
		rec->type = MFS_REC_SYMLINK;
		snprintf(rec->path2, sizeof(rec->path2), "%s", link);
		rec->mode = 0777;
	} else {
		rec->mode = mode;
		rec->rdev = rdev;
	}
	memcpy(undo->path, rec->path, sizeof(rec->path));
	r = fs_journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	r = apply_new(p, name, rec, link);
	fs_dirty_add(fs, p);
	if (r < 0) {
		fs_compensate(fs, undo, "a failed creation could not be compensated");
		return r;
	}
	r = fs_finish_new(fs, p, name, rec, lsn, e);
	if (r == 0)
		fs_stat_fix(fs, (struct fs_inode *)(uintptr_t)e->ino, &e->attr);
	return r;
}

static void mknod_common(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 dev_t rdev, const char *link)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	int r;

	pthread_rwlock_wrlock(&fs->ns_lock);
	r = make_node(req, fs_inode(req, parent), name, mode, rdev, link, &e);
	pthread_rwlock_unlock(&fs->ns_lock);
	fs_reply_entry_or_err(req, r, &e);
}

void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	mknod_common(req, parent, name, mode, rdev, NULL);
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	mknod_common(req, parent, name, S_IFDIR | mode, 0, NULL);
}

void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	mknod_common(req, parent, name, S_IFLNK | 0777, 0, link);
}

/* unlink and rmdir */
static int do_remove(struct fs *fs, struct fs_inode *p, const char *name, bool dir)
{
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(dir ? MFS_REC_RMDIR : MFS_REC_UNLINK);
	struct fs_inode *i;
	struct stat st;
	uint64_t lsn;
	int r;

	if (!rec)
		return -ENOMEM;
	r = name_check(fs, p, name);
	if (r < 0)
		return r;
	if (fstatat(p->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (dir && !S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (!dir && S_ISDIR(st.st_mode))
		return -EISDIR;
	if (dir && !dir_is_empty(p->fd, name))
		return -ENOTEMPTY;
	r = fs_entry_path(fs, p, name, rec->path, sizeof(rec->path));
	if (r == 0 && !fs_remove_is_unfenced(dir, &st))
		r = fs_journal_fence(fs, false);
	if (r == 0)
		r = fs_journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	r = unlinkat(p->fd, name, dir ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
	fs_dirty_add(fs, p);
	if (r < 0) {
		fs_fail(fs, r, "a journaled removal failed");
		return r;
	}
	/* no second fence: an unlink or rmdir replayed after the records
	 * that follow it gives their tree (mutate.c) */
	atomic_store(&p->last_lsn, lsn);
	i = fs_inode_find(fs, st.st_dev, st.st_ino);
	if (i)
		fs_link_remove(fs, i, p, name);
	return 0;
}

static void remove_common(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *p = fs_inode(req, parent);
	int r;

	if (p->ops && !dir) {
		p->ops->unlink(req, p, name);
		return;
	}
	pthread_rwlock_wrlock(&fs->ns_lock);
	r = do_remove(fs, p, name, dir);
	pthread_rwlock_unlock(&fs->ns_lock);
	fuse_reply_err(req, -r);
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, false);
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, true);
}

/* What rename would refuse, checked before journaling. */
static int rename_check(struct fs_inode *p, const char *name, struct fs_inode *np,
			const char *newname, unsigned flags, struct stat *src, struct stat *dst,
			bool *dst_exists)
{
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (fstatat(p->fd, name, src, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	*dst_exists = fstatat(np->fd, newname, dst, AT_SYMLINK_NOFOLLOW) == 0;
	if (!*dst_exists && errno != ENOENT)
		return -errno;
	if ((flags & RENAME_NOREPLACE) && *dst_exists)
		return -EEXIST;
	if (flags & RENAME_EXCHANGE)
		return *dst_exists ? 0 : -ENOENT;
	if (!*dst_exists)
		return 0;
	if (S_ISDIR(src->st_mode) && !S_ISDIR(dst->st_mode))
		return -ENOTDIR;
	if (!S_ISDIR(src->st_mode) && S_ISDIR(dst->st_mode))
		return -EISDIR;
	if (S_ISDIR(dst->st_mode) && !dir_is_empty(np->fd, newname))
		return -ENOTEMPTY;
	return 0;
}

static void rename_links(struct fs *fs, struct fs_inode *p, const char *name,
			 struct fs_inode *np, const char *newname, unsigned flags,
			 const struct stat *src, const struct stat *dst, bool dst_exists)
{
	struct fs_inode *si = fs_inode_find(fs, src->st_dev, src->st_ino);
	struct fs_inode *di = dst_exists ? fs_inode_find(fs, dst->st_dev, dst->st_ino) : NULL;

	if (di && !(flags & RENAME_EXCHANGE))
		fs_link_remove(fs, di, np, newname);
	if (si)
		fs_link_move(fs, si, p, name, np, newname);
	if (di && (flags & RENAME_EXCHANGE))
		fs_link_move(fs, di, np, newname, p, name);
}

static int do_rename(struct fs *fs, struct fs_inode *p, const char *name, struct fs_inode *np,
		     const char *newname, unsigned flags)
{
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_RENAME);
	_cleanup_free_ struct mfs_rec *undo = NULL;
	struct stat src, dst;
	bool dst_exists;
	uint64_t lsn;
	int r;

	if (!rec)
		return -ENOMEM;
	r = name_check(fs, p, name);
	if (r == 0)
		r = name_check(fs, np, newname);
	if (r == 0)
		r = rename_check(p, name, np, newname, flags, &src, &dst, &dst_exists);
	if (r < 0)
		return r;
	if (dst_exists && !(flags & RENAME_EXCHANGE) && src.st_ino == dst.st_ino &&
	    src.st_dev == dst.st_dev)
		return 0; /* two names of one file: rename does nothing */
	r = fs_entry_path(fs, p, name, rec->path, sizeof(rec->path));
	if (r == 0)
		r = fs_entry_path(fs, np, newname, rec->path2, sizeof(rec->path2));
	if (r < 0)
		return r;
	rec->flags = flags;
	if (!dst_exists || (flags & RENAME_EXCHANGE)) {
		undo = fs_rec_new(MFS_REC_RENAME);
		if (!undo)
			return -ENOMEM;
		memcpy(undo->path, rec->path2, sizeof(rec->path2));
		memcpy(undo->path2, rec->path, sizeof(rec->path));
		undo->flags = flags;
	}
	r = fs_journal_fence(fs, false);
	if (r == 0)
		r = fs_journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	r = renameat2(p->fd, name, np->fd, newname, flags) < 0 ? -errno : 0;
	fs_dirty_add(fs, p);
	fs_dirty_add(fs, np);
	if (r < 0) {
		fs_compensate(fs, undo, "a failed rename could not be compensated");
		return r;
	}
	/* replaying an exchange twice undoes it: its mark is made durable */
	fs_fence_after(fs, flags & RENAME_EXCHANGE);
	atomic_store(&p->last_lsn, lsn);
	atomic_store(&np->last_lsn, lsn);
	rename_links(fs, p, name, np, newname, flags, &src, &dst, dst_exists);
	return 0;
}

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	int r;

	pthread_rwlock_wrlock(&fs->ns_lock);
	r = do_rename(fs, fs_inode(req, parent), name, fs_inode(req, newparent), newname, flags);
	pthread_rwlock_unlock(&fs->ns_lock);
	fuse_reply_err(req, -r);
}

static int do_link(struct fs *fs, struct fs_inode *i, struct fs_inode *np, const char *newname,
		   struct fuse_entry_param *e)
{
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_LINK);
	_cleanup_free_ struct mfs_rec *undo = fs_rec_new(MFS_REC_UNLINK);
	char proc[64];
	uint64_t lsn;
	int r;

	if (!rec || !undo)
		return -ENOMEM;
	if (i->vkind != FS_VK_NONE)
		return -EPERM;
	r = name_check(fs, np, newname);
	if (r == 0)
		r = must_be_absent(np, newname);
	if (r == 0)
		r = fs_mutate_begin(fs, i, rec->path);
	if (r == 0)
		r = -ENOENT; /* no name left to link from */
	if (r > 0)
		r = fs_entry_path(fs, np, newname, rec->path2, sizeof(rec->path2));
	if (r < 0)
		return r;
	memcpy(undo->path, rec->path2, sizeof(rec->path2));
	/* a fence first: the name may be one whose file's last name was
	 * unlinked without one, and a record of that file replayed after
	 * this link would change the linked file (mutate.c) */
	r = fs_journal_fence(fs, false);
	if (r == 0)
		r = fs_journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	fs_proc_path(i->fd, proc);
	r = linkat(AT_FDCWD, proc, np->fd, newname, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
	fs_dirty_add(fs, np);
	fs_dirty_add(fs, i);
	if (r < 0) {
		fs_compensate(fs, undo, "a failed link could not be compensated");
		return r;
	}
	atomic_store(&i->last_lsn, lsn);
	atomic_store(&np->last_lsn, lsn);
	return fs_stat_lookup(fs, np, newname, e);
}

void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	int r;

	pthread_rwlock_wrlock(&fs->ns_lock);
	r = do_link(fs, fs_inode(req, ino), fs_inode(req, newparent), newname, &e);
	pthread_rwlock_unlock(&fs->ns_lock);
	fs_reply_entry_or_err(req, r, &e);
}
