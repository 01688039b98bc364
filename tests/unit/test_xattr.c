/* SPDX-License-Identifier: MIT */
/*
 * test_xattr.c - unit tests of lib/xattr: the blob (a snapshot's
 * cow/INO.xattr) round trip, a malformed blob, and the copier's policy.
 * Skipped (passes) where the temporary folder has no user xattrs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirrorfs/macro.h"
#include "mirrorfs/xattr.h"
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

static int mkfile(const char *name)
{
	return openat(dfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

static void test_copy(void)
{
	int a = mkfile("a"), b = mkfile("b");
	char val[64];
	ssize_t n;

	CU_ASSERT_FATAL(a >= 0 && b >= 0);
	if (fsetxattr(a, "user.one", "1", 1, 0) < 0 && (errno == ENOTSUP || errno == EPERM)) {
		fprintf(stderr, "no user xattrs in '%s': skipped\n", tmp);
		close(a);
		close(b);
		return;
	}
	CU_ASSERT_EQUAL_FATAL(fsetxattr(a, "user.mirrorfs.lsn", "7", 1, 0), 0);
	CU_ASSERT_EQUAL_FATAL(fsetxattr(a, "user.empty", "", 0, 0), 0);
	CU_ASSERT_EQUAL(mfs_xattr_copy(a, b, "user.mirrorfs."), 0);
	n = fgetxattr(b, "user.one", val, sizeof(val));
	CU_ASSERT(n == 1 && val[0] == '1');
	CU_ASSERT_EQUAL(fgetxattr(b, "user.empty", val, sizeof(val)), 0);
	CU_ASSERT(fgetxattr(b, "user.mirrorfs.lsn", val, sizeof(val)) < 0 && errno == ENODATA);
	/* no prefix skipped: everything */
	CU_ASSERT_EQUAL(mfs_xattr_copy(a, b, NULL), 0);
	CU_ASSERT_EQUAL(fgetxattr(b, "user.mirrorfs.lsn", val, sizeof(val)), 1);
	/* an error of the target is returned, not swallowed */
	close(b);
	b = openat(dfd, "b", O_RDONLY | O_CLOEXEC | O_PATH);
	CU_ASSERT(mfs_xattr_copy(a, b, NULL) == -EBADF);
	close(a);
	close(b);
}

static void test_blob(void)
{
	static const char bad[] = { 3, 0, 0, 0, 9, 0, 0, 0, 'a', 'b', 'c', 'x' };
	int a = mkfile("c");
	char *blob = NULL;
	size_t len = 99, pos = 0;
	struct mfs_xattr_ent x;

	CU_ASSERT_FATAL(a >= 0);
	CU_ASSERT_EQUAL(mfs_xattr_blob(a, &blob, &len), 0); /* none */
	CU_ASSERT(blob == NULL && len == 0);
	if (fsetxattr(a, "user.k", "value", 5, 0) == 0) {
		CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob(a, &blob, &len), 0);
		CU_ASSERT_EQUAL_FATAL(len, 8 + 6 + 5);
		CU_ASSERT_EQUAL(mfs_get_le32(blob), 6);
		CU_ASSERT_EQUAL(mfs_get_le32(blob + 4), 5);
		CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, len, &pos, &x), 1);
		CU_ASSERT(x.name_len == 6 && !memcmp(x.name, "user.k", 6) && x.value_len == 5 &&
			  !memcmp(x.value, "value", 5));
		CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, len, &pos, &x), 0);
		free(blob);
	}
	pos = 0; /* a value longer than the blob */
	CU_ASSERT_EQUAL(mfs_xattr_blob_next(bad, sizeof(bad), &pos, &x),
			-EBADMSG);
	pos = 0; /* a header cut short */
	CU_ASSERT_EQUAL(mfs_xattr_blob_next(bad, 5, &pos, &x), -EBADMSG);
	close(a);
}

static CU_TestInfo tests[] = {
	{ "copy", test_copy },
	{ "blob", test_blob },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_xattr[] = {
	{ "xattr", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
