/* SPDX-License-Identifier: MIT */
/*
 * test_dir.c - unit tests of lib/dir: opening a folder with -errno
 * returns, the sorted listing with its filter, the recursive remove.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/dir.h"
#include "tests.h"

static char *tmp;
static int dfd = -1;

static int setup(void)
{
	return test_tmpdir_open(&tmp, &dfd);
}

static int teardown(void)
{
	return test_tmpdir_close(&tmp, &dfd);
}

static bool no_b(const char *name, void *arg)
{
	(*(int *)arg)++;
	return strcmp(name, "b") != 0;
}

static void test_list(void)
{
	static const char *const made[] = { "c", "a", "b", ".hidden" };
	char **names = NULL;
	size_t n = 0;
	int calls = 0, fd;
	DIR *d = NULL;

	CU_ASSERT_EQUAL_FATAL(mkdirat(dfd, "f", 0700), 0);
	for (size_t i = 0; i < sizeof(made) / sizeof(*made); i++) {
		char p[32] = "f/";
		strcat(p, made[i]);
		fd = openat(dfd, p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		CU_ASSERT_FATAL(fd >= 0);
		close(fd);
	}
	CU_ASSERT_EQUAL_FATAL(mfs_dir_list(dfd, "f", NULL, NULL, &names, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 4);
	CU_ASSERT(!strcmp(names[0], ".hidden") && !strcmp(names[1], "a") &&
		  !strcmp(names[2], "b") && !strcmp(names[3], "c"));
	names = mfs_dir_names_free(names, n);
	CU_ASSERT_EQUAL_FATAL(mfs_dir_list(dfd, "f", no_b, &calls, &names, &n), 0);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(calls, 4); /* never asked about "." and ".." */
	mfs_dir_names_free(names, n);

	CU_ASSERT_EQUAL(mfs_dir_list(dfd, "missing", NULL, NULL, &names, &n), -ENOENT);
	CU_ASSERT_EQUAL(mfs_dir_list(dfd, "f/a", NULL, NULL, &names, &n), -ENOTDIR);
	CU_ASSERT_EQUAL(symlinkat("f", dfd, "link"), 0);
	CU_ASSERT_EQUAL(mfs_dir_open(dfd, "link", &d), -ENOTDIR); /* never followed */
	CU_ASSERT_PTR_NULL(d);
	CU_ASSERT_EQUAL_FATAL(mfs_dir_open(dfd, "f", &d), 0);
	closedir(d);
	CU_ASSERT_EQUAL(mfs_dir_open(-1, ".", &d), -EBADF);
}

/* A tree deeper than PATH_MAX can name, files at each level, a symlink out: all gone, the outside kept. */
static void test_remove_tree(void)
{
	int fd, cur;
	struct stat st;

	CU_ASSERT_EQUAL_FATAL(mkdirat(dfd, "outside", 0700), 0);
	fd = openat(dfd, "outside/keep", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(mkdirat(dfd, "deep", 0700), 0);
	cur = openat(dfd, "deep", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_FATAL(cur >= 0);
	CU_ASSERT_EQUAL(symlinkat("../outside", cur, "out"), 0);
	for (int i = 0; i < 3000; i++) { /* 3000 levels of "dd/": past PATH_MAX */
		int next;

		fd = openat(cur, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		CU_ASSERT_FATAL(fd >= 0);
		close(fd);
		CU_ASSERT_EQUAL_FATAL(mkdirat(cur, "dd", 0700), 0);
		next = openat(cur, "dd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		CU_ASSERT_FATAL(next >= 0);
		close(cur);
		cur = next;
	}
	close(cur);
	CU_ASSERT_EQUAL(mfs_dir_remove_tree(dfd, "deep"), 0);
	CU_ASSERT(fstatat(dfd, "deep", &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT);
	CU_ASSERT_EQUAL(fstatat(dfd, "outside/keep", &st, 0), 0);
	CU_ASSERT_EQUAL(mfs_dir_remove_tree(dfd, "deep"), 0); /* missing: done */
	CU_ASSERT_EQUAL(mfs_dir_remove_tree(dfd, "outside/keep"), 0); /* a file */
	CU_ASSERT(fstatat(dfd, "outside/keep", &st, 0) < 0 && errno == ENOENT);
}

static CU_TestInfo tests[] = {
	{ "list", test_list },
	{ "remove_tree", test_remove_tree },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_dir[] = {
	{ "dir", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
