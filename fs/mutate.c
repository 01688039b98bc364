/* SPDX-License-Identifier: MIT */
/*
 * mutate.c - the write-ahead protocol every mutation follows (the
 * namespace in names.c, attributes in attr.c, xattrs in xattr.c, data in
 * data.c):
 *
 *   1. checks: what the backing call would refuse, and the failed state
 *      (fs_check_failed: after a fatal error every mutation gets EIO);
 *      a change of an existing node starts with fs_mutate_begin (the
 *      failed check and its journal path);
 *   2. copy-on-write: a snapshot that holds the inode keeps what changes
 *      (fs_snap_cow, cow.c);
 *   3. record: appended and made durable (fs_journal_first) before the
 *      change is applied to the backing file system; data writes are
 *      kept pending until their group commit instead (pending.c);
 *   4. apply;
 *   5. compensation: a change that fails after its record gets a record
 *      of what the backing file system really has (an unlink/rmdir for a
 *      failed creation, the real attributes or xattr for a failed
 *      attribute change: fs_compensate, fs_attr_change,
 *      fs_compensate_xattr);
 *   6. failure: what cannot be compensated, or a change applied but not
 *      journaled, puts the file system in the failed state (fs_fail).
 *
 * Namespace operations hold fs->ns_lock exclusively from their checks to
 * the end; those that remove a name (unlink, rmdir, rename) run after a
 * fence (fs_journal_fence), so that recovery never replays a record
 * before a removal onto a tree that has it: a removal is the first record
 * of the tail recovery replays, or not in it. The unlink of a file's last
 * name is the exception (fs_remove_is_unfenced). A rename is also followed
 * by a second fence (fs_fence_after): replayed after records that made
 * its source name again, it would move the new object over its target.
 * An unlink or rmdir needs none: replayed after the records that follow
 * it, onto a tree that holds any subset of them, it removes whatever
 * those records put at its name (a folder recursively) and they put it
 * back (lib/replay.c, "Idempotency"); an older object comes under that
 * name again only by a link, which replay makes again, or by a rename,
 * which has its own first fence.
 */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"

/* The start of a mutation of @i: the failed check, then @i's journal path
 * into @path. */
int fs_mutate_begin(struct fs *fs, struct fs_inode *i, char *path)
{
	int r = fs_check_failed(fs);

	return r < 0 ? r : fs_inode_jpath(fs, i, path);
}

/* Journal @rec durably; returns 0 and sets *lsn, or -errno with nothing
 * applied. */
int fs_journal_first(struct fs *fs, struct mfs_rec *rec, uint64_t *lsn)
{
	int r = fs_check_failed(fs);

	return r < 0 ? r : fs_journal_append_durable(fs, rec, lsn);
}

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

/* After a failed apply: journal the compensation, or fail the fs. */
void fs_compensate(struct fs *fs, struct mfs_rec *undo, const char *what)
{
	uint64_t lsn;

	if (!undo || fs_journal_append(fs, undo, &lsn) < 0)
		fs_fail(fs, -EIO, what);
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
int fs_attr_change(struct fs *fs, struct fs_inode *i, struct mfs_rec *rec, bool journaled,
		   int (*apply)(struct fs_inode *i, int fd, const struct mfs_rec *rec), int fd)
{
	uint64_t lsn = 0;
	int r = 0;

	if (journaled)
		r = fs_journal_first(fs, rec, &lsn);
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

/* A failed xattr change after its record: journal the attribute as it is. */
void fs_compensate_xattr(struct fs *fs, const char *proc, struct mfs_rec *rec)
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

/*
 * Whether the removal of a name of @st (a folder if @dir) may run without
 * the first fence: the unlink of a non-folder's last name (st_nlink 1, on
 * the backing file, where a snapshot's hard link counts too). What the
 * fence guards against is a record before the removal replayed onto a tree
 * that the removal, and what came after it, already reached: a write
 * through a removed name that the file still has under another, a link
 * from it, a record below a removed folder would be skipped (the name is
 * missing), the other name keeping what the disk had. Before the last
 * name's unlink, every record that names the file concerns that file
 * alone, which nothing reaches once the name is gone:
 *  - replayed onto a tree without the name, it is skipped; onto one where
 *    later records put another object there, it changes that object, or,
 *    a data record finding no regular file, is done (redo.c,
 *    is_replaced); the unlink replayed after it then removes whatever
 *    is there, and the records after the unlink put back what they made
 *    (the argument above for the second fence);
 *  - a LINK from it made another name, so the file had two until that
 *    name's removal, which, not the last, ran after a fence; a RENAME has
 *    fences on both sides, so in a replayed tail it is alone, or first
 *    and replayed onto a tree missing its source (skipped: done);
 *  - an older object comes under the unlinked name again only by a LINK
 *    to it or a RENAME onto it, and both run after a fence: replayed onto
 *    that object, a record of the unlinked file would change it, and the
 *    replayed unlink would remove only the name (names.c, do_link).
 * The file's pending writes are in the journal before the unlink's record
 * and are applied when it is made durable; nothing of them needs to reach
 * the disk (no name reaches them after a crash: recovery replays them from
 * the journal as above), and a checkpoint does not fsync a file without a
 * name (pending.c). A create + write + close + unlink then costs two
 * journal syncs (the two records, write-ahead) instead of three fdatasyncs
 * and two fsyncs.
 */
bool fs_remove_is_unfenced(bool dir, const struct stat *st)
{
	return !dir && !S_ISDIR(st->st_mode) && st->st_nlink == 1;
}

/* After a rename was applied: the second fence (see fs_journal_fence). */
void fs_fence_after(struct fs *fs, bool durable)
{
	int r = fs_journal_fence(fs, durable);

	if (r < 0)
		fs_fail(fs, r, "cannot make a removal durable on the backing files");
}

/* After creating @name: give it to its owner, fix up the journal if the
 * backing fs chose another mode or owner, look it up. */
int fs_finish_new(struct fs *fs, struct fs_inode *p, const char *name, struct mfs_rec *rec,
		  uint64_t lsn, struct fuse_entry_param *e)
{
	/* made by root for root in its own group: already theirs (in a
	 * set-group-ID folder the node has the folder's group, which rec->gid
	 * is then, unequal to ours unless the same) */
	bool give = fs->is_root && (rec->uid != 0 || rec->gid != fs->egid);
	struct fs_inode *i;
	int r;

	/* chown clears the set-id bits of a non-folder (root's too): the new
	 * node gets back those it was created with, as it would natively */
	if (give && fchownat(p->fd, name, rec->uid, rec->gid, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (rec->mode & (S_ISUID | S_ISGID)) && !S_ISDIR(rec->mode) && !S_ISLNK(rec->mode) &&
	    fchmodat(p->fd, name, rec->mode & 07777, 0) < 0)
		log_debug("cannot give '%s' back its set-id bits: %m (journaled as it is)", name);
	r = fs_inode_lookup(fs, p, name, e);
	if (r < 0)
		return r;
	i = (struct fs_inode *)(uintptr_t)e->ino;
	fs_inode_new_nocaps(i);
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
