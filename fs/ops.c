/* SPDX-License-Identifier: MIT */
/*
 * ops.c - the FUSE low-level ops table: lookup and inode lifetime,
 * attributes, namespace operations, directories, xattrs, statfs.
 *
 * Every mutation here obeys the write-ahead rule: its record is appended
 * and made durable (fs_journal_append_durable) before the change is
 * applied to the backing file system. Namespace operations hold
 * fs->ns_lock exclusively from their checks to the end: they check what
 * the backing call would refuse (the name exists, is missing, the
 * directory is not empty...), journal, then apply. Those that remove a
 * name (unlink, rmdir, rename) run between two fences (fs_journal_fence),
 * so that recovery never replays a record across them. A change that
 * fails after its record is compensated: an unlink/rmdir record for a
 * failed creation, the real attributes or xattr for a failed attribute
 * change; a failure that cannot be compensated puts the file system in the
 * failed state (see journal.c).
 */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

struct mfs_rec *fs_rec_new(enum mfs_rec_type type)
{
	struct mfs_rec *rec = calloc(1, sizeof(*rec));

	if (rec)
		rec->type = type;
	return rec;
}


static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

void fs_reply_entry_or_err(fuse_req_t req, int r, struct fuse_entry_param *e)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else if (fuse_reply_entry(req, e) != 0)
		fs_inode_forget(fs_of(req), (struct fs_inode *)(uintptr_t)e->ino, 1);
}

/* ================================================================ init, lookup, forget */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* the kernel clears suid/sgid itself with a (journaled) setattr */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
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

	if (p->vkind != FS_VK_NONE || fs_is_reserved(fs, p, name)) {
		fs_vtree_lookup(req, p, name);
		return;
	}
	pthread_rwlock_rdlock(&fs->ns_lock);
	r = fs_inode_lookup(fs, p, name, &e);
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

/* ================================================================ attributes */

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_inode *i = fs_inode(req, ino);
	struct stat st;

	if (i->vkind != FS_VK_NONE) {
		fs_vtree_getattr(req, i);
		return;
	}
	if (fstatat(i->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fs_snap_fix_nlink(fs_of(req), &st);
	fs_pending_fix_stat(i, &st);
	fuse_reply_attr(req, &st, fs_of(req)->timeout);
}

static int journal_first(struct fs *fs, struct mfs_rec *rec, uint64_t *lsn);

/* Append an attribute record after its change was applied. */
int fs_append_after(struct fs *fs, struct fs_inode *i, struct mfs_rec *rec)
{
	uint64_t lsn;
	int r = fs_journal_append(fs, rec, &lsn);

	if (r < 0) {
		fs_fail(fs, r, "a change was applied but could not be journaled");
		return -EIO;
	}
	atomic_store(&i->last_lsn, lsn);
	return 0;
}

/*
 * An attribute change failed after its record was made durable: journal
 * the attributes the backing file really has (durably: a mirror must not
 * apply what the primary refused).
 */
static void compensate_attrs(struct fs *fs, struct fs_inode *i, struct mfs_rec *rec)
{
	struct stat st;
	uint64_t lsn;
	int r;

	if (fstatat(i->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		fs_fail(fs, -errno, "a failed attribute change could not be compensated");
		return;
	}
	rec->type = MFS_REC_CHOWN;
	rec->uid = st.st_uid;
	rec->gid = st.st_gid;
	r = fs_journal_append(fs, rec, &lsn);
	if (r == 0 && !S_ISLNK(st.st_mode)) {
		rec->type = MFS_REC_CHMOD;
		rec->mode = st.st_mode & 07777;
		r = fs_journal_append(fs, rec, &lsn);
	}
	if (r == 0) {
		rec->type = MFS_REC_UTIMENS;
		rec->atime_sec = st.st_atim.tv_sec;
		rec->atime_nsec = (uint32_t)st.st_atim.tv_nsec;
		rec->mtime_sec = st.st_mtim.tv_sec;
		rec->mtime_nsec = (uint32_t)st.st_mtim.tv_nsec;
		r = fs_journal_append_durable(fs, rec, &lsn);
	}
	if (r < 0)
		fs_fail(fs, r, "a failed attribute change could not be compensated");
}

/* Journal @rec (durably) if @journaled, then apply it with @apply. */
static int attr_change(struct fs *fs, struct fs_inode *i, struct mfs_rec *rec, bool journaled,
		       int (*apply)(struct fs_inode *i, int fd, const struct mfs_rec *rec), int fd)
{
	uint64_t lsn = 0;
	int r = 0;

	if (journaled)
		r = journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	r = apply(i, fd, rec);
	fs_dirty_add(fs, i);
	if (r < 0 && journaled)
		compensate_attrs(fs, i, rec);
	else if (journaled)
		atomic_store(&i->last_lsn, lsn);
	return r;
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
	return attr_change(fs, i, rec, journaled, apply_mode, fd);
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
	return attr_change(fs, i, rec, journaled, apply_owner, -1);
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
	return attr_change(fs, i, rec, journaled, apply_times, -1);
}

static int do_setattr(struct fs *fs, struct fs_inode *i, struct stat *attr, int valid, int fd)
{
	_cleanup_free_ struct mfs_rec *rec = fs_rec_new(MFS_REC_CHMOD);
	int r, jr;

	if (!rec)
		return -ENOMEM;
	r = fs_check_failed(fs);
	if (r < 0)
		return r;
	jr = fs_inode_jpath(fs, i, rec->path);
	if (jr < 0)
		return jr;
	if (valid & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
		     FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))
		fs_snap_cow(fs, i, 0, 0); /* a snapshot keeps the old attributes */
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

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_inode *i = fs_inode(req, ino);
	struct fs_file *f = fi ? (struct fs_file *)(uintptr_t)fi->fh : NULL;
	int r;

	if (i->vkind != FS_VK_NONE) {
		fs_vtree_setattr(req, i, valid);
		return;
	}
	pthread_rwlock_rdlock(&fs->ns_lock);
	pthread_mutex_lock(&i->lock);
	r = do_setattr(fs, i, attr, valid, f ? f->fd : -1);
	pthread_mutex_unlock(&i->lock);
	pthread_rwlock_unlock(&fs->ns_lock);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		op_getattr(req, ino, fi);
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

/* ================================================================ namespace */

/* Journal @rec durably; returns 0 and sets *lsn, or -errno with nothing
 * applied. */
static int journal_first(struct fs *fs, struct mfs_rec *rec, uint64_t *lsn)
{
	int r = fs_check_failed(fs);

	return r < 0 ? r : fs_journal_append_durable(fs, rec, lsn);
}

/* After a failed apply: journal the compensation, or fail the fs. */
void fs_compensate(struct fs *fs, struct mfs_rec *undo, const char *what)
{
	uint64_t lsn;

	if (!undo || fs_journal_append(fs, undo, &lsn) < 0)
		fs_fail(fs, -EIO, what);
}

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

/* After creating @name: give it to its owner, fix up the journal if the
 * backing fs chose another mode or owner, look it up. */
int fs_finish_new(struct fs *fs, struct fs_inode *p, const char *name, struct mfs_rec *rec,
		      uint64_t lsn, struct fuse_entry_param *e)
{
	struct fs_inode *i;
	int r;

	/* chown clears the set-id bits of a non-folder (root's too): the new
	 * node gets back those it was created with, as it would natively */
	if (fs->is_root && fchownat(p->fd, name, rec->uid, rec->gid, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (rec->mode & (S_ISUID | S_ISGID)) && !S_ISDIR(rec->mode) && !S_ISLNK(rec->mode) &&
	    fchmodat(p->fd, name, rec->mode & 07777, 0) < 0)
		log_debug("cannot give '%s' back its set-id bits: %m (journaled as it is)", name);
	r = fs_inode_lookup(fs, p, name, e);
	if (r < 0)
		return r;
	i = (struct fs_inode *)(uintptr_t)e->ino;
	atomic_store(&i->last_lsn, lsn);
	atomic_store(&p->last_lsn, lsn);
	fs_dirty_add(fs, p);
	fs_dirty_add(fs, i);
	if ((e->attr.st_uid != rec->uid || e->attr.st_gid != rec->gid)) {
		rec->type = MFS_REC_CHOWN;
		rec->uid = e->attr.st_uid;
		rec->gid = e->attr.st_gid;
		r = fs_append_after(fs, i, rec);
	}
	if (r == 0 && !S_ISLNK(e->attr.st_mode) && (e->attr.st_mode & 07777) != (rec->mode & 07777)) {
		rec->type = MFS_REC_CHMOD;
		rec->mode = e->attr.st_mode & 07777;
		r = fs_append_after(fs, i, rec);
	}
	return r;
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
	r = journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	r = apply_new(p, name, rec, link);
	fs_dirty_add(fs, p);
	if (r < 0) {
		fs_compensate(fs, undo, "a failed creation could not be compensated");
		return r;
	}
	return fs_finish_new(fs, p, name, rec, lsn, e);
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

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	mknod_common(req, parent, name, mode, rdev, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	mknod_common(req, parent, name, S_IFDIR | mode, 0, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	mknod_common(req, parent, name, S_IFLNK | 0777, 0, link);
}

/* After a removal was applied: the second fence (see fs_journal_fence). */
static void fence_after(struct fs *fs, bool durable)
{
	int r = fs_journal_fence(fs, durable);

	if (r < 0)
		fs_fail(fs, r, "cannot make a removal durable on the backing files");
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
	if (r == 0)
		r = fs_journal_fence(fs, false);
	if (r == 0)
		r = journal_first(fs, rec, &lsn);
	if (r < 0)
		return r;
	r = unlinkat(p->fd, name, dir ? AT_REMOVEDIR : 0) < 0 ? -errno : 0;
	fs_dirty_add(fs, p);
	if (r < 0) {
		fs_fail(fs, r, "a journaled removal failed");
		return r;
	}
	fence_after(fs, false);
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

	if (p->vkind != FS_VK_NONE && !dir) {
		fs_vtree_unlink(req, p, name);
		return;
	}
	pthread_rwlock_wrlock(&fs->ns_lock);
	r = do_remove(fs, p, name, dir);
	pthread_rwlock_unlock(&fs->ns_lock);
	fuse_reply_err(req, -r);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
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
		r = journal_first(fs, rec, &lsn);
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
	fence_after(fs, flags & RENAME_EXCHANGE);
	atomic_store(&p->last_lsn, lsn);
	atomic_store(&np->last_lsn, lsn);
	rename_links(fs, p, name, np, newname, flags, &src, &dst, dst_exists);
	return 0;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
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
		r = fs_inode_jpath(fs, i, rec->path);
	if (r == 0)
		r = -ENOENT; /* no name left to link from */
	if (r > 0)
		r = fs_entry_path(fs, np, newname, rec->path2, sizeof(rec->path2));
	if (r < 0)
		return r;
	memcpy(undo->path, rec->path2, sizeof(rec->path2));
	r = journal_first(fs, rec, &lsn);
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
	return fs_inode_lookup(fs, np, newname, e);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	int r;

	pthread_rwlock_wrlock(&fs->ns_lock);
	r = do_link(fs, fs_inode(req, ino), fs_inode(req, newparent), newname, &e);
	pthread_rwlock_unlock(&fs->ns_lock);
	fs_reply_entry_or_err(req, r, &e);
}

/* ================================================================ directories */

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

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
		struct fs_inode *c = fs_snapview_child(fs, f->inode, de->name);
		if (!c)
			return 0;
		if (fs_snapview_stat(fs, c, &e.attr) < 0) {
			fs_snapview_forget(fs, c, 1);
			return 0;
		}
		e.ino = (uintptr_t)c;
		e.attr_timeout = e.entry_timeout = fs->timeout;
		n = fuse_add_direntry_plus(req, p, rem, de->name, &e, next);
		if (n > rem)
			fs_snapview_forget(fs, c, 1);
		return n;
	}
	if (de->virt || f->inode->vkind != FS_VK_NONE) {
		e.attr.st_ino = de->ino;
		e.attr.st_mode = de->type;
		return fuse_add_direntry_plus(req, p, rem, de->name, &e, next);
	}
	if (fs_inode_lookup(fs, f->inode, de->name, &e) < 0)
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

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, size, off, (struct fs_file *)(uintptr_t)fi->fh, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, size, off, (struct fs_file *)(uintptr_t)fi->fh, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;

	free_ents(f);
	free(f);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fs_inode *i = fs_inode(req, ino);

	if (i->vkind != FS_VK_NONE) {
		fuse_reply_err(req, 0);
		return;
	}
	fuse_reply_err(req, -fs_journal_sync(fs_of(req), 0));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	if (fstatvfs(fs_of(req)->sync_fd, &st) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &st);
}

/* ================================================================ xattrs */

#define XATTR_CAPS "security.capability"

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs_inode *i = fs_inode(req, ino);
	_cleanup_free_ char *buf = NULL;
	char proc[64];
	uint64_t gen;
	bool caps;
	ssize_t n;

	if (i->vkind == FS_VK_SNAP) {
		fs_snapview_getxattr(req, i, name, size);
		return;
	}
	if (i->vkind != FS_VK_NONE) {
		fuse_reply_err(req, ENODATA);
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

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs_inode *i = fs_inode(req, ino);
	_cleanup_free_ char *buf = NULL;
	char proc[64];
	ssize_t n;

	if (i->vkind == FS_VK_SNAP) {
		fs_snapview_listxattr(req, i, size);
		return;
	}
	if (i->vkind != FS_VK_NONE) {
		if (size)
			fuse_reply_buf(req, NULL, 0);
		else
			fuse_reply_xattr(req, 0);
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

/* A failed xattr change after its record: journal the attribute as it is. */
static void compensate_xattr(struct fs *fs, const char *proc, struct mfs_rec *rec)
{
	_cleanup_free_ char *val = malloc(MFS_XATTR_VALUE_MAX);
	ssize_t n = val ? getxattr(proc, rec->path2, val, MFS_XATTR_VALUE_MAX) : -1;
	uint64_t lsn;

	if (n < 0 && errno != ENODATA) {
		fs_fail(fs, -EIO, "a failed xattr change could not be compensated");
		return;
	}
	rec->type = n >= 0 ? MFS_REC_SETXATTR : MFS_REC_REMOVEXATTR;
	rec->flags = 0;
	rec->data = n >= 0 ? val : NULL;
	rec->data_len = n >= 0 ? (uint32_t)n : 0;
	if (fs_journal_append_durable(fs, rec, &lsn) < 0)
		fs_fail(fs, -EIO, "a failed xattr change could not be compensated");
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
	r = fs_check_failed(fs);
	if (r < 0)
		return r;
	jr = fs_inode_jpath(fs, i, rec->path);
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
		r = journal_first(fs, rec, &lsn);
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
		compensate_xattr(fs, proc, rec);
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

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	xattr_common(req, ino, name, value ? value : "", size, flags);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	xattr_common(req, ino, name, NULL, 0, 0);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = fs_op_open,
	.read = fs_op_read,
	.write_buf = fs_op_write_buf,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = fs_op_create,
	.fallocate = fs_op_fallocate,
	.copy_file_range = fs_op_copy_file_range,
	.lseek = fs_op_lseek,
};
