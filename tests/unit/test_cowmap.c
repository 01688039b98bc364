/* SPDX-License-Identifier: MIT */
/*
 * test_cowmap.c - unit tests of lib/cowmap: a snapshot's copy-on-write map
 * (the header's exact bytes, round trips, a map without its magic), the
 * bitmap's runs, the extended attributes blob (round trip, hostile blobs)
 * and the meta file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirrorfs/cowmap.h"
#include "mirrorfs/macro.h"
#include "mirrorfs/xattr.h"
#include "tests.h"

static const struct mfs_cowmap_hdr sample = {
	.flags = MFS_COWMAP_F_FULL,
	.mode = 0100644,
	.uid = 1000,
	.gid = 100,
	.size = 123456789,
	.atime = { 1700000000, 123456789 },
	.mtime = { 1700000001, 987654321 },
	.ino = 0x1122334455667788ull,
};

static void test_hdr_bytes(void)
{
	uint8_t h[MFS_COWMAP_HDR];

	mfs_cowmap_hdr_encode(&sample, h);
	CU_ASSERT_EQUAL(memcmp(h, "MFSCOW1\n", 8), 0);
	CU_ASSERT_EQUAL(mfs_get_le32(h + 8), 1);
	CU_ASSERT_EQUAL(mfs_get_le32(h + 12), 0100644);
	CU_ASSERT_EQUAL(mfs_get_le32(h + 16), 1000);
	CU_ASSERT_EQUAL(mfs_get_le32(h + 20), 100);
	CU_ASSERT_EQUAL(mfs_get_le64(h + 24), 123456789);
	CU_ASSERT_EQUAL(mfs_get_le64(h + 32), 1700000000);
	CU_ASSERT_EQUAL(mfs_get_le32(h + 40), 123456789);
	CU_ASSERT_EQUAL(mfs_get_le32(h + 44), 987654321);
	CU_ASSERT_EQUAL(mfs_get_le64(h + 48), 1700000001);
	CU_ASSERT_EQUAL(mfs_get_le64(h + 56), 0x1122334455667788ull);
}

static void test_hdr_round_trip(void)
{
	uint8_t h[MFS_COWMAP_HDR];
	struct mfs_cowmap_hdr d;

	mfs_cowmap_hdr_encode(&sample, h);
	CU_ASSERT_EQUAL_FATAL(mfs_cowmap_hdr_decode(h, &d), 0);
	CU_ASSERT_EQUAL(d.flags, sample.flags);
	CU_ASSERT_EQUAL(d.mode, sample.mode);
	CU_ASSERT_EQUAL(d.uid, sample.uid);
	CU_ASSERT_EQUAL(d.gid, sample.gid);
	CU_ASSERT_EQUAL(d.size, sample.size);
	CU_ASSERT_EQUAL(d.atime.tv_sec, sample.atime.tv_sec);
	CU_ASSERT_EQUAL(d.atime.tv_nsec, sample.atime.tv_nsec);
	CU_ASSERT_EQUAL(d.mtime.tv_sec, sample.mtime.tv_sec);
	CU_ASSERT_EQUAL(d.mtime.tv_nsec, sample.mtime.tv_nsec);
	CU_ASSERT_EQUAL(d.ino, sample.ino);
}

static void test_hdr_hostile(void)
{
	uint8_t h[MFS_COWMAP_HDR];
	struct mfs_cowmap_hdr d = { .size = 7 };

	/* no magic: an unfinished map; *ret untouched */
	memset(h, 0, sizeof(h));
	CU_ASSERT_EQUAL(mfs_cowmap_hdr_decode(h, &d), -EBADMSG);
	CU_ASSERT_EQUAL(d.size, 7);
	mfs_cowmap_hdr_encode(&sample, h);
	h[7] = 'X';
	CU_ASSERT_EQUAL(mfs_cowmap_hdr_decode(h, &d), -EBADMSG);
	/* nanoseconds out of range are taken modulo 10^9 */
	mfs_cowmap_hdr_encode(&sample, h);
	mfs_put_le32(h + 40, 1000000005u);
	mfs_put_le32(h + 44, UINT32_MAX);
	CU_ASSERT_EQUAL_FATAL(mfs_cowmap_hdr_decode(h, &d), 0);
	CU_ASSERT_EQUAL(d.atime.tv_nsec, 5);
	CU_ASSERT_EQUAL(d.mtime.tv_nsec, (long)(UINT32_MAX % 1000000000u));
}

static void test_sizes(void)
{
	CU_ASSERT_EQUAL(mfs_cowmap_nblocks(0), 0);
	CU_ASSERT_EQUAL(mfs_cowmap_bytes(0), 1);
	CU_ASSERT_EQUAL(mfs_cowmap_nblocks(1), 1);
	CU_ASSERT_EQUAL(mfs_cowmap_nblocks(4096), 1);
	CU_ASSERT_EQUAL(mfs_cowmap_nblocks(4097), 2);
	CU_ASSERT_EQUAL(mfs_cowmap_bytes(7 * 4096), 1);
	CU_ASSERT_EQUAL(mfs_cowmap_bytes(8 * 4096), 2);
	CU_ASSERT_EQUAL(mfs_cowmap_bytes(8 * 4096 + 1), 2);
	CU_ASSERT_EQUAL(mfs_cowmap_bytes(MFS_COWMAP_SIZE_MAX), (MFS_COWMAP_SIZE_MAX >> 15) + 1);
}

static void test_runs(void)
{
	uint8_t m[4] = { 0 };

	mfs_cowmap_set(m, 3, 10);
	mfs_cowmap_set(m, 20, 21);
	CU_ASSERT_EQUAL(m[0], 0xf8);
	CU_ASSERT_EQUAL(m[1], 0x03);
	CU_ASSERT_EQUAL(m[2], 0x10);
	CU_ASSERT_FALSE(mfs_cowmap_test(m, 2));
	CU_ASSERT_TRUE(mfs_cowmap_test(m, 3));
	CU_ASSERT_TRUE(mfs_cowmap_test(m, 9));
	CU_ASSERT_FALSE(mfs_cowmap_test(m, 10));
	CU_ASSERT_EQUAL(mfs_cowmap_run_end(m, 0, 32, false), 3);
	CU_ASSERT_EQUAL(mfs_cowmap_run_end(m, 3, 32, true), 10);
	CU_ASSERT_EQUAL(mfs_cowmap_run_end(m, 10, 32, false), 20);
	CU_ASSERT_EQUAL(mfs_cowmap_run_end(m, 20, 32, true), 21);
	CU_ASSERT_EQUAL(mfs_cowmap_run_end(m, 21, 32, false), 32);
	/* bounded by @e */
	CU_ASSERT_EQUAL(mfs_cowmap_run_end(m, 3, 5, true), 5);
	CU_ASSERT_EQUAL(mfs_cowmap_run_end(m, 5, 5, true), 5);
	/* setting an empty range or again changes nothing */
	mfs_cowmap_set(m, 12, 12);
	mfs_cowmap_set(m, 4, 6);
	CU_ASSERT_EQUAL(m[0], 0xf8);
	CU_ASSERT_EQUAL(m[1], 0x03);
}

static void test_blob_round_trip(void)
{
	_cleanup_free_ char *blob = NULL;
	struct mfs_xattr_ent x;
	size_t len = 0, pos = 0;

	CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob_add(&blob, &len, "user.a", "12345", 5), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob_add(&blob, &len, "security.selinux", "", 0), 0);
	CU_ASSERT_EQUAL(len, 8 + 6 + 5 + 8 + 16);
	CU_ASSERT_EQUAL(mfs_get_le32(blob), 6);
	CU_ASSERT_EQUAL(mfs_get_le32(blob + 4), 5);
	CU_ASSERT_EQUAL(memcmp(blob + 8, "user.a12345", 11), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob_next(blob, len, &pos, &x), 1);
	CU_ASSERT_EQUAL(x.name_len, 6);
	CU_ASSERT_EQUAL(memcmp(x.name, "user.a", 6), 0);
	CU_ASSERT_EQUAL(x.value_len, 5);
	CU_ASSERT_EQUAL(memcmp(x.value, "12345", 5), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob_next(blob, len, &pos, &x), 1);
	CU_ASSERT_EQUAL(x.name_len, 16);
	CU_ASSERT_EQUAL(x.value_len, 0);
	CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, len, &pos, &x), 0);
	CU_ASSERT_EQUAL(pos, len);
}

static void test_blob_hostile(void)
{
	_cleanup_free_ char *blob = NULL;
	char name[300];
	struct mfs_xattr_ent x;
	size_t len = 0, pos;

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = 0;
	CU_ASSERT_EQUAL(mfs_xattr_blob_add(&blob, &len, "", "v", 1), -EINVAL);
	CU_ASSERT_EQUAL(mfs_xattr_blob_add(&blob, &len, name, "v", 1), -EINVAL);
	name[255] = 0;
	CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob_add(&blob, &len, name, "v", 1), 0);
	/* every truncation of a valid blob is refused */
	for (size_t l = 1; l < len; l++) {
		pos = 0;
		CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, l, &pos, &x), -EBADMSG);
	}
	/* a name of 0 or 256 bytes, a value longer than the blob */
	mfs_put_le32(blob, 0);
	pos = 0;
	CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, len, &pos, &x), -EBADMSG);
	mfs_put_le32(blob, 256);
	pos = 0;
	CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, len, &pos, &x), -EBADMSG);
	mfs_put_le32(blob, 255);
	mfs_put_le32(blob + 4, UINT32_MAX);
	pos = 0;
	CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, len, &pos, &x), -EBADMSG);
}

/* mfs_cowmap_xattr_read of a real file: what fsetxattr put there. */
static void test_blob_read(void)
{
	char *dir = test_mkdtemp(), path[4096];
	_cleanup_free_ char *blob = NULL;
	struct mfs_xattr_ent x;
	size_t len = 1, pos = 0;
	int fd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(mfs_xattr_blob(fd, &blob, &len), 0);
	CU_ASSERT_PTR_NULL(blob);
	CU_ASSERT_EQUAL(len, 0);
	if (fsetxattr(fd, "user.k", "value", 5, 0) == 0) {
		CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob(fd, &blob, &len), 0);
		CU_ASSERT_EQUAL_FATAL(mfs_xattr_blob_next(blob, len, &pos, &x), 1);
		CU_ASSERT_EQUAL(x.name_len, 6);
		CU_ASSERT_EQUAL(memcmp(x.name, "user.k", 6), 0);
		CU_ASSERT_EQUAL(x.value_len, 5);
		CU_ASSERT_EQUAL(memcmp(x.value, "value", 5), 0);
		CU_ASSERT_EQUAL(mfs_xattr_blob_next(blob, len, &pos, &x), 0);
	} else {
		fprintf(stderr, "cowmap: no user xattrs in %s, round trip through a file skipped\n",
			dir);
	}
	close(fd);
	test_rm_rf(dir);
	free(dir);
}

static void test_meta(void)
{
	static const char want[] = "name=daily.1\nlsn=42\ntime_ns=1700000000123456789\n"
				   "dataset=0123abcd-4567-89ef-0123-456789abcdef\n";
	struct mfs_snapmeta m = { .name = "daily.1", .lsn = 42, .time_ns = 1700000000123456789ull,
				  .dataset = "0123abcd-4567-89ef-0123-456789abcdef" };
	struct mfs_snapmeta d = { .lsn = 9 };
	char buf[512];

	CU_ASSERT_EQUAL(mfs_snapmeta_encode(&m, buf, sizeof(buf)), (int)sizeof(want) - 1);
	CU_ASSERT_STRING_EQUAL(buf, want);
	CU_ASSERT_EQUAL_FATAL(mfs_snapmeta_decode(buf, &d), 0);
	CU_ASSERT_EQUAL(d.lsn, 42);
	CU_ASSERT_EQUAL(d.time_ns, 1700000000123456789ull);
	d.lsn = 9;
	CU_ASSERT_EQUAL(mfs_snapmeta_decode("", &d), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_snapmeta_decode("lsn=1\ntime_ns=2\n", &d), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_snapmeta_decode("name=x\ntime_ns=2\n", &d), -EBADMSG);
	CU_ASSERT_EQUAL(mfs_snapmeta_decode("name=x\nlsn=1\n", &d), -EBADMSG);
	CU_ASSERT_EQUAL(d.lsn, 9);
}

static CU_TestInfo tests[] = {
	{ "hdr_bytes", test_hdr_bytes },
	{ "hdr_round_trip", test_hdr_round_trip },
	{ "hdr_hostile", test_hdr_hostile },
	{ "sizes", test_sizes },
	{ "runs", test_runs },
	{ "blob_round_trip", test_blob_round_trip },
	{ "blob_hostile", test_blob_hostile },
	{ "blob_read", test_blob_read },
	{ "meta", test_meta },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_cowmap[] = {
	{ "cowmap", NULL, NULL, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
