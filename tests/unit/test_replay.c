/* SPDX-License-Identifier: MIT */
/*
 * test_replay.c - unit tests of lib/replay: every record type, idempotency
 * (apply twice = apply once), write batching against a model (coalescing,
 * superseded writes, truncates, hard links), both engines (io_uring and
 * naive), escapes refused with a canary beside the root, check().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "mirrorfs/replay.h"
#include "tests.h"

static char *tmp;
static int topfd = -1;

static int setup(void)
{
	tmp = test_mkdtemp();
	if (!tmp)
		return -1;
	topfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return topfd < 0 ? -1 : 0;
}

static int teardown(void)
{
	if (topfd >= 0)
		close(topfd);
	test_rm_rf(tmp);
	free(tmp);
	return 0;
}

/* A fresh directory under the suite's temp dir, opened. */
static int fresh_root(const char *name)
{
	if (mkdirat(topfd, name, 0755) < 0)
		return -1;
	return openat(topfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static struct mfs_rec *mk(enum mfs_rec_type t, const char *path, const char *path2)
{
	static struct mfs_rec rec;

	memset(&rec, 0, sizeof(rec));
	rec.type = t;
	rec.lsn = 1;
	snprintf(rec.path, sizeof(rec.path), "%s", path ? path : "");
	snprintf(rec.path2, sizeof(rec.path2), "%s", path2 ? path2 : "");
	return &rec;
}

static int apply_list(int rootfd, unsigned flags, int (*fill)(struct mfs_replay *r))
{
	struct mfs_replay *r;
	int e, e2;

	e = mfs_replay_new(rootfd, flags, &r);
	if (e < 0)
		return e;
	e = fill(r);
	e2 = mfs_replay_finish(r);
	mfs_replay_free(r);
	return e < 0 ? e : e2;
}

#define APPLY(rec) do { int _e = mfs_replay_apply(r, (rec)); if (_e < 0) return _e; } while (0)

static int fill_life(struct mfs_replay *r)
{
	struct mfs_rec *x;

	x = mk(MFS_REC_MKDIR, "db", NULL);
	x->mode = 0755;
	APPLY(x);
	x = mk(MFS_REC_MKNOD, "db/t", NULL);
	x->mode = S_IFREG | 0644;
	APPLY(x);
	x = mk(MFS_REC_WRITE, "db/t", NULL);
	x->data = "hello world";
	x->data_len = 11;
	APPLY(x);
	x = mk(MFS_REC_WRITE, "db/t", NULL);
	x->offset = 6;
	x->data = "WORLD!";
	x->data_len = 6;
	APPLY(x);
	x = mk(MFS_REC_SETXATTR, "db/t", "user.k");
	x->data = "v";
	x->data_len = 1;
	APPLY(x);
	APPLY(mk(MFS_REC_LINK, "db/t", "db/h"));
	APPLY(mk(MFS_REC_SYMLINK, "db/cur", "t"));
	x = mk(MFS_REC_MKNOD, "db/fifo", NULL);
	x->mode = S_IFIFO | 0600;
	APPLY(x);
	x = mk(MFS_REC_CHMOD, "db/t", NULL);
	x->mode = 0600;
	APPLY(x);
	x = mk(MFS_REC_FALLOCATE, "db/t", NULL);
	x->mode = FALLOC_FL_KEEP_SIZE;
	x->length = 65536;
	APPLY(x);
	x = mk(MFS_REC_MKDIR, "tmp", NULL);
	x->mode = 0700;
	APPLY(x);
	x = mk(MFS_REC_MKNOD, "tmp/j", NULL);
	x->mode = S_IFREG | 0644;
	APPLY(x);
	APPLY(mk(MFS_REC_RENAME, "tmp/j", "db/j"));
	APPLY(mk(MFS_REC_RMDIR, "tmp", NULL));
	APPLY(mk(MFS_REC_UNLINK, "db/h", NULL));
	x = mk(MFS_REC_UTIMENS, "db/t", NULL);
	x->atime_sec = 1000;
	x->mtime_sec = 2000;
	x->mtime_nsec = 5;
	APPLY(x);
	APPLY(mk(MFS_REC_CHECKPOINT, NULL, NULL));
	return 0;
}

static void check_life(int root)
{
	char buf[64] = "";
	struct stat st;
	int fd;

	fd = openat(root, "db/t", O_RDONLY | O_CLOEXEC);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(read(fd, buf, sizeof(buf)), 12);
	CU_ASSERT_STRING_EQUAL(buf, "hello WORLD!");
	CU_ASSERT_EQUAL(fstat(fd, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
	CU_ASSERT_EQUAL(st.st_nlink, 1);
	CU_ASSERT_EQUAL(st.st_mtim.tv_sec, 2000);
	CU_ASSERT_EQUAL(st.st_mtim.tv_nsec, 5);
	CU_ASSERT_EQUAL(fgetxattr(fd, "user.k", buf, sizeof(buf)), 1);
	close(fd);
	CU_ASSERT_EQUAL(readlinkat(root, "db/cur", buf, sizeof(buf)), 1);
	CU_ASSERT_EQUAL(fstatat(root, "db/fifo", &st, 0), 0);
	CU_ASSERT_TRUE(S_ISFIFO(st.st_mode));
	CU_ASSERT_EQUAL(fstatat(root, "db/j", &st, 0), 0);
	CU_ASSERT_NOT_EQUAL(fstatat(root, "tmp", &st, 0), 0);
	CU_ASSERT_NOT_EQUAL(fstatat(root, "db/h", &st, 0), 0);
}

static void test_life(void)
{
	int root = fresh_root("life"), naive = fresh_root("life-naive");

	CU_ASSERT_TRUE_FATAL(root >= 0 && naive >= 0);
	CU_ASSERT_EQUAL(apply_list(root, 0, fill_life), 0);
	check_life(root);
	CU_ASSERT_EQUAL(apply_list(naive, MFS_REPLAY_F_NO_URING, fill_life), 0);
	check_life(naive);
	/* idempotent: the same records again, on the finished tree */
	CU_ASSERT_EQUAL(apply_list(root, 0, fill_life), 0);
	check_life(root);
	close(root);
	close(naive);
}

/* ---------------------------------------------------------------- model */

#define MODEL_SIZE (256 * 1024)
static unsigned char model[MODEL_SIZE];
static size_t model_len;
static unsigned seed;

static unsigned rnd(void)
{
	seed = seed * 1103515245u + 12345u;
	return (seed >> 8) & 0xffffff;
}

static int fill_random(struct mfs_replay *r)
{
	static unsigned char data[8192];
	struct mfs_rec *x;

	x = mk(MFS_REC_MKNOD, "f", NULL);
	x->mode = S_IFREG | 0644;
	APPLY(x);
	APPLY(mk(MFS_REC_LINK, "f", "g"));
	memset(model, 0, sizeof(model));
	model_len = 0;
	for (int i = 0; i < 4000; i++) {
		unsigned op = rnd() % 100;

		if (op < 2) {
			size_t sz = rnd() % MODEL_SIZE;

			x = mk(MFS_REC_TRUNCATE, i & 1 ? "f" : "g", NULL);
			x->length = sz;
			APPLY(x);
			if (sz < model_len)
				memset(model + sz, 0, model_len - sz);
			model_len = sz;
			continue;
		}
		size_t len = 1 + rnd() % (op < 60 ? 4096 : sizeof(data));
		size_t off = op < 30 ? (model_len > 0 ? model_len - rnd() % 2 : 0)
				     : (size_t)(rnd() % 32) * 4096 + rnd() % 16;

		if (off + len > MODEL_SIZE)
			off = MODEL_SIZE - len;
		for (size_t k = 0; k < len; k++)
			data[k] = (unsigned char)rnd();
		x = mk(MFS_REC_WRITE, i & 2 ? "f" : "g", NULL);
		x->offset = off;
		x->data = data;
		x->data_len = (uint32_t)len;
		APPLY(x);
		memcpy(model + off, data, len);
		if (off + len > model_len)
			model_len = off + len;
	}
	return 0;
}

static void check_model(int root)
{
	static unsigned char got[MODEL_SIZE + 1];
	ssize_t n;
	int fd = openat(root, "f", O_RDONLY | O_CLOEXEC);

	CU_ASSERT_TRUE_FATAL(fd >= 0);
	n = pread(fd, got, sizeof(got), 0);
	close(fd);
	CU_ASSERT_EQUAL(n, (ssize_t)model_len);
	CU_ASSERT_EQUAL(memcmp(got, model, model_len), 0);
}

static void test_model(void)
{
	static const char *names[] = { "model-uring", "model-naive" };

	for (int mode = 0; mode < 2; mode++) {
		int root = fresh_root(names[mode]);

		CU_ASSERT_TRUE_FATAL(root >= 0);
		seed = 42;
		CU_ASSERT_EQUAL(apply_list(root, mode ? MFS_REPLAY_F_NO_URING : 0, fill_random), 0);
		check_model(root);
		close(root);
	}
}

/* ---------------------------------------------------------------- escapes */

static void test_escape(void)
{
	struct mfs_replay *r;
	struct mfs_rec *x;
	char buf[16] = "";
	struct stat st;
	int root = fresh_root("esc-root"), fd;

	CU_ASSERT_TRUE_FATAL(root >= 0);
	CU_ASSERT_EQUAL_FATAL(mkdirat(topfd, "esc-out", 0755), 0);
	fd = openat(topfd, "esc-canary", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, "canary", 6), 6);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(mfs_replay_new(root, 0, &r), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_SYMLINK, "d", "../esc-out")), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_SYMLINK, "c", "../esc-canary")), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_SYMLINK, "abs", "/tmp")), 0);
	x = mk(MFS_REC_MKNOD, "d/pwned", NULL);
	x->mode = S_IFREG | 0644;
	CU_ASSERT_TRUE(mfs_replay_apply(r, x) < 0);
	x = mk(MFS_REC_MKDIR, "abs/pwned-mfs-unit", NULL);
	CU_ASSERT_TRUE(mfs_replay_apply(r, x) < 0);
	x = mk(MFS_REC_WRITE, "c", NULL);
	x->data = "pwned";
	x->data_len = 5;
	CU_ASSERT_TRUE(mfs_replay_apply(r, x) < 0);
	x = mk(MFS_REC_TRUNCATE, "c", NULL);
	CU_ASSERT_TRUE(mfs_replay_apply(r, x) < 0);
	x = mk(MFS_REC_CHMOD, "c", NULL);
	x->mode = 0777;
	CU_ASSERT_EQUAL(mfs_replay_apply(r, x), 0); /* the symlink itself: no-op */
	CU_ASSERT_TRUE(mfs_replay_apply(r, mk(MFS_REC_RENAME, "d/../x", "y")) < 0);
	CU_ASSERT_TRUE(mfs_replay_apply(r, mk(MFS_REC_LINK, "c", "d/pwned")) < 0);
	CU_ASSERT_TRUE(mfs_replay_apply(r, mk(MFS_REC_UNLINK, "d/anything", NULL)) < 0);
	CU_ASSERT_EQUAL(mfs_replay_finish(r), 0);
	mfs_replay_free(r);
	fd = openat(topfd, "esc-canary", O_RDONLY | O_CLOEXEC);
	CU_ASSERT_EQUAL(read(fd, buf, sizeof(buf)), 6);
	CU_ASSERT_EQUAL(fstat(fd, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0644);
	close(fd);
	CU_ASSERT_EQUAL(fstatat(topfd, "esc-out/pwned", &st, 0), -1);
	CU_ASSERT_EQUAL(fstatat(AT_FDCWD, "/tmp/pwned-mfs-unit", &st, 0), -1);
	close(root);
}

static void test_check(void)
{
	struct mfs_rec *x;

	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_UNLINK, "a/b", NULL)), 0);
	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_UNLINK, "/a", NULL)), -EINVAL);
	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_UNLINK, "a/../b", NULL)), -EINVAL);
	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_UNLINK, ".mirrorfs/j", NULL)), -EINVAL);
	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_UNLINK, ".mirrorfsx", NULL)), 0);
	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_RENAME, "a", "../b")), -EINVAL);
	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_SYMLINK, "a", "/anything/../at/all")), 0);
	CU_ASSERT_EQUAL(mfs_replay_check(mk(MFS_REC_SNAPSHOT, NULL, "n")), 0);
	x = mk(MFS_REC_MKNOD, "dev", NULL);
	x->mode = S_IFBLK | 0600;
	CU_ASSERT_EQUAL(mfs_replay_check(x), -EINVAL);
	x = mk(MFS_REC_FALLOCATE, "f", NULL);
	x->mode = FALLOC_FL_COLLAPSE_RANGE;
	x->length = 4096;
	CU_ASSERT_EQUAL(mfs_replay_check(x), -EINVAL);
	x = mk(MFS_REC_WRITE, "f", NULL);
	x->offset = UINT64_MAX - 2;
	x->data = "abc";
	x->data_len = 3;
	CU_ASSERT_EQUAL(mfs_replay_check(x), -EINVAL);
	x = mk(MFS_REC_RENAME, "a", "b");
	x->flags = 0x80;
	CU_ASSERT_EQUAL(mfs_replay_check(x), -EINVAL);
	x = mk(MFS_REC_UTIMENS, "a", NULL);
	x->atime_nsec = 1000000000u;
	CU_ASSERT_EQUAL(mfs_replay_check(x), -EINVAL);
}

static CU_TestInfo tests[] = {
	{ "life", test_life },
	{ "model", test_model },
	{ "escape", test_escape },
	{ "check", test_check },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_replay[] = {
	{ "replay", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
