/* SPDX-License-Identifier: MIT */
/*
 * snapfarm.c - a snapshot's hard-link farm, NAME/tree/ (see snap_i.h):
 * built in the lock window (folders and symlinks copied, special files
 * recreated, regular files hard-linked and registered with copy-on-write),
 * its folders fsynced after the window, and scanned again at mount.
 */
#include "snap_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/ctl.h"
#include "mirrorfs/dir.h"
#include "mirrorfs/io.h"
#include "mirrorfs/log.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/xattr.h"

/* Copy the extended attributes of @src to @dst (folders in the farm); one
 * that cannot be copied is left out, as the farm's other attributes are. */
void fs_farm_copy_xattrs(int src, int dst)
{
	(void)mfs_xattr_copy(src, dst, NULL);
}

int fs_farm_copy_attrs(int dirfd, const char *name, const struct stat *st, bool nofollow)
{
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	int fl = nofollow ? AT_SYMLINK_NOFOLLOW : 0;

	if (fchownat(dirfd, name, st->st_uid, st->st_gid, fl) < 0 && errno != EPERM)
		return -errno;
	if (!S_ISLNK(st->st_mode) && fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
		return -errno;
	if (utimensat(dirfd, name, ts, fl) < 0)
		return -errno;
	return 0;
}

/* Mirror directory @src (O_RDONLY) into @dst (O_RDONLY), recursively. */
int fs_farm_dir(struct fs_farm *fm, int src, int dst, bool top, int depth)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r = 0;

	if (depth > MAX_DEPTH)
		return -ELOOP;
	r = mfs_dir_open(src, ".", &d);
	if (r < 0)
		return r;
	while (r == 0 && (de = mfs_readdir(d))) {
		const char *n = de->d_name;
		struct stat st;

		if (top && !strcmp(n, MFS_CTL_DIR))
			continue;
		if (de->d_type == DT_REG) {
			struct cow_state *c;
			if (linkat(src, n, dst, n, 0) < 0) {
				r = -errno;
				break;
			}
			r = fs_cow_add(fm->fs->snaps, fm->s, (ino_t)de->d_ino, &c);
			fm->files++;
			continue;
		}
		if (fstatat(src, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		if (S_ISREG(st.st_mode)) { /* d_type unknown */
			struct cow_state *c;
			r = linkat(src, n, dst, n, 0) < 0 ? -errno
							  : fs_cow_add(fm->fs->snaps, fm->s, st.st_ino, &c);
			fm->files++;
		} else if (S_ISDIR(st.st_mode)) {
			_cleanup_close_ int s2 = -EBADF, d2 = -EBADF;
			if (mkdirat(dst, n, 0700) < 0)
				r = -errno;
			s2 = r ? -EBADF : openat(src, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			d2 = s2 < 0 ? -EBADF : openat(dst, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (r == 0 && (s2 < 0 || d2 < 0))
				r = -errno;
			if (r == 0)
				r = fs_farm_dir(fm, s2, d2, false, depth + 1);
			if (r == 0) {
				fs_farm_copy_xattrs(s2, d2);
				r = fs_farm_copy_attrs(dst, n, &st, false);
			}
			fm->dirs++;
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX + 1];
			ssize_t len = readlinkat(src, n, target, sizeof(target) - 1);
			if (len < 0) {
				r = -errno;
				break;
			}
			target[len] = 0;
			r = symlinkat(target, dst, n) < 0 ? -errno
							  : fs_farm_copy_attrs(dst, n, &st, true);
		} else {
			if (mknodat(dst, n, st.st_mode, st.st_rdev) < 0) {
				if (errno == EPERM) {
					log_warning("snapshot '%s': cannot recreate device '%s'",
						    fm->s->name, n);
					continue;
				}
				r = -errno;
				break;
			}
			r = fs_farm_copy_attrs(dst, n, &st, true);
		}
	}
	return r;
}

/* A walk of a farm: @dir_fn on every folder (the top one included),
 * @reg_fn on every regular file. */
struct walk {
	int (*dir_fn)(int fd, void *arg);
	int (*reg_fn)(int dirfd, const struct dirent *de, void *arg);
	void *arg;
};

static int walk_tree(const struct walk *w, int dirfd, int depth)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r = w->dir_fn ? w->dir_fn(dirfd, w->arg) : 0;

	if (r < 0)
		return r;
	if (depth > MAX_DEPTH)
		return -ELOOP;
	r = mfs_dir_open(dirfd, ".", &d);
	if (r < 0)
		return r;
	while (r == 0 && (de = mfs_readdir(d))) {
		unsigned char t = de->d_type;
		if (t == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return -errno;
			t = (unsigned char)IFTODT(st.st_mode);
		}
		if (t == DT_REG && w->reg_fn) {
			r = w->reg_fn(dirfd, de, w->arg);
		} else if (t == DT_DIR) {
			_cleanup_close_ int c =
				openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			r = c < 0 ? -errno : walk_tree(w, c, depth + 1);
		}
	}
	return r;
}

/* Folders of a farm to fsync, in batches (each batch at once). */
#define SYNC_BATCH 256
struct dir_batch {
	int fds[SYNC_BATCH];
	size_t n;
};

static int batch_flush(struct dir_batch *b)
{
	int r = mfs_fsync_dirs(b->fds, b->n);

	while (b->n > 0)
		close(b->fds[--b->n]);
	return r;
}

static int batch_add(int fd, void *arg)
{
	struct dir_batch *b = arg;
	int c = fcntl(fd, F_DUPFD_CLOEXEC, 3);

	if (c < 0)
		return -errno;
	b->fds[b->n++] = c;
	return b->n == SYNC_BATCH ? batch_flush(b) : 0;
}

/* fsync every folder of a farm (after the lock window), many at once. */
int fs_farm_sync(int dirfd)
{
	_cleanup_free_ struct dir_batch *b = calloc(1, sizeof(*b));
	const struct walk w = { .dir_fn = batch_add, .arg = b };
	int r, r2;

	if (!b)
		return -ENOMEM;
	r = walk_tree(&w, dirfd, 0);
	r2 = batch_flush(b);
	return r < 0 ? r : r2;
}

struct scan_arg {
	struct fs_snaps *S;
	struct fs_snap *s;
};

static int scan_reg(int dirfd, const struct dirent *de, void *arg)
{
	struct scan_arg *a = arg;
	struct cow_state *c;

	return fs_cow_add(a->S, a->s, (ino_t)de->d_ino, &c);
}

/* Register the regular files of an existing farm (mount). */
int fs_farm_scan(struct fs_snaps *S, struct fs_snap *s, int dirfd)
{
	struct scan_arg a = { S, s };
	const struct walk w = { .reg_fn = scan_reg, .arg = &a };

	return walk_tree(&w, dirfd, 0);
}
