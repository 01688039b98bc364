/* SPDX-License-Identifier: MIT */
/*
 * dir.c - opening and listing a folder relative to a folder fd, never
 * following a symlink, with -errno returns.
 */
#include "mirrorfs/dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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
