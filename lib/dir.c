/* SPDX-License-Identifier: MIT */
/*
 * dir.c - opening, listing and removing a folder relative to a folder fd,
 * never following a symlink, with -errno returns.
 */
#include "mirrorfs/dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/macro.h"

int mfs_dir_open(int dirfd, const char *name, DIR **ret)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int r = -errno;

		close(fd);
		return r;
	}
	*ret = d;
	return 0;
}

char **mfs_dir_names_free(char **names, size_t n)
{
	while (names && n)
		free(names[--n]);
	free(names);
	return NULL;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mfs_dir_list(int dirfd, const char *name, bool (*keep)(const char *name, void *arg), void *arg,
		 char ***ret, size_t *ret_n)
{
	_cleanup_closedir_ DIR *d = NULL;
	char **names = NULL, **nv;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r;

	r = mfs_dir_open(dirfd, name, &d);
	if (r < 0)
		return r;
	while ((errno = 0, de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    (keep && !keep(de->d_name, arg)))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			nv = realloc(names, cap * sizeof(*names));
			if (!nv)
				goto out_nomem;
			names = nv;
		}
		names[n] = strdup(de->d_name);
		if (!names[n])
			goto out_nomem;
		n++;
	}
	if (errno) {
		r = -errno;
		mfs_dir_names_free(names, n);
		return r;
	}
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	*ret = names;
	*ret_n = n;
	return 0;
out_nomem:
	mfs_dir_names_free(names, n);
	return -ENOMEM;
}

/* ================================================================ removing */

/*
 * One folder on the way down of mfs_dir_remove_tree(): its identity (to check ".."
 * on the way up), its name in its parent, and up to RM_NAMES of its
 * subfolders still to remove (read again when they run out).
 */
#define RM_NAMES 1024u
struct rm_frame {
	dev_t dev;
	ino_t ino;
	char *name;
	char **subs;
	size_t n_subs, i_sub;
	bool more; /* subfolders beyond RM_NAMES: read the folder again */
};

static void rm_frame_done(struct rm_frame *f)
{
	for (size_t i = f->i_sub; i < f->n_subs; i++)
		free(f->subs[i]);
	free(f->subs);
	free(f->name);
	*f = (struct rm_frame){ 0 };
}

/*
 * Unlink everything in folder @fd that is not a folder, and list up to
 * RM_NAMES of its subfolders in @f. Returns 0 or -errno.
 */
static int rm_scan(int fd, struct rm_frame *f)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r = mfs_dir_open(fd, ".", &d);

	if (r < 0)
		return r;
	f->more = false;
	while ((de = readdir(d))) {
		struct stat st;
		bool dir = de->d_type == DT_DIR;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type == DT_UNKNOWN) {
			if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT)
					continue;
				return -errno;
			}
			dir = S_ISDIR(st.st_mode);
		}
		if (!dir) {
			if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
				return -errno;
			continue;
		}
		if (f->n_subs >= RM_NAMES) {
			f->more = true;
			continue;
		}
		if (!f->subs && !(f->subs = calloc(RM_NAMES, sizeof(*f->subs))))
			return -ENOMEM;
		if (!(f->subs[f->n_subs] = strdup(de->d_name)))
			return -ENOMEM;
		f->n_subs++;
	}
	return 0;
}

/* Open folder @name of @dfd as the next frame. Returns the fd or -errno. */
static int rm_enter(int dfd, const char *name, struct rm_frame *f)
{
	struct stat st;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !(f->name = strdup(name))) {
		(void)close(fd);
		return -ENOMEM;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	return fd;
}

/*
 * Remove whatever @name in @dfd is; a folder with everything below it, at
 * any depth: iterative, with two folders open at a time and a stack of
 * names (not of fds), so that a tree deeper than the fd limit (or than
 * PATH_MAX, which renames can build) goes too. Going up is ".." of the
 * folder just emptied, checked against the folder that was entered.
 */
int mfs_dir_remove_tree(int dfd, const char *name)
{
	_cleanup_free_ struct rm_frame *stk = NULL;
	size_t n = 0, cap = 0;
	struct stat st;
	int cur = -EBADF, e = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	for (const char *next = name; e == 0;) {
		struct rm_frame *f;

		if (next) { /* go down into @next */
			if (n == cap) {
				struct rm_frame *ns = realloc(stk, (cap ? cap * 2 : 16) * sizeof(*ns));

				if (!ns) {
					e = -ENOMEM;
					break;
				}
				stk = ns;
				cap = cap ? cap * 2 : 16;
			}
			stk[n] = (struct rm_frame){ 0 };
			e = rm_enter(n ? cur : dfd, next, &stk[n]);
			if (e < 0)
				break;
			if (cur >= 0)
				(void)close(cur);
			cur = e;
			e = rm_scan(cur, &stk[n++]);
			next = NULL;
			continue;
		}
		f = &stk[n - 1];
		if (f->i_sub < f->n_subs) {
			next = f->subs[f->i_sub]; /* freed once it is removed */
			continue;
		}
		if (f->more) {
			for (size_t i = 0; i < f->n_subs; i++)
				free(f->subs[i]);
			f->n_subs = f->i_sub = 0;
			e = rm_scan(cur, f);
			continue;
		}
		/* @f is empty: go up and remove it */
		if (n == 1) {
			e = unlinkat(dfd, f->name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
			rm_frame_done(f);
			n = 0;
			break;
		}
		{
			int up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			struct rm_frame *p = &stk[n - 2];

			if (up < 0 || fstat(up, &st) < 0 || st.st_dev != p->dev || st.st_ino != p->ino) {
				e = up < 0 ? -errno : -ESTALE; /* moved under us */
				if (up >= 0)
					(void)close(up);
				break;
			}
			(void)close(cur);
			cur = up;
			if (unlinkat(cur, f->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				e = -errno;
			rm_frame_done(f);
			n--;
			free(p->subs[p->i_sub]);
			p->subs[p->i_sub++] = NULL;
		}
	}
	while (n)
		rm_frame_done(&stk[--n]);
	if (cur >= 0)
		(void)close(cur);
	return e;
}
