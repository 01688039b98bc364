/* SPDX-License-Identifier: MIT */
/*
 * test_path.c - unit tests of lib/path: syntax, resolution beneath a root,
 * symlink escapes refused, with openat2 and with the fallback walk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mirrorfs/format.h"
#include "mirrorfs/path.h"
#include "tests.h"

static char *tmp;
static int rootfd = -1;

static int setup(void)
{
	char p[4096];

	tmp = test_mkdtemp();
	if (!tmp)
		return -1;
	snprintf(p, sizeof(p), "%s/root", tmp);
	if (mkdir(p, 0755) < 0)
		return -1;
	rootfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -1;
	/* root/d/f, root/in -> d (inside), root/out -> .. (escape), root/abs -> /tmp */
	if (mkdirat(rootfd, "d", 0755) < 0 || symlinkat("d", rootfd, "in") < 0 ||
	    symlinkat("..", rootfd, "out") < 0 || symlinkat("/tmp", rootfd, "abs") < 0 ||
	    symlinkat("../../..", rootfd, "d/up") < 0)
		return -1;
	close(openat(rootfd, "d/f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	/* the reserved folder, and symlinks inside the root that lead to it */
	if (mkdirat(rootfd, ".mirrorfs", 0755) < 0 || mkdirat(rootfd, ".mirrorfs/journal", 0755) < 0 ||
	    symlinkat(".mirrorfs", rootfd, "m") < 0 || symlinkat(".", rootfd, "self") < 0 ||
	    symlinkat("../.mirrorfs/journal", rootfd, "d/j") < 0)
		return -1;
	close(openat(rootfd, ".mirrorfs/state", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	return 0;
}

static int teardown(void)
{
	mfs_path_set_force_walk(false);
	if (rootfd >= 0)
		close(rootfd);
	test_rm_rf(tmp);
	free(tmp);
	return 0;
}

static void test_valid(void)
{
	static const char *good[] = { "a", "a/b", "a.b/.c/..d", "...", "a b" };
	static const char *bad[] = { "", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b",
				     "../a", "a/..", "./a" };
	char long_comp[300], long_path[MFS_PATH_MAX + 2];

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		CU_ASSERT_TRUE(mfs_path_is_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CU_ASSERT_FALSE(mfs_path_is_valid(bad[i]));
	CU_ASSERT_FALSE(mfs_path_is_valid(NULL));
	memset(long_comp, 'x', 256);
	long_comp[256] = 0;
	CU_ASSERT_FALSE(mfs_path_is_valid(long_comp));
	long_comp[255] = 0;
	CU_ASSERT_TRUE(mfs_path_is_valid(long_comp));
	for (size_t i = 0; i < sizeof(long_path) - 1; i++)
		long_path[i] = (i % 100 == 99) ? '/' : 'a';
	long_path[MFS_PATH_MAX] = 0;
	CU_ASSERT_TRUE(mfs_path_is_valid(long_path));
	long_path[MFS_PATH_MAX] = 'a';
	long_path[MFS_PATH_MAX + 1] = 0;
	CU_ASSERT_FALSE(mfs_path_is_valid(long_path));
}

static void check_resolution(void)
{
	const char *base = NULL;
	int fd;

	fd = mfs_path_open_parent(rootfd, "d/f", &base);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_STRING_EQUAL(base, "f");
	close(fd);
	fd = mfs_path_open_parent(rootfd, "top", &base);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_STRING_EQUAL(base, "top");
	close(fd);
	fd = mfs_path_open(rootfd, "d/f", O_RDONLY, 0);
	CU_ASSERT_TRUE(fd >= 0);
	if (fd >= 0)
		close(fd);
	/* escapes */
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "out/x", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "abs/x", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "d/up/x", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open(rootfd, "out/root/d/f", O_RDONLY, 0) < 0);
	CU_ASSERT_EQUAL(mfs_path_open_parent(rootfd, "../x", &base), -EINVAL);
	CU_ASSERT_EQUAL(mfs_path_open(rootfd, "/etc/passwd", O_RDONLY, 0), -EINVAL);
	/* the last component is never followed */
	CU_ASSERT_EQUAL(mfs_path_open(rootfd, "out", O_RDONLY, 0), -ELOOP);
	fd = mfs_path_open(rootfd, "out", O_PATH, 0);
	CU_ASSERT_TRUE(fd >= 0);
	if (fd >= 0) {
		struct stat st;

		CU_ASSERT_EQUAL(fstat(fd, &st), 0);
		CU_ASSERT_TRUE(S_ISLNK(st.st_mode));
		close(fd);
	}
	CU_ASSERT_EQUAL(mfs_path_open(rootfd, "d/missing", O_RDONLY, 0), -ENOENT);
	CU_ASSERT_EQUAL(mfs_path_open_parent(rootfd, "d/f/x", &base), -ENOTDIR);
	/* the reserved folder: by name, or through any symlink, never reached */
	CU_ASSERT_EQUAL(mfs_path_open_parent(rootfd, ".mirrorfs/state", &base), -EXDEV);
	CU_ASSERT_EQUAL(mfs_path_open_parent(rootfd, ".mirrorfs", &base), -EXDEV);
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "m/state", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "m/journal/x", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "d/j/x", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "self/.mirrorfs", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "self/m/state", &base) < 0);
	CU_ASSERT_TRUE(mfs_path_open(rootfd, "m/state", O_WRONLY, 0) < 0);
	CU_ASSERT_TRUE(mfs_path_open(rootfd, "self/.mirrorfs/state", O_PATH, 0) < 0);
	CU_ASSERT_TRUE(mfs_path_open(rootfd, "self/.mirrorfs", O_PATH, 0) < 0);
}

static void test_openat2(void)
{
	const char *base;
	int fd;

	mfs_path_set_force_walk(false);
	check_resolution();
	/* openat2 allows a symlink that stays inside */
	fd = mfs_path_open_parent(rootfd, "in/f", &base);
	if (fd != -ENOSYS) {
		CU_ASSERT_TRUE(fd >= 0);
		if (fd >= 0)
			close(fd);
	}
	/* ... and one that leads to the root itself, then to a plain folder */
	fd = mfs_path_open(rootfd, "self/d/f", O_RDONLY, 0);
	CU_ASSERT_TRUE(fd >= 0);
	if (fd >= 0)
		close(fd);
	CU_ASSERT_EQUAL(mfs_path_open_parent(rootfd, "self/m/state", &base), -EXDEV);
	CU_ASSERT_EQUAL(mfs_path_open_parent(rootfd, "self/.mirrorfs", &base), -EXDEV);
}

static void test_walk(void)
{
	const char *base;

	mfs_path_set_force_walk(true);
	check_resolution();
	/* the walk refuses every symlink on the way */
	CU_ASSERT_TRUE(mfs_path_open_parent(rootfd, "in/f", &base) < 0);
	mfs_path_set_force_walk(false);
}

static CU_TestInfo tests[] = {
	{ "valid", test_valid },
	{ "openat2", test_openat2 },
	{ "walk", test_walk },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_path[] = {
	{ "path", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
