/* SPDX-License-Identifier: MIT */
/*
 * test_replay.c - unit tests of lib/replay: every record type, idempotency
 * (apply twice = apply once), write batching against a model (coalescing,
 * superseded writes, truncates, hard links), both engines (io_uring and
 * naive), escapes refused with a canary beside the root, check(); loaded
 * segments (one read, applied from memory, several segments before one
 * finish, after_lsn, re-application) against the same model, and corrupt
 * or refused segments applying nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "mirrorfs/replay.h"
#include "mirrorfs/segment.h"
#include "tests.h"

static char *tmp;
static int topfd = -1;

static int setup(void)
{
	return test_tmpdir_open(&tmp, &topfd);
}

static int teardown(void)
{
	return test_tmpdir_close(&tmp, &topfd);
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

/*
 * The path cache after folder renames: "a/f" is cached (written), then
 * a -> b and a folder c (with its own f) -> a. Writes to "a/f" must go to
 * c's file, not to the file the stale cache entry still names (now b/f).
 */
static int fill_rename_dirs(struct mfs_replay *r)
{
	static const char *dirs[] = { "a", "c" };
	struct mfs_rec *x;

	for (int i = 0; i < 2; i++) {
		char p[8];

		x = mk(MFS_REC_MKDIR, dirs[i], NULL);
		x->mode = 0755;
		APPLY(x);
		snprintf(p, sizeof(p), "%s/f", dirs[i]);
		x = mk(MFS_REC_MKNOD, p, NULL);
		x->mode = S_IFREG | 0644;
		APPLY(x);
		x = mk(MFS_REC_WRITE, p, NULL);
		x->data = i ? "cccc" : "aaaa";
		x->data_len = 4;
		APPLY(x);
	}
	APPLY(mk(MFS_REC_RENAME, "a", "b"));
	APPLY(mk(MFS_REC_RENAME, "c", "a"));
	x = mk(MFS_REC_WRITE, "a/f", NULL);
	x->offset = 2;
	x->data = "XY";
	x->data_len = 2;
	APPLY(x);
	return 0;
}

static void check_file(int root, const char *path, const char *want)
{
	char buf[16] = "";
	int fd = openat(root, path, O_RDONLY | O_CLOEXEC);

	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(read(fd, buf, sizeof(buf) - 1), (ssize_t)strlen(want));
	CU_ASSERT_STRING_EQUAL(buf, want);
	close(fd);
}

static void test_rename_dirs(void)
{
	static const char *names[] = { "rendir-uring", "rendir-naive" };

	for (int mode = 0; mode < 2; mode++) {
		int root = fresh_root(names[mode]);

		CU_ASSERT_TRUE_FATAL(root >= 0);
		CU_ASSERT_EQUAL(apply_list(root, mode ? MFS_REPLAY_F_NO_URING : 0, fill_rename_dirs), 0);
		check_file(root, "a/f", "ccXY");
		check_file(root, "b/f", "aaaa");
		close(root);
	}
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

/* Where generated records go: applied (struct mfs_replay), or journaled. */
static int (*sink)(void *ctx, struct mfs_rec *rec);
static void *sink_ctx;

static int sink_apply(void *ctx, struct mfs_rec *rec)
{
	return mfs_replay_apply(ctx, rec);
}

#define EMIT(rec) do { int _e = sink(sink_ctx, (rec)); if (_e < 0) return _e; } while (0)

static int gen_random(int n_ops);

static int fill_random(struct mfs_replay *r)
{
	sink = sink_apply;
	sink_ctx = r;
	return gen_random(4000);
}

static int gen_random(int n_ops)
{
	static unsigned char data[8192];
	struct mfs_rec *x;

	x = mk(MFS_REC_MKNOD, "f", NULL);
	x->mode = S_IFREG | 0644;
	EMIT(x);
	EMIT(mk(MFS_REC_LINK, "f", "g"));
	memset(model, 0, sizeof(model));
	model_len = 0;
	for (int i = 0; i < n_ops; i++) {
		unsigned op = rnd() % 100;

		if (op < 2) {
			size_t sz = rnd() % MODEL_SIZE;

			x = mk(MFS_REC_TRUNCATE, i & 1 ? "f" : "g", NULL);
			x->length = sz;
			EMIT(x);
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
		EMIT(x);
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

/* ---------------------------------------------------------------- loaded segments */

static const uint8_t test_uuid[16] = { 0x5e, 0x61, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 };

/* Journals generated records into segments of @per records in dirfd. */
struct segsink {
	int dirfd;
	struct mfs_segw *w;
	uint64_t next_lsn, seg_no;
	unsigned in_seg, per, n_names;
	char names[64][MFS_SEG_NAME_LEN + 1];
};

static int segsink_close(struct segsink *k)
{
	int e;

	if (!k->w)
		return 0;
	e = mfs_segw_close(k->w, k->dirfd, k->names[k->n_names]);
	k->w = NULL;
	if (e == 0)
		k->n_names++;
	return e;
}

static int sink_segment(void *ctx, struct mfs_rec *rec)
{
	struct segsink *k = ctx;
	char oname[32];
	uint64_t lsn;
	int e;

	if (!k->w) {
		if (k->n_names >= 64)
			return -ENOSPC;
		snprintf(oname, sizeof(oname), "open-%" PRIu64, k->seg_no);
		e = mfs_segw_create(k->dirfd, oname, test_uuid, ++k->seg_no, k->next_lsn, &k->w);
		if (e < 0)
			return e;
		k->in_seg = 0;
	}
	rec->time_ns = 0;
	e = mfs_segw_append(k->w, rec, &lsn);
	if (e < 0)
		return e;
	k->next_lsn = lsn + 1;
	if (++k->in_seg == k->per)
		return segsink_close(k);
	return 0;
}

/* Journal the model workload (seed 42) into segments of @per records in @dirfd. */
static int journal_model(int dirfd, unsigned per, struct segsink *k)
{
	int e;

	memset(k, 0, sizeof(*k));
	k->dirfd = dirfd;
	k->next_lsn = 1;
	k->per = per;
	sink = sink_segment;
	sink_ctx = k;
	seed = 42;
	e = gen_random(4000);
	return e < 0 ? e : segsink_close(k);
}

/* Load and apply every segment of @k (records after @after), then one finish. */
static int apply_segments(int rootfd, unsigned flags, const struct segsink *k, uint64_t after)
{
	struct mfs_replay *r;
	int e, e2;

	e = mfs_replay_new(rootfd, flags, &r);
	if (e < 0)
		return e;
	for (unsigned i = 0; i < k->n_names && e == 0; i++) {
		struct mfs_replay_seg *s;
		int fd = openat(k->dirfd, k->names[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			e = -errno;
			break;
		}
		e = mfs_replay_seg_load(r, fd, test_uuid, 1u << 30, &s);
		close(fd);
		if (e < 0)
			break;
		CU_ASSERT_EQUAL(mfs_replay_seg_info(s)->verdict, MFS_SEG_OK);
		CU_ASSERT_EQUAL(mfs_replay_seg_refused(s, NULL, NULL), 0);
		e = mfs_replay_seg_apply(r, s, after, NULL, NULL);
	}
	e2 = mfs_replay_finish(r);
	mfs_replay_free(r);
	return e < 0 ? e : e2;
}

static void test_segments(void)
{
	static const char *names[] = { "seg-uring", "seg-naive" };
	struct segsink *k = calloc(1, sizeof(*k));
	int dir;

	CU_ASSERT_TRUE_FATAL(k != NULL);
	CU_ASSERT_EQUAL_FATAL(mkdirat(topfd, "segs", 0755), 0);
	dir = openat(topfd, "segs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_TRUE_FATAL(dir >= 0);
	/* 4002 records in 9 segments: superseded writes within and across them */
	CU_ASSERT_EQUAL_FATAL(journal_model(dir, 500, k), 0);
	CU_ASSERT_EQUAL(k->n_names, 9);
	for (int mode = 0; mode < 2; mode++) {
		int root = fresh_root(names[mode]);

		CU_ASSERT_TRUE_FATAL(root >= 0);
		CU_ASSERT_EQUAL(apply_segments(root, mode ? MFS_REPLAY_F_NO_URING : 0, k, 0), 0);
		check_model(root);
		/* everything already applied: nothing changes */
		CU_ASSERT_EQUAL(apply_segments(root, 0, k, k->next_lsn - 1), 0);
		check_model(root);
		/* applied again from LSN 1 on the finished tree: idempotent */
		CU_ASSERT_EQUAL(apply_segments(root, 0, k, 0), 0);
		check_model(root);
		close(root);
	}
	close(dir);
	free(k);
}

/* A copy of segment @name with byte @at flipped, as @out. */
static void flip_copy(int dirfd, const char *name, long at, const char *out)
{
	static unsigned char buf[1 << 20];
	int in = openat(dirfd, name, O_RDONLY | O_CLOEXEC), o;
	ssize_t n;

	CU_ASSERT_TRUE_FATAL(in >= 0);
	n = read(in, buf, sizeof(buf));
	close(in);
	CU_ASSERT_TRUE_FATAL(n > at);
	buf[at] ^= 0x10;
	o = openat(dirfd, out, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	CU_ASSERT_TRUE_FATAL(o >= 0);
	CU_ASSERT_EQUAL(write(o, buf, (size_t)n), n);
	close(o);
}

/*
 * A long sequential stretch (24 MiB in 1 MiB records, one of them
 * overwritten later in part) is written with write-behind kicks while it is
 * issued; the file ends with the right bytes.
 */
static void test_writebehind(void)
{
	enum { MIB = 1 << 20, N = 24 };
	struct segsink *k = calloc(1, sizeof(*k));
	uint8_t *buf = malloc(MIB), *got = malloc(MIB);
	struct mfs_replay_stats st;
	struct mfs_replay_seg *s;
	struct mfs_replay *r;
	struct mfs_rec *x;
	int dir, root, fd, bad = 0;

	CU_ASSERT_TRUE_FATAL(k && buf && got);
	CU_ASSERT_EQUAL_FATAL(mkdirat(topfd, "wb-segs", 0755), 0);
	dir = openat(topfd, "wb-segs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	root = fresh_root("wb");
	CU_ASSERT_TRUE_FATAL(dir >= 0 && root >= 0);
	k->dirfd = dir;
	k->next_lsn = 1;
	k->per = 1000;
	x = mk(MFS_REC_MKNOD, "seq", NULL);
	x->mode = S_IFREG | 0644;
	CU_ASSERT_EQUAL_FATAL(sink_segment(k, x), 0);
	for (int i = 0; i < N; i++) {
		memset(buf, 'a' + i, MIB);
		x = mk(MFS_REC_WRITE, "seq", NULL);
		x->offset = (uint64_t)i * MIB;
		x->data = buf;
		x->data_len = MIB;
		CU_ASSERT_EQUAL_FATAL(sink_segment(k, x), 0);
	}
	memset(buf, 'Z', 4096);
	x = mk(MFS_REC_WRITE, "seq", NULL);
	x->offset = 5u * MIB + 100;
	x->data = buf;
	x->data_len = 4096;
	CU_ASSERT_EQUAL_FATAL(sink_segment(k, x), 0);
	CU_ASSERT_EQUAL_FATAL(segsink_close(k), 0);

	CU_ASSERT_EQUAL_FATAL(mfs_replay_new(root, 0, &r), 0);
	fd = openat(dir, k->names[0], O_RDONLY | O_CLOEXEC);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(mfs_replay_seg_load(r, fd, test_uuid, 1u << 30, &s), 0);
	close(fd);
	CU_ASSERT_EQUAL(mfs_replay_seg_apply(r, s, 0, NULL, NULL), 0);
	CU_ASSERT_EQUAL(mfs_replay_finish(r), 0);
	mfs_replay_get_stats(r, &st);
	if (st.uring)
		CU_ASSERT_TRUE(st.writebehinds >= 2); /* 24 MiB in 8 MiB kicks, two in flight */
	CU_ASSERT_EQUAL(st.io_bytes, (uint64_t)N * MIB);
	mfs_replay_free(r);

	fd = openat(root, "seq", O_RDONLY | O_CLOEXEC);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	for (int i = 0; i < N; i++) {
		CU_ASSERT_EQUAL_FATAL(pread(fd, got, MIB, (off_t)i * MIB), MIB);
		for (size_t j = 0; j < MIB; j++) {
			bool z = i == 5 && j >= 100 && j < 4196;

			bad += got[j] != (z ? 'Z' : 'a' + i);
		}
	}
	CU_ASSERT_EQUAL(pread(fd, got, 1, (off_t)N * MIB), 0);
	CU_ASSERT_EQUAL(bad, 0);
	close(fd);
	close(root);
	close(dir);
	free(got);
	free(buf);
	free(k);
}

static void test_segment_invalid(void)
{
	struct segsink k;
	struct mfs_replay_seg *s;
	struct mfs_replay *r;
	struct mfs_rec *x;
	enum mfs_rec_type type;
	uint64_t lsn = 0, last;
	struct stat st;
	int dir, root, fd;

	CU_ASSERT_EQUAL_FATAL(mkdirat(topfd, "bad", 0755), 0);
	dir = openat(topfd, "bad", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	root = fresh_root("bad-root");
	CU_ASSERT_TRUE_FATAL(dir >= 0 && root >= 0);
	memset(&k, 0, sizeof(k));
	k.dirfd = dir;
	k.next_lsn = 1;
	k.per = 100;
	x = mk(MFS_REC_MKNOD, "a", NULL);
	x->mode = S_IFREG | 0644;
	CU_ASSERT_EQUAL(sink_segment(&k, x), 0);
	x = mk(MFS_REC_WRITE, "a", NULL);
	x->data = "0123456789abcdef";
	x->data_len = 16;
	CU_ASSERT_EQUAL(sink_segment(&k, x), 0);
	x = mk(MFS_REC_WRITE, "../escape", NULL);
	x->data = "x";
	x->data_len = 1;
	CU_ASSERT_EQUAL(sink_segment(&k, x), 0);
	CU_ASSERT_EQUAL_FATAL(segsink_close(&k), 0);
	CU_ASSERT_EQUAL_FATAL(mfs_replay_new(root, 0, &r), 0);
	/* a refused record: reported with its LSN, nothing of the segment applied */
	fd = openat(dir, k.names[0], O_RDONLY | O_CLOEXEC);
	CU_ASSERT_EQUAL_FATAL(mfs_replay_seg_load(r, fd, test_uuid, 1u << 20, &s), 0);
	CU_ASSERT_EQUAL(mfs_replay_seg_refused(s, &lsn, &type), -EINVAL);
	CU_ASSERT_EQUAL(lsn, 3);
	CU_ASSERT_EQUAL(type, MFS_REC_WRITE);
	mfs_replay_seg_free(s);
	CU_ASSERT_EQUAL(mfs_replay_segment(r, fd, test_uuid, 0, true, &last), -EINVAL);
	CU_ASSERT_EQUAL(mfs_replay_seg_load(r, fd, test_uuid, 100, &s), -EFBIG);
	close(fd);
	/* a flipped bit in the last record's data: corrupt, nothing applied */
	flip_copy(dir, k.names[0], 200, "flipped");
	fd = openat(dir, "flipped", O_RDONLY | O_CLOEXEC);
	CU_ASSERT_EQUAL_FATAL(mfs_replay_seg_load(r, fd, test_uuid, 1u << 20, &s), 0);
	CU_ASSERT_NOT_EQUAL(mfs_replay_seg_info(s)->verdict, MFS_SEG_OK);
	mfs_replay_seg_free(s);
	CU_ASSERT_EQUAL(mfs_replay_segment(r, fd, test_uuid, 0, true, &last), -EBADMSG);
	/* another data set: foreign */
	CU_ASSERT_EQUAL_FATAL(mfs_replay_seg_load(r, fd, (const uint8_t *)"0123456789abcdef",
						  1u << 20, &s), 0);
	CU_ASSERT_EQUAL(mfs_replay_seg_info(s)->verdict, MFS_SEG_FOREIGN);
	mfs_replay_seg_free(s);
	close(fd);
	CU_ASSERT_EQUAL(mfs_replay_finish(r), 0);
	mfs_replay_free(r);
	CU_ASSERT_EQUAL(fstatat(root, "a", &st, 0), -1);
	CU_ASSERT_EQUAL(fstatat(topfd, "escape", &st, 0), -1);
	close(root);
	close(dir);
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
	char why[600];

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
	CU_ASSERT_EQUAL(mfs_replay_check(x), 0); /* the primary makes them: replicated */
	x->mode = 0170000 | 0600;
	CU_ASSERT_EQUAL(mfs_replay_check(x), -EINVAL);
	CU_ASSERT_EQUAL(mfs_replay_check_why(x, why, sizeof(why)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(why, "LSN 1 mknod 'dev': mode: not a file type mknod makes");
	x = mk(MFS_REC_RENAME, "a", ".mirrorfs/state");
	CU_ASSERT_EQUAL(mfs_replay_check_why(x, why, sizeof(why)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(why, "LSN 1 rename 'a' -> '.mirrorfs/state': new path: "
				    "the reserved name '.mirrorfs'");
	x = mk(MFS_REC_UNLINK, "/etc/passwd", NULL);
	CU_ASSERT_EQUAL(mfs_replay_check_why(x, why, sizeof(why)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(why, "LSN 1 unlink '/etc/passwd': path: absolute");
	x = mk(MFS_REC_WRITE, ".mirrorfs/state", NULL);
	CU_ASSERT_EQUAL(mfs_replay_check_why(x, why, sizeof(why)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(why, "LSN 1 write '.mirrorfs/state': path: the reserved name "
				    "'.mirrorfs'");
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

/* ---------------------------------------------------------------- device nodes */

/*
 * A device node the primary made is made on the mirror, with its rdev
 * (as root; without CAP_MKNOD the engine says so: -EPERM). Re-applied:
 * the same node. A write to it is refused: only regular files are opened.
 */
static void test_devices(void)
{
	struct mfs_replay *r;
	struct mfs_rec *x;
	struct stat st;
	int root = fresh_root("dev-root"), e;

	CU_ASSERT_TRUE_FATAL(root >= 0);
	CU_ASSERT_EQUAL_FATAL(mfs_replay_new(root, 0, &r), 0);
	for (int round = 0; round < 2; round++) {
		x = mk(MFS_REC_MKNOD, "null", NULL);
		x->mode = S_IFCHR | 0640;
		x->rdev = makedev(1, 3);
		x->uid = x->gid = UINT32_MAX;
		e = mfs_replay_apply(r, x);
		if (geteuid() != 0) {
			CU_ASSERT_EQUAL(e, -EPERM);
			break;
		}
		CU_ASSERT_EQUAL(e, 0);
		x = mk(MFS_REC_MKNOD, "blk", NULL);
		x->mode = S_IFBLK | 0600;
		x->rdev = makedev(7, 200);
		x->uid = x->gid = UINT32_MAX;
		CU_ASSERT_EQUAL(mfs_replay_apply(r, x), 0);
	}
	x = mk(MFS_REC_WRITE, "null", NULL);
	x->data = "x";
	x->data_len = 1;
	CU_ASSERT_TRUE(mfs_replay_apply(r, x) < 0);
	if (geteuid() == 0) /* the failure names LSN, type, path and fields */
		CU_ASSERT_TRUE(mfs_replay_why(r) &&
			       !strncmp(mfs_replay_why(r), "LSN 1 write 'null' (offset 0, length 1): ",
					strlen("LSN 1 write 'null' (offset 0, length 1): ")));
	CU_ASSERT_EQUAL(mfs_replay_finish(r), 0);
	mfs_replay_free(r);
	if (geteuid() == 0) {
		CU_ASSERT_EQUAL(fstatat(root, "null", &st, AT_SYMLINK_NOFOLLOW), 0);
		CU_ASSERT_TRUE(S_ISCHR(st.st_mode));
		CU_ASSERT_EQUAL(st.st_mode & 07777, 0640);
		CU_ASSERT_EQUAL(st.st_rdev, makedev(1, 3));
		CU_ASSERT_EQUAL(fstatat(root, "blk", &st, AT_SYMLINK_NOFOLLOW), 0);
		CU_ASSERT_TRUE(S_ISBLK(st.st_mode));
		CU_ASSERT_EQUAL(st.st_rdev, makedev(7, 200));
	}
	close(root);
}

/* ---------------------------------------------------------------- deep trees */

/* Make a chain of @depth folders "x/x/x..." under @name of @root, a file in each. */
static int make_chain(int root, const char *name, int depth)
{
	int fd = -1, up;

	if (mkdirat(root, name, 0755) < 0)
		return -1;
	fd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (int i = 0; i < depth && fd >= 0; i++) {
		close(openat(fd, "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
		if (mkdirat(fd, "x", 0755) < 0)
			break;
		up = fd;
		fd = openat(up, "x", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(up);
	}
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/*
 * Removing a tree deeper than 256 levels (and deeper than PATH_MAX, which
 * renames can build) works, for rmdir, unlink and a rename over it; so
 * does a folder with more subfolders than are listed at once.
 */
static void test_deep_remove(void)
{
	struct mfs_replay *r;
	struct stat st;
	char name[32];
	int root = fresh_root("deep-root"), fd;

	CU_ASSERT_TRUE_FATAL(root >= 0);
	CU_ASSERT_EQUAL_FATAL(make_chain(root, "a", 300), 0);
	CU_ASSERT_EQUAL_FATAL(make_chain(root, "b", 2100), 0); /* 4200 bytes of path */
	CU_ASSERT_EQUAL_FATAL(make_chain(root, "c", 40), 0);
	CU_ASSERT_EQUAL_FATAL(mkdirat(root, "w", 0755), 0);
	fd = openat(root, "w", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (int i = 0; i < 1500; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		CU_ASSERT_EQUAL(mkdirat(fd, name, 0755), 0);
	}
	close(fd);
	CU_ASSERT_EQUAL_FATAL(mfs_replay_new(root, 0, &r), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_RMDIR, "a", NULL)), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_UNLINK, "b", NULL)), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_RMDIR, "w", NULL)), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_MKDIR, "d", NULL)), 0);
	CU_ASSERT_EQUAL(mfs_replay_apply(r, mk(MFS_REC_RENAME, "d", "c")), 0);
	CU_ASSERT_EQUAL(mfs_replay_finish(r), 0);
	mfs_replay_free(r);
	CU_ASSERT_EQUAL(fstatat(root, "a", &st, AT_SYMLINK_NOFOLLOW), -1);
	CU_ASSERT_EQUAL(fstatat(root, "b", &st, AT_SYMLINK_NOFOLLOW), -1);
	CU_ASSERT_EQUAL(fstatat(root, "w", &st, AT_SYMLINK_NOFOLLOW), -1);
	CU_ASSERT_EQUAL(fstatat(root, "c/x", &st, AT_SYMLINK_NOFOLLOW), -1);
	CU_ASSERT_EQUAL(fstatat(root, "c", &st, AT_SYMLINK_NOFOLLOW), 0);
	close(root);
}

static CU_TestInfo tests[] = {
	{ "life", test_life },
	{ "model", test_model },
	{ "rename-dirs", test_rename_dirs },
	{ "segments", test_segments },
	{ "segment-invalid", test_segment_invalid },
	{ "write-behind", test_writebehind },
	{ "escape", test_escape },
	{ "check", test_check },
	{ "devices", test_devices },
	{ "deep-remove", test_deep_remove },
	CU_TEST_INFO_NULL,
};

CU_SuiteInfo suite_replay[] = {
	{ "replay", setup, teardown, NULL, NULL, tests },
	CU_SUITE_INFO_NULL,
};
