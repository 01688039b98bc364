/* SPDX-License-Identifier: MIT */
/*
 * util.c - helpers shared by the unit suites.
 */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"

char *test_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *p;

	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (asprintf(&p, "%s/mfs-unit.XXXXXX", tmp) < 0)
		return NULL;
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

int test_rm_rf(const char *path)
{
	if (!path)
		return 0;
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int test_tmpdir_open(char **path, int *fd)
{
	*path = test_mkdtemp();
	if (!*path)
		return -1;
	*fd = open(*path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *fd < 0 ? -1 : 0;
}

int test_tmpdir_close(char **path, int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	if (*path)
		test_rm_rf(*path);
	free(*path);
	*path = NULL;
	return 0;
}
